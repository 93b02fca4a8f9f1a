//! What an integrator in another language meets, run against a real `paraph serve --demo`:
//! - `examples/python/paraph_client.py` (stubs generated from `proto/` by grpcio-tools) submits
//!   a mandate through a proxy that drops the connection instead of passing the server's
//!   answer on; the client retries with the same idempotency key and gets the same document
//!   (one document in the officer's inbox), waits on WatchEvents while the officers approve
//!   and sign with the CLI, and writes signatures that validate offline;
//! - `examples/python/list_services.py` lists the services through `grpc.reflection.v1alpha`
//!   (Python's grpcio-reflection);
//! - `paraph api descriptor` writes a FileDescriptorSet that Python's protobuf loads.
//!
//! The examples need `python3` with grpcio, grpcio-tools and grpcio-reflection (`.ci/run`
//! installs them); without them these tests fail and say what is missing.

mod common;

use common::cli::{lines, next_line, Proc, BIN, STEP_TIMEOUT};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const P12_PASSWORD: &str = "paraph-test";

fn root(rel: &str) -> PathBuf {
    Path::new(ROOT).join(rel)
}

/// Fails with the way out when the examples' Python packages are missing.
fn require_python(modules: &str) {
    let out = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .expect("python3 is needed by the examples' tests");
    assert!(
        out.status.success(),
        "the Python examples need {modules}: python3 -m pip install --user grpcio grpcio-tools \
         grpcio-reflection (.ci/run installs them)\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs a command to its end, with a bounded wait.
fn run(cmd: Command, what: &str) -> Output {
    run_within(cmd, what, STEP_TIMEOUT)
}

/// Runs a command to its end, waiting at most `timeout`.
fn run_within(mut cmd: Command, what: &str, timeout: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(o) => o.unwrap_or_else(|e| panic!("wait for {what}: {e}")),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("`{what}` did not finish within {timeout:?}");
        }
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "`{what}` failed ({:?})\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `paraph ARGS` as the holder of `token`, from the repository root, with a clean environment.
fn paraph(addr: &str, token: &str, args: &[&str]) -> String {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .current_dir(ROOT)
        .env("PARAPH_ADDR", addr)
        .env("PARAPH_TOKEN", token)
        .env("PARAPH_P12_PASSWORD", P12_PASSWORD)
        .env("RUST_LOG", "warn");
    let what = format!("paraph {}", args.join(" "));
    ok(&run(cmd, &what), &what)
}

/// A `paraph serve --demo` on a loopback port, with its settings from its flags alone.
struct Demo {
    _server: Proc,
    addr: String,
    tokens: Vec<String>,
}

impl Demo {
    fn start(dir: &Path) -> Demo {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("PARAPH") {
                cmd.env_remove(k);
            }
        }
        let mut server = Proc {
            child: cmd
                .args([
                    "serve",
                    "--demo",
                    "--listen",
                    "127.0.0.1:0",
                    "--json",
                    "--data",
                ])
                .arg(dir.join("data"))
                .arg("--config")
                .arg(common::isolated_config(dir))
                .arg("--certs")
                .arg(root("certs-test"))
                .args(common::cli::store_args(&dir.join("data")))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(dir.join("server.log")).expect("log file"))
                .spawn()
                .expect("spawn paraph serve --demo"),
        };
        let out = lines(server.child.stdout.take().expect("server stdout"));
        let mut tokens = Vec::new();
        let addr = loop {
            let line = next_line(&out, "demo or listening");
            if let Some(a) = line.strip_prefix("paraph listening on ") {
                break a.to_owned();
            }
            tokens.push(line);
        };
        Demo {
            _server: server,
            addr,
            tokens,
        }
    }

    /// The demo token of `user` (`  <user> <token>   (…)` lines).
    fn token(&self, user: &str) -> String {
        self.tokens
            .iter()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (l.starts_with("  ") && words.next() == Some(user))
                    .then(|| words.next())
                    .flatten()
                    .filter(|t| t.starts_with("pph_"))
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| panic!("no token for {user}: {:#?}", self.tokens))
    }
}

/// A TCP proxy in front of `upstream`. On its first connection it passes the HTTP/2 frames on
/// until the server's first HEADERS frame of a call, which is the answer to the first call (a
/// unary or client-streaming call is answered once the server has done its work): it drops
/// that frame and closes both sides, so the client's first call was carried out but its answer
/// lost. Later connections pass through untouched.
struct CuttingProxy {
    addr: String,
    cut: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(upstream: String) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address").to_string();
        let cut = Arc::new(AtomicBool::new(false));
        let flag = cut.clone();
        std::thread::spawn(move || {
            for (n, client) in listener.incoming().enumerate() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    break;
                };
                let (c2, s2) = match (client.try_clone(), server.try_clone()) {
                    (Ok(c), Ok(s)) => (c, s),
                    _ => break,
                };
                std::thread::spawn(move || pipe(c2, s2));
                let flag = flag.clone();
                std::thread::spawn(move || {
                    if n == 0 {
                        answer_cut(server, client, &flag)
                    } else {
                        pipe(server, client)
                    }
                });
            }
        });
        CuttingProxy { addr, cut }
    }
}

/// Copies `from` to `to` until either side ends.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

/// Passes the server's HTTP/2 frames on until the first HEADERS frame of a stream, then
/// closes both connections without passing it.
fn answer_cut(mut server: TcpStream, mut client: TcpStream, cut: &AtomicBool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let Ok(n) = server.read(&mut chunk) else {
            return;
        };
        if n == 0 {
            let _ = client.shutdown(Shutdown::Write);
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while buf.len() >= 9 {
            let len = usize::from(buf[0]) << 16 | usize::from(buf[1]) << 8 | usize::from(buf[2]);
            if buf.len() < 9 + len {
                break;
            }
            let kind = buf[3];
            let stream = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]) & 0x7fff_ffff;
            if kind == 0x1 && stream != 0 {
                cut.store(true, Ordering::SeqCst);
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                return;
            }
            if client.write_all(&buf[..9 + len]).is_err() {
                return;
            }
            buf.drain(..9 + len);
        }
    }
}

/// The JSON lines the client printed.
fn events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

fn event<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == name)
        .unwrap_or_else(|| panic!("no {name:?} event in {events:#?}"))
}

#[test]
fn the_python_client_submits_retries_after_a_dropped_answer_waits_and_downloads_signatures() {
    require_python("grpc, grpc_tools");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let demo = Demo::start(dir);
    let (finance, carol, alice) = (
        demo.token("finance"),
        demo.token("carol"),
        demo.token("alice"),
    );
    let proxy = CuttingProxy::start(demo.addr.clone());
    let mandate = dir.join("mandate.txt");
    std::fs::write(
        &mandate,
        b"Mandat 2026-001: 1200.50 EUR to ACME\n".repeat(2000),
    )
    .expect("write the mandate");
    let out_dir = dir.join("signatures");

    // --- The finance software runs in the background, through the cutting proxy. ---
    let client = |addr: &str, extra: &[&str]| {
        let mut cmd = Command::new("python3");
        for (k, _) in std::env::vars() {
            if k.starts_with("PARAPH") {
                cmd.env_remove(k);
            }
        }
        cmd.arg(root("examples/python/paraph_client.py"))
            .args(["--addr", addr, "--token", &finance, "--file"])
            .arg(&mandate)
            .args(["--circuit", "demo", "--title", "Mandat 2026-001"])
            .args(["--meta", "amount=1200.50", "--meta", "budget=2026-611"])
            .arg("--out")
            .arg(&out_dir)
            .args(["--timeout", "120"])
            .args(extra)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.join("client.log")).expect("client log"));
        cmd
    };
    let mut running = Proc {
        child: client(&proxy.addr, &[])
            .spawn()
            .expect("spawn the Python client"),
    };
    let client_out = lines(running.child.stdout.take().expect("client stdout"));
    let log = || std::fs::read_to_string(dir.join("client.log")).unwrap_or_default();
    let submitted: Value = serde_json::from_str(&next_line(&client_out, "submitted"))
        .unwrap_or_else(|e| panic!("{e}; client log:\n{}", log()));
    assert_eq!(submitted["event"], "submitted", "{submitted}");
    let id = submitted["document_id"].as_str().expect("id").to_owned();
    let key = submitted["idempotency_key"]
        .as_str()
        .expect("key")
        .to_owned();
    // The first answer was dropped after the server had stored the document: the client
    // retried with the same key and got that document back, not a second one.
    assert!(
        proxy.cut.load(Ordering::SeqCst),
        "the proxy cut nothing: {}",
        log()
    );
    assert!(
        submitted["attempts"].as_u64().is_some_and(|n| n >= 2),
        "{submitted}\n{}",
        log()
    );
    assert!(log().contains("UNAVAILABLE"), "{}", log());
    assert_eq!(key.len(), 32, "a time-ordered key: {key}");
    let inbox: Value =
        serde_json::from_str(&paraph(&demo.addr, &carol, &["inbox", "--json"])).expect("JSON");
    let items = inbox["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "one document, not two: {inbox}");
    assert_eq!(items[0]["id"], id.as_str(), "{inbox}");

    // --- The officers act from the command line; the client sees the end on WatchEvents. ---
    let watching: Value =
        serde_json::from_str(&next_line(&client_out, "watching")).expect("watching JSON");
    assert_eq!(watching["event"], "watching", "{watching}");
    assert_eq!(
        watching["state"], "DOCUMENT_STATE_IN_PROGRESS",
        "{watching}"
    );
    paraph(&demo.addr, &carol, &["approve", &id]);
    paraph(
        &demo.addr,
        &alice,
        &["sign", &id, "--p12", "certs-test/officer-l2-p256.p12"],
    );
    let mut rest = Vec::new();
    loop {
        let line = next_line(&client_out, "client output");
        let done = line.contains("\"done\"");
        rest.push(line);
        if done {
            break;
        }
    }
    let status = running.child.wait().expect("wait for the client");
    assert!(status.success(), "{status:?}\n{}", log());
    let evs = events(&rest.join("\n"));
    assert_eq!(event(&evs, "over")["state"], "DOCUMENT_STATE_COMPLETED");
    assert_eq!(event(&evs, "done")["signatures"], 2, "{evs:#?}"); // alice's, the seal
    assert!(
        log().contains("event: "),
        "the end came on WatchEvents: {}",
        log()
    );
    let shown: Value =
        serde_json::from_str(&paraph(&demo.addr, &alice, &["show", &id, "--json"])).expect("JSON");
    assert_eq!(shown["metadata"]["amount"], "1200.50", "{shown}");
    assert_eq!(shown["metadata"]["budget"], "2026-611", "{shown}");

    // --- The signatures it wrote validate offline against the document. ---
    let all = out_dir.join(format!("{id}-all.p7s"));
    let mut validate = vec![
        "validate".to_owned(),
        "--data".into(),
        mandate.display().to_string(),
        "--signature".into(),
        all.display().to_string(),
        "--trust".into(),
        "certs-test/root-ca.cert.pem".into(),
        "--intermediate".into(),
        "certs-test/signing-ca.cert.pem".into(),
        "--crl".into(),
        "certs-test/crls.pem".into(),
        "--json".into(),
    ];
    for level in 1..=3 {
        validate.push("--policy-level".into());
        validate.push(format!("1.3.6.1.4.1.99999.1.1.{level}={level}"));
    }
    let args: Vec<&str> = validate.iter().map(String::as_str).collect();
    let report: Value = serde_json::from_str(&paraph(&demo.addr, "", &args)).expect("JSON");
    assert_eq!(report["indication"], "TOTAL_PASSED", "{report}");
    assert_eq!(
        report["signers"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    for i in 0..2 {
        assert!(out_dir.join(format!("{id}-{i}.p7s")).is_file());
    }

    // --- Run again later with the same key (a restarted batch): the same document, over. ---
    let again = run(
        client(&demo.addr, &["--idempotency-key", &key]),
        "paraph_client.py again",
    );
    let evs = events(&ok(&again, "paraph_client.py again"));
    assert_eq!(event(&evs, "submitted")["document_id"], id.as_str());
    assert_eq!(event(&evs, "submitted")["attempts"], 1);
    assert_eq!(event(&evs, "over")["state"], "DOCUMENT_STATE_COMPLETED");
    let inbox: Value =
        serde_json::from_str(&paraph(&demo.addr, &alice, &["inbox", "--json"])).expect("JSON");
    assert_eq!(inbox["items"], serde_json::json!([]), "{inbox}");
}

#[test]
fn python_grpcio_reflection_lists_the_services_over_v1alpha() {
    require_python("grpc, grpc_reflection");
    let tmp = tempfile::tempdir().expect("tempdir");
    let demo = Demo::start(tmp.path());
    let mut cmd = Command::new("python3");
    cmd.arg(root("examples/python/list_services.py"))
        .args(["--addr", &demo.addr]);
    let listed = ok(&run(cmd, "list_services.py"), "list_services.py");
    for service in [
        "paraph.v1.AdminService",
        "paraph.v1.CircuitService",
        "paraph.v1.DocumentService",
        "paraph.v1.SignatureService",
        "paraph.v1.DelegationService",
        "paraph.v1.AuditService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            listed.lines().any(|l| l == service),
            "{service} not listed:\n{listed}"
        );
    }
    assert!(
        listed.contains("  SubmitDocument(paraph.v1.SubmitDocumentRequest) -> paraph.v1.Document"),
        "{listed}"
    );
}

#[test]
fn the_descriptor_set_describes_the_services_with_their_comments() {
    require_python("google.protobuf");
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("paraph.v1.binpb");
    let mut cmd = Command::new(BIN);
    cmd.args(["api", "descriptor", "--out"]).arg(&file);
    ok(&run(cmd, "paraph api descriptor"), "paraph api descriptor");
    // Loaded by another language's protobuf runtime, without protoc or the .proto files.
    let script = r#"
import sys
from google.protobuf import descriptor_pb2, descriptor_pool
fds = descriptor_pb2.FileDescriptorSet.FromString(open(sys.argv[1], "rb").read())
pool = descriptor_pool.DescriptorPool()
for f in fds.file:
    pool.Add(f)
for f in fds.file:
    for s in f.service:
        d = pool.FindServiceByName(f"{f.package}.{s.name}")
        print(d.full_name, " ".join(m.name for m in d.methods))
comments = [l.leading_comments for f in fds.file for l in f.source_code_info.location]
print("authorization" if any("authorization: Bearer" in c for c in comments) else "no auth doc")
"#;
    let mut cmd = Command::new("python3");
    cmd.args(["-c", script]).arg(&file);
    let described = ok(&run(cmd, "python3 protobuf"), "python3 protobuf");
    for needle in [
        "paraph.v1.DocumentService SubmitDocument SubmitDocumentInline GetDocument",
        "paraph.v1.SignatureService PrepareSignature CompleteSignature",
        "paraph.v1.AdminService CreateTenant",
        "paraph.v1.AuditService",
        "paraph.v1.CircuitService",
        "paraph.v1.DelegationService",
        "authorization",
    ] {
        assert!(described.contains(needle), "{needle}:\n{described}");
    }
    // `-` writes the same bytes to stdout.
    let mut cmd = Command::new(BIN);
    cmd.args(["api", "descriptor", "--out", "-"]);
    let out = run(cmd, "paraph api descriptor --out -");
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        std::fs::read(&file).expect("read the descriptor")
    );
}

#[test]
fn the_java_example_compiles_with_the_distributions_tools() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new("sh");
    cmd.arg(root("examples/java/build.sh")).arg(tmp.path());
    // javac over the generated code takes a minute or more on a busy machine.
    ok(
        &run_within(cmd, "examples/java/build.sh", Duration::from_secs(600)),
        "examples/java/build.sh (Debian: protobuf-compiler protobuf-compiler-grpc-java-plugin \
         libprotobuf-java libgrpc-java, a JDK; .ci/run installs them)",
    );
    for class in [
        "paraph/example/FinanceClient.class",
        "paraph/v1/DocumentServiceGrpc.class",
        "paraph/v1/DocumentOuterClass$SubmitHeader.class",
    ] {
        assert!(tmp.path().join("classes").join(class).is_file(), "{class}");
    }
}
