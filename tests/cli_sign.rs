//! End-to-end test of the signature commands, as a newcomer would run the demo: the real
//! `paraph serve --demo` (trusting the TEST PKI in certs-test/) on a loopback port with a
//! temporary data directory, and the same binary as a client: a visa, a certificate signature
//! with a PKCS#12 file (the seal follows by itself), the signatures as .p7s files, validation
//! through the server and offline, `openssl cms -verify` on what paraph produced, the refusals
//! (wrong passphrase, a certificate bound to someone else, other data), `sign --all`, the trust
//! settings and certificate bindings, and `pki verify`. Every wait is bounded.

mod common;

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_paraph");
/// The repository root: the demo and the commands below read certs-test/ from there.
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Longest wait for any one CLI command or server line.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);
const P12_PASSWORD: &str = "paraph-test";
const POLICY_L1: &str = "1.3.6.1.4.1.99999.1.1.1";
const POLICY_L2: &str = "1.3.6.1.4.1.99999.1.1.2";
const POLICY_L3: &str = "1.3.6.1.4.1.99999.1.1.3";

/// A child process killed when dropped (also when the test panics).
struct Proc {
    child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Forwards the lines of a pipe to a channel, from a reader thread.
fn lines(r: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn next_line(rx: &Receiver<String>, what: &str) -> String {
    rx.recv_timeout(STEP_TIMEOUT)
        .unwrap_or_else(|e| panic!("no {what} line: {e:?}"))
}

/// The result of one CLI run.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    what: String,
}

impl Out {
    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        self.code_is(0);
        &self.stdout
    }

    fn code_is(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "`{}`: expected exit code {code}\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
    }

    fn json(&self) -> Value {
        self.ok();
        self.stdout_json()
    }

    fn stdout_json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("`{}` printed no JSON ({e}): {}", self.what, self.stdout))
    }

    /// Asserts failure with `code` and that stderr mentions every one of `needles`.
    fn fails(&self, code: i32, needles: &[&str]) {
        self.code_is(code);
        for n in needles {
            assert!(
                self.stderr.contains(n),
                "`{}`: stderr lacks {n:?}: {}",
                self.what,
                self.stderr
            );
        }
    }

    /// Asserts that neither output holds `secret`.
    fn never_shows(&self, secret: &str) {
        assert!(
            !self.stdout.contains(secret) && !self.stderr.contains(secret),
            "`{}` printed a secret\nstdout: {}\nstderr: {}",
            self.what,
            self.stdout,
            self.stderr
        );
    }
}

struct Cli {
    addr: String,
}

impl Cli {
    /// Runs `paraph ARGS` from the repository root with a clean environment: the server
    /// address, `token` when given, and `env`.
    fn run_env(&self, token: Option<&str>, env: &[(&str, &str)], args: &[&str]) -> Out {
        let mut cmd = Command::new(BIN);
        for (k, _) in std::env::vars() {
            if k.starts_with("PARAPH") {
                cmd.env_remove(k);
            }
        }
        cmd.args(args)
            .current_dir(ROOT)
            .env("PARAPH_ADDR", &self.addr)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = token {
            cmd.env("PARAPH_TOKEN", t);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn paraph");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let what = format!("paraph {}", args.join(" "));
        let out = match rx.recv_timeout(STEP_TIMEOUT) {
            Ok(o) => o.expect("wait for paraph"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                panic!("`{what}` did not finish within {STEP_TIMEOUT:?}");
            }
        };
        Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what,
        }
    }

    fn run(&self, token: &str, args: &[&str]) -> Out {
        self.run_env(Some(token), &[], args)
    }

    /// `paraph sign …` with the PKCS#12 passphrase in the environment.
    fn sign(&self, token: &str, args: &[&str]) -> Out {
        self.run_env(Some(token), &[("PARAPH_P12_PASSWORD", P12_PASSWORD)], args)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The demo block printed by `serve --demo`: `  <user> <token>   (…)` lines.
fn demo_token(block: &[String], user: &str) -> String {
    block
        .iter()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            (l.starts_with("  ") && words.next() == Some(user))
                .then(|| words.next())
                .flatten()
                .filter(|t| t.starts_with("pph_"))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no token for {user} in the demo block: {block:#?}"))
}

fn offline_trust_args() -> Vec<String> {
    let mut v: Vec<String> = [
        "--trust",
        "certs-test/root-ca.cert.pem",
        "--intermediate",
        "certs-test/signing-ca.cert.pem",
        "--crl",
        "certs-test/crls.pem",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (oid, level) in [(POLICY_L1, 1), (POLICY_L2, 2), (POLICY_L3, 3)] {
        v.push("--policy-level".into());
        v.push(format!("{oid}={level}"));
    }
    v
}

fn with(base: &[&str], more: &[String]) -> Vec<String> {
    base.iter()
        .map(|s| s.to_string())
        .chain(more.iter().cloned())
        .collect()
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn a_newcomer_signs_in_the_demo_and_checks_the_signatures() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let server_log = std::fs::File::create(dir.join("server.log")).expect("log file");
    // Its settings come from its flags and an empty file, never from a `paraph.toml` at the
    // repository root, where the demo runs.
    let settings = dir.join("isolated-settings.toml");
    std::fs::write(&settings, "").expect("settings file");

    // --- The demo server: bootstrap JSON, the demo block with tokens, then the address. ---
    let mut server_cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            server_cmd.env_remove(k);
        }
    }
    let mut server = Proc {
        child: server_cmd
            .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.join("data"))
            .args(common::cli::store_args(&dir.join("data")))
            .arg("--config")
            .arg(&settings)
            .arg("--json")
            .current_dir(ROOT)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(server_log)
            .spawn()
            .expect("spawn paraph serve --demo"),
    };
    let server_out = lines(server.child.stdout.take().expect("server stdout"));
    let boot: Value =
        serde_json::from_str(&next_line(&server_out, "bootstrap")).expect("bootstrap JSON");
    let operator = boot["token"].as_str().expect("operator token").to_owned();
    let mut block = Vec::new();
    let addr = loop {
        let line = next_line(&server_out, "demo or listening");
        if let Some(a) = line.strip_prefix("paraph listening on ") {
            break a.to_owned();
        }
        block.push(line);
    };
    let finance = demo_token(&block, "finance");
    let carol = demo_token(&block, "carol");
    let alice = demo_token(&block, "alice");
    let bob = demo_token(&block, "bob");
    let cli = Cli { addr };

    // --- A mandate through the demo circuit: carol's visa, then alice's signature. ---
    let content = b"Mandat 2026-001: 1200.50 EUR to ACME\n".repeat(100);
    let doc = dir.join("mandate.txt");
    std::fs::write(&doc, &content).expect("write document");
    let other = dir.join("other.txt");
    std::fs::write(&other, b"not the signed document\n").expect("write other");
    let submit = |title: &str| {
        cli.run(
            &finance,
            &[
                "submit",
                s(&doc),
                "--type",
                "MANDATE",
                "--circuit",
                "demo",
                "--title",
                title,
                "--meta",
                "amount=1200.50",
            ],
        )
        .ok()
        .trim()
        .to_owned()
    };
    let id = submit("Mandat 2026-001");
    assert_eq!(id.len(), 32, "{id:?}");
    let approved = cli.run(&carol, &["approve", &id, "--json"]).json();
    assert_eq!(approved["current_step"], 1);
    // The inbox shows the signature step.
    let inbox = cli.run(&alice, &["inbox", "--json"]).json();
    assert!(
        inbox["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["id"] == id.as_str() && i["step_kind"] == "signature"),
        "{inbox}"
    );

    // --- Refusals before any signature. ---
    let p12 = "certs-test/officer-l2-p256.p12";
    // No passphrase and no terminal: a usage error, not a hang.
    cli.run(&alice, &["sign", &id, "--p12", p12])
        .fails(2, &["PARAPH_P12_PASSWORD"]);
    // A wrong passphrase fails cleanly and is never echoed.
    let wrong = cli.run_env(
        Some(&alice),
        &[("PARAPH_P12_PASSWORD", "not-the-passphrase-42")],
        &["sign", &id, "--p12", p12],
    );
    wrong.fails(2, &["wrong passphrase"]);
    wrong.never_shows("not-the-passphrase-42");
    // Bob's certificate (bound to bob) is refused for alice.
    let stolen = cli.sign(
        &alice,
        &["sign", &id, "--p12", "certs-test/officer-l3-p384.p12"],
    );
    stolen.fails(5, &["FAILED_PRECONDITION", "not bound"]);
    // Bob is no actor of this step.
    cli.sign(
        &bob,
        &["sign", &id, "--p12", "certs-test/officer-l3-p384.p12"],
    )
    .code_is(4);
    // Still waiting for alice.
    let doc_now = cli.run(&alice, &["show", &id, "--json"]).json();
    assert_eq!(doc_now["state"], "in_progress");
    assert_eq!(doc_now["current_step"], 1);

    // --- Alice signs; the server seals at once: the document is completed. ---
    let signed_out = cli.sign(&alice, &["sign", &id, "--p12", p12, "--json"]);
    signed_out.never_shows(P12_PASSWORD);
    signed_out.never_shows("PRIVATE KEY");
    let signed = signed_out.json();
    assert_eq!(signed["id"], id.as_str());
    assert_eq!(signed["step"], 1);
    assert_eq!(signed["state"], "completed");
    assert_eq!(signed["current_step"], Value::Null);
    let sig = &signed["signature"];
    assert_eq!(sig["index"], 0);
    assert_eq!(sig["signer"], "alice");
    assert_eq!(sig["level"], 2);
    assert!(
        sig["subject"]
            .as_str()
            .is_some_and(|s| s.contains("CN=TEST")),
        "{sig}"
    );
    assert_eq!(sig["certificate_sha256"].as_str().map(str::len), Some(64));
    assert!(
        sig["signing_time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{sig}"
    );
    // Nothing left to sign.
    cli.sign(&alice, &["sign", &id, "--p12", p12])
        .fails(5, &["no active step"]);

    // `show` lists the signature and the seal.
    let shown = cli.run(&alice, &["show", &id, "--json"]).json();
    assert_eq!(shown["state"], "completed");
    assert_eq!(shown["steps"][1]["actions"][0]["kind"], "signed");
    assert_eq!(shown["steps"][1]["actions"][0]["actor"], "alice");
    assert_eq!(shown["steps"][2]["actions"][0]["kind"], "sealed");
    assert_eq!(shown["signatures"].as_array().map(Vec::len), Some(2));
    let kinds: Vec<&str> = shown["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["kind"].as_str().expect("kind"))
        .collect();
    assert!(
        kinds.contains(&"signed") && kinds.contains(&"sealed"),
        "{kinds:?}"
    );
    let text = cli.run(&alice, &["show", &id]);
    for needle in ["signed by alice", "sealed by the tenant seal", "signatures"] {
        assert!(text.ok().contains(needle), "{needle}: {}", text.stdout);
    }

    // --- The signatures as files: one per signature and all of them in one SignedData. ---
    let out_dir = dir.join("signatures");
    let sigs = cli
        .run(&alice, &["signatures", &id, "--out", s(&out_dir), "--json"])
        .json();
    let list = sigs["signatures"].as_array().expect("signatures");
    assert_eq!(list.len(), 2, "{sigs}");
    assert_eq!(list[0]["signer"], "alice");
    assert_eq!(list[0]["seal"], false);
    assert_eq!(list[0]["step"], 1);
    assert_eq!(list[1]["seal"], true);
    assert_eq!(list[1]["step"], 2);
    let sig0 = out_dir.join(format!("{id}-0.p7s"));
    let sig1 = out_dir.join(format!("{id}-1.p7s"));
    let all = out_dir.join(format!("{id}-all.p7s"));
    for f in [&sig0, &sig1, &all] {
        let bytes = std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(bytes.first(), Some(&0x30), "{} is not DER", f.display());
    }
    assert_eq!(list[0]["file"], s(&sig0));
    assert_eq!(sigs["combined_file"], s(&all));
    let table = cli.run(&alice, &["signatures", &id]);
    assert!(table.ok().contains("alice"), "{}", table.stdout);

    // --- Validation through the server. ---
    let report = cli
        .run(
            &alice,
            &[
                "validate",
                "--data",
                s(&doc),
                "--signature",
                s(&sig0),
                "--json",
            ],
        )
        .json();
    assert_eq!(report["indication"], "TOTAL_PASSED", "{report}");
    assert_eq!(report["signers"][0]["level"], 2);
    assert_eq!(
        report["signers"][0]["chain"].as_array().map(Vec::len),
        Some(3)
    );
    let text = cli.run(
        &alice,
        &["validate", "--data", s(&doc), "--signature", s(&all)],
    );
    assert!(text.ok().starts_with("TOTAL_PASSED"), "{}", text.stdout);
    assert!(
        text.stdout.contains("signer 1: TOTAL_PASSED"),
        "{}",
        text.stdout
    );
    // The required level is checked: alice's certificate is RGS **.
    let low = cli.run(
        &alice,
        &[
            "validate",
            "--data",
            s(&doc),
            "--signature",
            s(&sig0),
            "--level",
            "3",
            "--json",
        ],
    );
    low.code_is(6);
    assert_eq!(low.stdout_json()["sub_indication"], "LEVEL_TOO_LOW");
    // Other data: the digest does not match. Exit 6, distinct from errors.
    let bad = cli.run(
        &alice,
        &[
            "validate",
            "--data",
            s(&other),
            "--signature",
            s(&sig0),
            "--json",
        ],
    );
    bad.fails(6, &["does not pass"]);
    let bad = bad.stdout_json();
    assert_eq!(bad["indication"], "TOTAL_FAILED");
    assert_eq!(bad["sub_indication"], "HASH_FAILURE");

    // --- Offline validation: no server, no token. ---
    let offline = Cli {
        addr: "127.0.0.1:9".into(),
    };
    let args = with(
        &[
            "validate",
            "--data",
            s(&doc),
            "--signature",
            s(&sig0),
            "--json",
        ],
        &offline_trust_args(),
    );
    let report = offline.run_env(None, &[], &refs(&args)).json();
    assert_eq!(report["indication"], "TOTAL_PASSED", "{report}");
    assert_eq!(report["signers"][0]["level"], 2);
    let args = with(
        &[
            "validate",
            "--data",
            s(&doc),
            "--signature",
            s(&all),
            "--json",
        ],
        &offline_trust_args(),
    );
    let report = offline.run_env(None, &[], &refs(&args)).json();
    assert_eq!(report["signers"].as_array().map(Vec::len), Some(2));
    assert_eq!(report["indication"], "TOTAL_PASSED", "{report}");
    let args = with(
        &["validate", "--data", s(&other), "--signature", s(&sig0)],
        &offline_trust_args(),
    );
    let bad = offline.run_env(None, &[], &refs(&args));
    bad.code_is(6);
    assert!(
        bad.stdout.starts_with("TOTAL_FAILED / HASH_FAILURE"),
        "{}",
        bad.stdout
    );
    // Offline options need --trust.
    offline
        .run_env(
            None,
            &[],
            &[
                "validate",
                "--data",
                s(&doc),
                "--signature",
                s(&sig0),
                "--crl",
                "certs-test/crls.pem",
            ],
        )
        .code_is(2);

    // --- OpenSSL agrees (the chain is inside the CMS). ---
    let mut ca = std::fs::read(Path::new(ROOT).join("certs-test/root-ca.cert.pem")).expect("root");
    ca.extend(std::fs::read(Path::new(ROOT).join("certs-test/crls.pem")).expect("crls"));
    let ca_file = dir.join("ca-and-crls.pem");
    std::fs::write(&ca_file, ca).expect("write CA file");
    let openssl = |sig: &PathBuf, policy: &str| {
        Command::new("openssl")
            .args(["cms", "-verify", "-binary", "-inform", "DER", "-in"])
            .arg(sig)
            .arg("-content")
            .arg(&doc)
            .arg("-CAfile")
            .arg(&ca_file)
            .args([
                "-purpose",
                "any",
                "-crl_check_all",
                "-explicit_policy",
                "-policy",
                policy,
                "-out",
                "/dev/null",
            ])
            .output()
            .expect("run openssl")
    };
    let o = openssl(&sig0, POLICY_L2);
    assert!(
        o.status.success(),
        "openssl cms -verify: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // --- Trust settings and bindings (the operator acts in the demo tenant). ---
    let op = |args: &[&str]| {
        let mut v: Vec<&str> = args.to_vec();
        v.extend(["--tenant", "demo"]);
        cli.run(&operator, &v)
    };
    let trust = op(&["admin", "trust", "show", "--json"]).json();
    assert_eq!(trust["anchors"].as_array().map(Vec::len), Some(1));
    assert_eq!(trust["crls"].as_array().map(Vec::len), Some(2));
    assert_eq!(trust["policy_levels"].as_array().map(Vec::len), Some(3));
    assert_eq!(trust["seal_configured"], true);
    assert!(
        trust["crls"][0]["next_update"].as_str().is_some(),
        "{trust}"
    );
    let text = op(&["admin", "trust", "show"]);
    assert!(text.ok().contains("TEST Paraph Root CA"), "{}", text.stdout);
    // The same trust, now with a signature policy embedded in every new signature.
    let policy_hash = "ab".repeat(32);
    let sig_policy = format!("1.2.250.1.131.1.5.18.21.1.4,{policy_hash},https://paraph.test/p.pdf");
    let set_args = with(
        &[
            "admin",
            "trust",
            "set",
            "--anchor",
            "certs-test/root-ca.cert.pem",
            "--intermediate",
            "certs-test/signing-ca.cert.pem",
            "--crl",
            "certs-test/crls.pem",
            "--policy-level",
            &format!("{POLICY_L1}=*"),
            "--policy-level",
            &format!("{POLICY_L2}=**"),
            "--policy-level",
            &format!("{POLICY_L3}=***"),
            "--signature-policy",
            &sig_policy,
            "--json",
        ],
        &["--tenant".into(), "demo".into()],
    );
    let trust = cli.run(&operator, &refs(&set_args)).json();
    assert_eq!(trust["signature_policy"]["sha256"], policy_hash.as_str());
    assert_eq!(trust["policy_levels"][1]["level"], 2);
    // An officer may not read (nor change) the trust settings.
    cli.run(&alice, &["admin", "trust", "show"]).code_is(4);
    // A bad hash is refused before any call.
    op(&[
        "admin",
        "trust",
        "set",
        "--anchor",
        "certs-test/root-ca.cert.pem",
        "--policy-level",
        &format!("{POLICY_L2}=2"),
        "--signature-policy",
        "1.2.3,abcd,https://x",
    ])
    .fails(2, &["SHA-256"]);

    // Bindings: a second certificate for alice; bob's certificate is his only.
    let bound = op(&[
        "admin",
        "user",
        "bind-cert",
        "alice",
        "certs-test/officer-l3-p256.cert.pem",
        "--json",
    ])
    .json();
    assert_eq!(bound["name"], "alice");
    assert_eq!(bound["certificates"].as_array().map(Vec::len), Some(2));
    assert!(
        bound["certificates"][0]["sha256"].as_str().is_some(),
        "{bound}"
    );
    op(&[
        "admin",
        "user",
        "bind-cert",
        "alice",
        "certs-test/officer-l3-p384.cert.pem",
    ])
    .fails(5, &["ALREADY_EXISTS"]);
    let users = op(&["admin", "user", "list"]);
    assert!(users.ok().contains("certificate C=FR"), "{}", users.stdout);

    // --- `sign --all`: two documents waiting, signed in turn. ---
    let a = submit("Mandat 2026-002");
    let b = submit("Mandat 2026-003");
    for d in [&a, &b] {
        cli.run(&carol, &["approve", d]).ok();
    }
    let batch = cli.sign(&alice, &["sign", "--all", "--p12", p12, "--json"]);
    batch.never_shows(P12_PASSWORD);
    let done = batch.json();
    assert_eq!(done["failed"].as_array().map(Vec::len), Some(0), "{done}");
    let ids: Vec<&str> = done["signed"]
        .as_array()
        .expect("signed")
        .iter()
        .map(|s| s["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids.len(), 2, "{done}");
    assert!(
        ids.contains(&a.as_str()) && ids.contains(&b.as_str()),
        "{ids:?}"
    );
    // stderr is no terminal here: a summary, no progress bar.
    assert!(
        batch.stderr.contains("signed 2, failed 0"),
        "{}",
        batch.stderr
    );
    assert!(!batch.stderr.contains("[#"), "{}", batch.stderr);
    for d in [&a, &b] {
        let shown = cli.run(&finance, &["show", d, "--json"]).json();
        assert_eq!(shown["state"], "completed", "{shown}");
    }
    // The new signatures carry the signature policy.
    let out2 = dir.join("signatures2");
    cli.run(&alice, &["signatures", &a, "--out", s(&out2)]).ok();
    let report = cli
        .run(
            &alice,
            &[
                "validate",
                "--data",
                s(&doc),
                "--signature",
                s(&out2.join(format!("{a}-0.p7s"))),
                "--json",
            ],
        )
        .json();
    assert_eq!(report["indication"], "TOTAL_PASSED", "{report}");
    assert_eq!(
        report["signers"][0]["policy_oid"],
        "1.2.250.1.131.1.5.18.21.1.4"
    );
    // Nothing waits any more.
    let again = cli.sign(&alice, &["sign", "--all", "--p12", p12]);
    again.ok();
    assert!(again.stderr.contains("nothing to sign"), "{}", again.stderr);
    // A failing batch goes on and reports each failure, exiting non-zero.
    let c = submit("Mandat 2026-004");
    // A visa step is approved, not signed: refused before the key is used.
    cli.sign(
        &carol,
        &["sign", &c, "--p12", "certs-test/officer-l1-rsa2048.p12"],
    )
    .fails(5, &["visa step", "paraph approve"]);
    cli.run(&carol, &["approve", &c]).ok();
    let failing = cli.sign(
        &alice,
        &["sign", "--all", "--p12", "certs-test/officer-l3-p384.p12"],
    );
    failing.fails(1, &["not bound", &c, "1 of 1"]);

    // --- `pki verify`: offline, no token. ---
    let verify = |leaf: &str, extra: &[&str]| {
        let mut v = vec![
            "pki",
            "verify",
            leaf,
            "--trust",
            "certs-test/root-ca.cert.pem",
            "--untrusted",
            "certs-test/signing-ca.cert.pem",
            "--crl",
            "certs-test/crls.pem",
            "--at",
            "2026-06-01T00:00:00Z",
        ];
        v.extend(extra);
        offline.run_env(None, &[], &v)
    };
    let revoked = verify("certs-test/neg-revoked.cert.pem", &[]);
    assert_ne!(revoked.code, Some(0), "{}", revoked.stdout);
    assert!(revoked.stdout.contains("REVOKED"), "{}", revoked.stdout);
    assert!(
        revoked.stdout.contains("keyCompromise"),
        "{}",
        revoked.stdout
    );
    let level = format!("{POLICY_L2}=2");
    let valid = verify(
        "certs-test/officer-l2-p256.cert.pem",
        &["--policy-level", &level],
    );
    assert!(valid.ok().starts_with("valid"), "{}", valid.stdout);
}
