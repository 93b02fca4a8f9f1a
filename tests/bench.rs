//! `paraph bench` end to end: the real `paraph serve` on a loopback port with a temporary data
//! directory, `paraph bench --documents 20 --concurrency 4 --json` for each key algorithm, its
//! report checked, then the documents checked independently of the bench: listed from the
//! store (the data directory, or its PostgreSQL schema) once the server has stopped, and read
//! back through the API of a restarted server (completed, one signature by the bench's signing
//! officer each). Every wait is bounded.

mod common;

use common::TestServer;
use paraph::proto::{self, signature_service_client::SignatureServiceClient};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_paraph");
/// The repository root: the bench reads certs-test/ from there.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TIMEOUT: Duration = Duration::from_secs(120);
const DOCUMENTS: u64 = 20;

/// A child process killed when dropped (also when the test panics), unless taken before.
struct Proc(Option<Child>);

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn paraph() -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(ROOT).env("RUST_LOG", "warn");
    cmd
}

/// Runs `paraph bench … --json` and returns its report.
fn bench(addr: &str, operator: &str, key_alg: &str) -> Value {
    bench_with(
        addr,
        operator,
        &[
            "--documents",
            "20",
            "--concurrency",
            "4",
            "--key-alg",
            key_alg,
        ],
    )
}

/// Runs `paraph bench ARGS --json` and returns its report.
fn bench_with(addr: &str, operator: &str, args: &[&str]) -> Value {
    let child = paraph()
        .args(["bench", "--json"])
        .args(args)
        .env("PARAPH_ADDR", addr)
        .env("PARAPH_TOKEN", operator)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn paraph bench");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(TIMEOUT) {
        Ok(o) => o.expect("wait for paraph bench"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("paraph bench did not finish within {TIMEOUT:?}");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "paraph bench {args:?}: {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    // No progress bar without a terminal (and never with --json).
    assert!(!stderr.contains("[#"), "{stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no JSON ({e}): {stdout}"))
}

fn num(v: &Value, what: &str) -> f64 {
    v.as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"))
}

fn check_report(r: &Value, key_alg: &str, engine: &str) {
    assert_eq!(r["server_storage_engine"], engine, "{r:#}");
    assert_eq!(r["documents"], DOCUMENTS, "{r:#}");
    assert_eq!(r["attempted"], DOCUMENTS, "{r:#}");
    assert_eq!(r["completed"], DOCUMENTS, "{r:#}");
    assert_eq!(r["stopped_early"], false, "{r:#}");
    assert_eq!(r["concurrency"], 4, "{r:#}");
    assert_eq!(r["key_alg"], key_alg, "{r:#}");
    assert_eq!(r["circuit"], "visa-sign", "{r:#}");
    assert_eq!(r["errors"], 0, "{r:#}");
    assert_eq!(r["errors_by_code"], serde_json::json!({}), "{r:#}");
    assert_eq!(r["rpcs"], 4 * DOCUMENTS, "{r:#}");
    assert!(num(&r["seconds"], "seconds") > 0.0, "{r:#}");
    assert!(num(&r["documents_per_second"], "documents_per_second") > 0.0);
    assert!(num(&r["rpcs_per_second"], "rpcs_per_second") > 0.0);
    for kind in ["submit", "approve", "prepare", "complete", "document"] {
        let l = &r["latency_ms"][kind];
        assert_eq!(l["count"], DOCUMENTS, "{kind}: {l}");
        let p: Vec<f64> = ["p50", "p95", "p99", "max"]
            .iter()
            .map(|k| num(&l[*k], &format!("{kind}.{k}")))
            .collect();
        assert!(p[0] > 0.0, "{kind}: {l}");
        assert!(
            p.windows(2).all(|w| w[0] <= w[1]),
            "{kind}: p50 <= p95 <= p99 <= max: {l}"
        );
    }
    if cfg!(target_os = "linux") {
        let peak = num(&r["server_peak_rss_bytes"], "server_peak_rss_bytes");
        assert!(peak > 0.0, "{r:#}");
        assert!(
            peak >= num(&r["server_rss_bytes_after"], "rss after"),
            "{r:#}"
        );
        // Memory read as the run goes, the last time once every document is done.
        let trace = r["server_rss_trace"].as_array().expect("server_rss_trace");
        let done: Vec<u64> = trace
            .iter()
            .map(|p| p["documents_done"].as_u64().expect("documents_done"))
            .collect();
        assert!(done.windows(2).all(|w| w[0] < w[1]), "{r:#}");
        assert_eq!(done.last(), Some(&DOCUMENTS), "{r:#}");
        assert!(trace
            .iter()
            .all(|p| num(&p["rss_bytes"], "rss_bytes") > 0.0));
        // The data directory's size, read by the server: it holds the documents.
        assert!(trace
            .iter()
            .all(|p| num(&p["store_bytes"], "store_bytes") > 4096.0 * DOCUMENTS as f64));
    }
    let tenant = r["tenant"].as_str().expect("tenant");
    assert!(tenant.starts_with("bench-"), "{tenant}");
}

/// On the tests' store: sled (the default engine) or, when the tests run on PostgreSQL, there.
#[test]
fn bench_pushes_every_document_through_the_visa_and_the_signature() {
    let store = if common::on_postgres() {
        "postgresql"
    } else {
        "sled"
    };
    bench_case(&["ecdsa-p256", "rsa-2048"], store);
}

/// On redb whatever store the other tests use: this one is about the choice of the engine.
#[test]
fn bench_pushes_every_document_through_on_redb() {
    bench_case(&["ecdsa-p256"], "redb");
}

/// Serves on the store `store` (`sled`, `redb`, whose file the server leaves in the data
/// directory, or `postgresql`, the schema of the tests' database for this directory), runs the
/// bench once per key algorithm, then reads every document back; the restart that reads them
/// names no engine.
fn bench_case(key_algs: &[&str], store: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let serve_args: Vec<String> = match store {
        "postgresql" => common::cli::store_args(&data),
        "redb" => vec!["--engine".into(), "redb".into()],
        _ => Vec::new(),
    };
    let engine = store;

    // --- The real server, on any free port. ---
    let mut server = Proc(Some(
        paraph()
            .args(["serve", "--listen", "127.0.0.1:0", "--json", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(common::isolated_config(tmp.path()))
            .args(&serve_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn paraph serve"),
    ));
    let (tx, lines) = mpsc::channel();
    let stdout = server
        .0
        .as_mut()
        .and_then(|c| c.stdout.take())
        .expect("server stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let next = |what: &str| {
        lines
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|e| panic!("no {what} line: {e:?}"))
    };
    let boot: Value = serde_json::from_str(&next("bootstrap")).expect("bootstrap JSON");
    let operator = boot["token"].as_str().expect("operator token").to_owned();
    let addr = next("listening")
        .strip_prefix("paraph listening on ")
        .expect("listening line")
        .to_owned();

    match engine {
        "redb" => assert!(data.join("index.redb").exists()),
        "sled" => assert!(data.join("db").exists()),
        _ => assert!(
            !data.join("db").exists() && !data.join("index.redb").exists(),
            "an embedded store in the data directory of a server on PostgreSQL"
        ),
    }

    // --- One run per key algorithm, each in its own fresh tenant. ---
    let mut tenants: Vec<String> = Vec::new();
    for key_alg in key_algs {
        let report = bench(&addr, &operator, key_alg);
        check_report(&report, key_alg, engine);
        let tenant = report["tenant"].as_str().expect("tenant").to_owned();
        assert!(!tenants.contains(&tenant), "{tenant} reused");
        tenants.push(tenant);
    }

    // A soak run: a set duration, the server read every second (a line each on stderr).
    if engine != "redb" {
        let r = bench_with(
            &addr,
            &operator,
            &[
                "--duration",
                "3",
                "--sample-every",
                "1",
                "--concurrency",
                "2",
                "--rate",
                "5",
            ],
        );
        assert_eq!(r["rate"], 5, "{r:#}");
        assert_eq!(r["duration_seconds"], 3, "{r:#}");
        assert_eq!(r["errors"], 0, "{r:#}");
        assert_eq!(r["stopped_early"], false, "{r:#}");
        let completed = r["completed"].as_u64().expect("completed");
        assert!(completed > 0 && r["attempted"] == completed, "{r:#}");
        // Paced: at most 5 a second, whatever the machine.
        assert!(completed <= 16, "{r:#}");
        assert!(num(&r["seconds"], "seconds") >= 3.0, "{r:#}");
        let trace = r["server_rss_trace"].as_array().expect("server_rss_trace");
        // At 0, 1, 2 and 3 s, and once the last document is done.
        assert!(trace.len() >= 4, "{r:#}");
        let at: Vec<f64> = trace
            .iter()
            .map(|p| num(&p["seconds"], "seconds"))
            .collect();
        assert!(at.windows(2).all(|w| w[0] <= w[1]), "{r:#}");
        let done: Vec<u64> = trace
            .iter()
            .map(|p| p["documents_done"].as_u64().expect("documents_done"))
            .collect();
        assert!(done.windows(2).all(|w| w[0] <= w[1]), "{r:#}");
        assert_eq!(done.last(), Some(&completed), "{r:#}");
        for p in trace {
            assert!(num(&p["rss_bytes"], "rss_bytes") > 0.0, "{r:#}");
            assert!(num(&p["store_bytes"], "store_bytes") > 0.0, "{r:#}");
        }
    }

    // A refused circuit name fails clearly (exit 2) and runs nothing.
    let out = paraph()
        .args(["bench", "--documents", "1", "--circuit", "nope"])
        .env("PARAPH_ADDR", &addr)
        .env("PARAPH_TOKEN", &operator)
        .output()
        .expect("paraph bench --circuit nope");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("visa-sign") && err.contains("nope"), "{err}");

    // --- Stop the server gracefully (SIGTERM: drains and flushes). ---
    let mut child = server.0.take().expect("the server");
    let pid = child.id();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(status.success());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let exit = match rx.recv_timeout(TIMEOUT) {
        Ok(r) => r.expect("wait for the server"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("the server did not stop within {TIMEOUT:?} of SIGTERM");
        }
    };
    assert!(exit.success(), "server exit: {exit:?}");

    // --- The documents each tenant holds, read from the data directory itself. ---
    let mut ids: Vec<(String, Vec<String>)> = Vec::new();
    {
        let store = if engine == "postgresql" {
            common::open_test_store(&data)
        } else {
            paraph::store::Store::open(&data).expect("open the data directory")
        };
        for tenant in &tenants {
            let docs = store
                .scan_keys(&format!("doc/{tenant}/"), None, usize::MAX)
                .expect("scan documents");
            assert_eq!(docs.len() as u64, DOCUMENTS, "documents of {tenant}");
            ids.push((tenant.clone(), docs));
        }
    }

    // --- Each one read back through the API: completed, one signature by the signer. ---
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        // The directory's own engine, found.
        let srv = TestServer::start_with(tmp, Some(operator.clone()), |s| {
            s.engine = None;
            if engine != "postgresql" {
                common::embedded_store(s);
            }
        })
        .await;
        for (tenant, docs) in &ids {
            let mut reader = srv.docs(&operator, Some(tenant));
            let mut sigs = SignatureServiceClient::with_interceptor(
                srv.channel(),
                common::auth_in(&operator, tenant),
            );
            for id in docs {
                let d = reader
                    .get_document(proto::GetDocumentRequest { id: id.clone() })
                    .await
                    .expect("get document")
                    .into_inner();
                assert_eq!(common::state(&d), proto::DocumentState::Completed, "{id}");
                assert_eq!(d.circuit, "visa-sign");
                assert_eq!(d.content_size, 4096);
                assert_eq!(d.steps.len(), 2);
                assert_eq!(d.steps[0].actions.len(), 1);
                assert_eq!(d.steps[0].actions[0].actor, "bench-visa");
                assert_eq!(
                    d.steps[0].actions[0].kind,
                    proto::ActionKind::Approved as i32
                );
                assert_eq!(d.steps[1].actions.len(), 1);
                assert_eq!(d.steps[1].actions[0].kind, proto::ActionKind::Signed as i32);
                let s = sigs
                    .get_signatures(proto::GetSignaturesRequest {
                        document_id: id.clone(),
                    })
                    .await
                    .expect("get signatures")
                    .into_inner()
                    .signatures;
                assert_eq!(s.len(), 1, "{id}: {s:?}");
                assert_eq!(s[0].signer, "bench-signer");
                assert_eq!(s[0].step, 1);
                assert_eq!(s[0].level, 3);
                assert!(!s[0].seal);
                assert!(!s[0].cms.is_empty());
            }
        }
        srv.stop().await;
    });
}
