//! The first hour of operators and officers at a terminal, through the real binary: a start
//! that fails announces no token (and the next one does), the demo's seal survives a plain
//! restart, TLS mistakes are explained, the operator is told about `--tenant`, a closed pipe
//! ends the output quietly, an early officer is told his step is not active yet, tokens are
//! listed with their last use and revoked by the token itself, files of the wrong kind are
//! named, and the command line takes its global flags anywhere, `--addr` without a port,
//! `pki verify --json` and shell completions.

mod common;

use common::cli::{lines, next_line, start_server, store_args, Cli, Out, Proc, BIN};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

/// The repository root (certs-test/ is there).
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const P12_PASSWORD: &str = "paraph-test";

fn certs() -> PathBuf {
    Path::new(ROOT).join("certs-test")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// `paraph ARGS` with a clean environment (no PARAPH_* variable), in `dir`, bounded.
fn paraph(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    let cli = Cli {
        dir: dir.to_path_buf(),
        addr: String::new(),
    };
    let mut cmd = cli.command("", args);
    cmd.env_remove("PARAPH_ADDR")
        .env_remove("PARAPH_TENANT")
        .env_remove("PARAPH_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, &format!("paraph {}", args.join(" ")))
}

fn run_bounded(mut cmd: Command, what: &str) -> Out {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn paraph");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(common::cli::STEP_TIMEOUT) {
        Ok(o) => o.expect("wait for paraph"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("`{what}` did not finish in time");
        }
    };
    Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        what: what.to_owned(),
    }
}

/// `paraph ARGS` as the holder of a token that names its own tenant (no PARAPH_TENANT).
fn run_as(cli: &Cli, token: &str, args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = cli.command(token, args);
    cmd.env_remove("PARAPH_TENANT");
    for (k, v) in env {
        cmd.env(k, v);
    }
    run_bounded(cmd, &format!("paraph {}", args.join(" ")))
}

/// A `paraph serve` command with a clean environment, on the tests' store for the data
/// directory `dir/data` (the one every server of this file uses).
fn serve_cmd(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("serve")
        .args(store_args(&dir.join("data")))
        .current_dir(dir)
        .stdin(Stdio::null());
    cmd
}

/// Starts a server command and reads its stdout up to the listening line: the lines before it
/// and the address.
fn started(mut cmd: Command, dir: &Path) -> (Proc, Receiver<String>, Vec<String>, String) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file");
    let mut server = Proc {
        child: cmd
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn paraph serve"),
    };
    let out = lines(server.child.stdout.take().expect("server stdout"));
    let mut before = Vec::new();
    let addr = loop {
        let line = next_line(&out, "server output");
        if let Some(a) = line.strip_prefix("paraph listening on ") {
            break a.to_owned();
        }
        before.push(line);
    };
    (server, out, before, addr)
}

#[test]
fn a_failed_start_announces_no_token_and_the_next_start_does() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let data = dir.join("data");
    // The port is taken.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").to_string();
    let mut cmd = serve_cmd(dir);
    cmd.args(["--listen", &port, "--data", s(&data)]);
    let out = run_bounded(cmd, "paraph serve on a taken port");
    out.fails(
        1,
        &["cannot listen on", &port, "paraph admin operator-token"],
    );
    assert!(
        !out.stdout.contains("pph_"),
        "a token was printed: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("nothing was initialised"),
        "{}",
        out.stderr
    );
    // A TLS key that cannot be read: the same, before anything is initialised.
    let cfg = dir.join("tls.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join("missing.pem").display(),
            dir.join("missing.key").display()
        ),
    )
    .expect("write settings");
    let mut cmd = serve_cmd(dir);
    cmd.args(["--config", s(&cfg), "--listen", "127.0.0.1:0", "--data"])
        .arg(&data);
    let out = run_bounded(cmd, "paraph serve with a missing TLS key");
    out.fails(1, &["TLS", "missing", "nothing was initialised"]);
    assert!(
        !out.stdout.contains("pph_"),
        "a token was printed: {}",
        out.stdout
    );
    drop(taken);

    // A start that succeeds prints the token then: the initialisation was not consumed.
    let mut cmd = serve_cmd(dir);
    cmd.args(["--listen", "127.0.0.1:0", "--json", "--data"])
        .arg(&data);
    let (mut server, _out, before, _addr) = started(cmd, dir);
    let boot: Value =
        serde_json::from_str(before.first().expect("bootstrap line")).expect("bootstrap JSON");
    assert!(
        boot["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("pph_")),
        "{boot}"
    );
    server.terminate(Duration::from_secs(30));
}

/// The demo block's `  user  token   (…; token id ID)` line of `user`: (token, token id).
fn demo_token(block: &[String], user: &str) -> (String, String) {
    block
        .iter()
        .find_map(|l| {
            let mut words = l.split_whitespace();
            if !l.starts_with("  ") || words.next() != Some(user) {
                return None;
            }
            let token = words.next()?.to_owned();
            let id = l
                .split("token id ")
                .nth(1)?
                .trim_end_matches(')')
                .to_owned();
            token.starts_with("pph_").then_some((token, id))
        })
        .unwrap_or_else(|| panic!("no token for {user} in the demo block: {block:#?}"))
}

fn demo_cmd(dir: &Path) -> Command {
    let mut cmd = serve_cmd(dir);
    cmd.args([
        "--demo",
        "--certs",
        s(&certs()),
        "--listen",
        "127.0.0.1:0",
        "--json",
    ])
    .arg("--data")
    .arg(dir.join("data"));
    cmd
}

#[test]
fn the_demo_tenant_keeps_its_seal_after_a_plain_restart_and_early_officers_are_told() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let (mut server, _out, block, addr) = started(demo_cmd(&dir), &dir);
    let boot: Value = serde_json::from_str(&block[0]).expect("bootstrap JSON");
    let operator = boot["token"].as_str().expect("operator token").to_owned();
    let (finance, finance_id) = demo_token(&block, "finance");
    let (carol, _) = demo_token(&block, "carol");
    let (alice, alice_id) = demo_token(&block, "alice");
    let (bob, bob_id) = demo_token(&block, "bob");
    assert!(!finance_id.is_empty() && finance_id != alice_id);
    server.terminate(Duration::from_secs(30));

    // --- A plain `serve` on the same data directory: the demo's settings are still there. ---
    let mut cmd = serve_cmd(&dir);
    cmd.args(["--listen", "127.0.0.1:0", "--data"])
        .arg(dir.join("data"));
    let (mut server, _out, before, addr2) = started(cmd, &dir);
    assert!(
        before.iter().all(|l| !l.contains("pph_")),
        "a restart printed a token: {before:?}"
    );
    assert_ne!(addr, "");
    let cli = Cli {
        dir: dir.clone(),
        addr: addr2,
    };
    let doc = dir.join("mandate.txt");
    std::fs::write(&doc, b"Mandat 2026-001: 1200.50 EUR\n").expect("write");
    let submit = |title: &str| {
        run_as(
            &cli,
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
            &[],
        )
        .ok()
        .trim()
        .to_owned()
    };
    let id = submit("Mandat 2026-001");
    let p12 = certs().join("officer-l2-p256.p12");
    let sign_env = [("PARAPH_P12_PASSWORD", P12_PASSWORD)];
    // Alice is early: her signature step (1) waits for carol's visa (step 0).
    run_as(&cli, &alice, &["sign", &id, "--p12", s(&p12)], &sign_env).fails(
        5,
        &[
            "FAILED_PRECONDITION",
            "your step (1, signature) is not active yet",
        ],
    );
    run_as(&cli, &alice, &["approve", &id], &[]).fails(
        5,
        &[
            "FAILED_PRECONDITION",
            "your step (1, signature) is not active yet",
        ],
    );
    run_as(&cli, &alice, &["show", &id], &[])
        .fails(5, &["your step (1, signature) is not active yet"]);
    // Bob is an officer of the tenant but not of this document: still refused as before.
    run_as(&cli, &bob, &["show", &id], &[]).fails(4, &["PERMISSION_DENIED", "not concerned"]);
    run_as(&cli, &carol, &["approve", &id], &[]).ok();
    // On her signature step, `approve` points to `paraph sign`.
    run_as(&cli, &alice, &["approve", &id], &[]).fails(5, &["signature step", "paraph sign"]);
    run_as(&cli, &alice, &["sign", &id, "--p12", s(&p12)], &sign_env).ok();
    // The seal step was applied by the restarted server: the document is completed.
    let shown = run_as(&cli, &alice, &["show", &id, "--json"], &[]).json();
    assert_eq!(shown["state"], "completed", "{shown}");
    assert_eq!(shown["steps"][2]["status"], "done", "{shown}");
    // The whole CMS lists its signers in circuit order: alice (step 1), then the seal (step 2).
    let sigs = dir.join("sigs");
    run_as(&cli, &alice, &["signatures", &id, "--out", s(&sigs)], &[]).ok();
    let all = sigs.join(format!("{id}-all.p7s"));
    let mut args = vec![
        "validate".to_owned(),
        "--data".into(),
        s(&doc).into(),
        "--signature".into(),
        s(&all).into(),
        "--json".into(),
        "--trust".into(),
        s(&certs().join("root-ca.cert.pem")).into(),
        "--intermediate".into(),
        s(&certs().join("signing-ca.cert.pem")).into(),
        "--crl".into(),
        s(&certs().join("crls.pem")).into(),
    ];
    for (oid, level) in [
        ("1.3.6.1.4.1.99999.1.1.1", 1),
        ("1.3.6.1.4.1.99999.1.1.2", 2),
    ] {
        args.push("--policy-level".into());
        args.push(format!("{oid}={level}"));
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let report = paraph(&dir, &refs, &[]);
    let report: Value = serde_json::from_str(&report.stdout)
        .unwrap_or_else(|e| panic!("{e}: {} {}", report.stdout, report.stderr));
    let signers: Vec<String> = report["signers"]
        .as_array()
        .expect("signers")
        .iter()
        .map(|s| s["signer"].to_string())
        .collect();
    assert_eq!(signers.len(), 2, "{report}");
    assert!(signers[0].contains("Officer"), "{signers:?}");
    assert!(signers[1].contains("Cachet"), "{signers:?}");

    // --- `sign --all` draws its progress bar on a terminal only. ---
    let id2 = submit("Mandat 2026-002");
    run_as(&cli, &carol, &["approve", &id2], &[]).ok();
    let line = format!(
        "PARAPH_ADDR={} PARAPH_TOKEN={alice} PARAPH_P12_PASSWORD={P12_PASSWORD} {BIN} sign --all --p12 {}",
        cli.addr,
        s(&p12)
    );
    let mut tty = Command::new("script");
    tty.args(["-qec", &line, "/dev/null"])
        .current_dir(&dir)
        .stdin(Stdio::null());
    let out = run_bounded(tty, "sign --all on a terminal");
    out.ok();
    assert!(
        out.stdout.contains("[####################] 1/1"),
        "{}",
        out.stdout
    );

    // --- Tokens: listed per user with their last use; revoked by the token itself. ---
    let op = |args: &[&str]| {
        let mut v = vec!["--tenant", "demo"];
        v.extend_from_slice(args);
        run_as(&cli, &operator, &v, &[])
    };
    let listed = op(&["admin", "token", "list", "alice", "--json"]).json();
    let tokens = listed["tokens"].as_array().expect("tokens");
    assert!(tokens.iter().all(|t| t["user"] == "alice"), "{listed}");
    let mine = tokens
        .iter()
        .find(|t| t["token_id"] == alice_id.as_str())
        .unwrap_or_else(|| panic!("alice's demo token {alice_id} not listed: {listed}"));
    assert!(mine["last_used_at"].is_string(), "{mine}");
    // A fresh token of bob's, never used: listed without a last use, beside his used one.
    let fresh = op(&["admin", "token", "issue", "bob", "--json"]).json();
    let fresh_token = fresh["token"].as_str().expect("token").to_owned();
    let fresh_id = fresh["token_id"].as_str().expect("token id").to_owned();
    let bobs = op(&["admin", "token", "list", "bob", "--json"]).json();
    let of = |id: &str| {
        bobs["tokens"]
            .as_array()
            .expect("tokens")
            .iter()
            .find(|t| t["token_id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not in {bobs}"))
    };
    assert!(of(&fresh_id)["last_used_at"].is_null(), "{bobs}");
    assert!(of(&bob_id)["last_used_at"].is_string(), "{bobs}");
    let text = op(&["admin", "token", "list"]);
    assert!(text.ok().contains("LAST USED"), "{}", text.stdout);
    // Revoked by the token itself, which no output repeats.
    let revoked = op(&["admin", "token", "revoke", &fresh_token, "--json"]);
    assert!(!revoked.stdout.contains(&fresh_token) && !revoked.stderr.contains(&fresh_token));
    assert_eq!(revoked.json()["token_id"], fresh_id.as_str());
    run_as(&cli, &fresh_token, &["inbox"], &[]).fails(4, &["UNAUTHENTICATED"]);
    run_as(&cli, &bob, &["inbox"], &[]).ok();

    // --- Global flags before the command. ---
    let shown = run_bounded(
        {
            let mut c = cli.command("", &["--json", "--token", &finance, "show", &id]);
            c.env_remove("PARAPH_TOKEN").env_remove("PARAPH_TENANT");
            c
        },
        "paraph --json --token T show ID",
    )
    .json();
    assert_eq!(shown["id"], id.as_str());
    server.terminate(Duration::from_secs(30));
}

#[test]
fn the_operator_without_a_tenant_is_told_about_the_option_and_a_closed_pipe_ends_quietly() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let (mut server, _out, operator, addr) = start_server(&dir);
    let cli = Cli { dir, addr };
    let mut cmd = cli.command(&operator, &["admin", "user", "list"]);
    cmd.env_remove("PARAPH_TENANT");
    let out = run_bounded(cmd, "admin user list without a tenant");
    out.fails(2, &["--tenant", "PARAPH_TENANT"]);
    assert!(!out.stderr.contains("x-paraph-tenant"), "{}", out.stderr);

    // The reader of stdout is gone before anything is written (`paraph inbox --json | head`).
    for args in [&["inbox", "--json"][..], &["admin", "user", "list"][..]] {
        let mut cmd = cli.command(&operator, args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        drop(child.stdout.take());
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err)
            .expect("read stderr");
        let status = child.wait().expect("wait");
        assert_ne!(status.code(), Some(101), "panicked: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(err.trim().is_empty(), "not quiet: {err}");
    }
    server.terminate(Duration::from_secs(30));
}

#[test]
fn files_of_the_wrong_kind_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let c = certs();
    let p12 = c.join("officer-l2-p256.p12");
    let cert = c.join("officer-l2-p256.cert.pem");
    let key = c.join("officer-l2-p256.key.pem");
    let root = c.join("root-ca.cert.pem");
    let crls = c.join("crls.pem");
    let token = [("PARAPH_TOKEN", "pph_x"), ("PARAPH_ADDR", "127.0.0.1:9")];
    paraph(dir, &["pki", "verify", s(&p12), "--trust", s(&root)], &[])
        .fails(2, &["this is a PKCS#12 file, not a certificate"]);
    paraph(dir, &["pki", "verify", s(&cert), "--trust", s(&crls)], &[])
        .fails(2, &["this is a CRL, not a certificate"]);
    paraph(
        dir,
        &[
            "pki",
            "verify",
            s(&cert),
            "--trust",
            s(&root),
            "--crl",
            s(&root),
        ],
        &[],
    )
    .fails(2, &["this is a certificate, not a CRL"]);
    paraph(
        dir,
        &["admin", "user", "bind-cert", "alice", s(&p12)],
        &token,
    )
    .fails(2, &["this is a PKCS#12 file, not a certificate"]);
    paraph(
        dir,
        &["sign", "0123", "--p12", s(&cert)],
        &[("PARAPH_TOKEN", "pph_x"), ("PARAPH_P12_PASSWORD", "x")],
    )
    .fails(2, &["this is a certificate, not a PKCS#12 file"]);
    paraph(
        dir,
        &["verify-bundle", s(&cert), "--log-key", s(&cert)],
        &[],
    )
    .fails(2, &["this is a certificate, not a public key"]);
    paraph(
        dir,
        &[
            "validate",
            "--data",
            s(&cert),
            "--signature",
            s(&cert),
            "--trust",
            s(&root),
        ],
        &[],
    )
    .fails(2, &["this is a certificate, not a CMS (PKCS#7) signature"]);
    paraph(
        dir,
        &[
            "admin",
            "user",
            "list",
            "--addr",
            "https://127.0.0.1:9",
            "--ca",
            s(&key),
        ],
        &token,
    )
    .fails(2, &["this is a private key, not a certificate"]);
    for out in [
        paraph(dir, &["pki", "verify", s(&p12), "--trust", s(&root)], &[]),
        paraph(dir, &["admin", "user", "bind-cert", "a", s(&p12)], &token),
    ] {
        assert!(
            !out.stderr.contains("error:0"),
            "OpenSSL internals: {}",
            out.stderr
        );
    }
}

#[test]
fn pki_verify_speaks_json_and_completions_are_printed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let c = certs();
    let base = |leaf: &str| {
        vec![
            "pki".to_owned(),
            "verify".to_owned(),
            c.join(leaf).display().to_string(),
            "--trust".to_owned(),
            c.join("root-ca.cert.pem").display().to_string(),
            "--untrusted".to_owned(),
            c.join("signing-ca.cert.pem").display().to_string(),
            "--crl".to_owned(),
            c.join("crls.pem").display().to_string(),
            "--policy-level".to_owned(),
            "1.3.6.1.4.1.99999.1.1.2=2".to_owned(),
            "--json".to_owned(),
        ]
    };
    let args = base("officer-l2-p256.cert.pem");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let ok = paraph(dir, &refs, &[]).json();
    assert_eq!(ok["valid"], true, "{ok}");
    assert_eq!(ok["level"], 2, "{ok}");
    let args = base("neg-revoked.cert.pem");
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = paraph(dir, &refs, &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let refused: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(refused["valid"], false, "{refused}");
    assert_eq!(refused["refusals"][0]["code"], "REVOKED", "{refused}");
    // The global --json before the command works too.
    let mut args = base("officer-l2-p256.cert.pem");
    args.pop();
    args.insert(0, "--json".to_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    assert_eq!(paraph(dir, &refs, &[]).json()["valid"], true);

    let bash = paraph(dir, &["completions", "bash"], &[]);
    assert!(bash.ok().contains("_paraph"), "{}", bash.stdout);
    assert!(bash.stdout.contains("complete "), "{}", bash.stdout);
    let zsh = paraph(dir, &["completions", "zsh"], &[]);
    assert!(zsh.ok().starts_with("#compdef paraph"), "{}", zsh.stdout);
    let fish = paraph(dir, &["completions", "fish"], &[]);
    assert!(fish.ok().contains("complete -c paraph"), "{}", fish.stdout);
    assert!(fish.stdout.contains("token"), "{}", fish.stdout);
}

#[test]
fn an_address_without_a_port_means_port_50051() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    // Hold port 50051 when it is free, and see the client knock there.
    let Ok(listener) = std::net::TcpListener::bind("127.0.0.1:50051") else {
        eprintln!("port 50051 is in use on this machine: the check needs it free");
        return;
    };
    let knocked = std::thread::spawn(move || listener.accept().is_ok());
    let out = paraph(
        dir,
        &["inbox", "--addr", "127.0.0.1"],
        &[("PARAPH_TOKEN", "pph_x")],
    );
    assert_ne!(out.code, Some(0), "{}", out.stdout);
    assert!(knocked.join().expect("join"), "nothing connected to 50051");
}

#[test]
fn tls_mistakes_are_explained_once() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let tls = dir.join("tls");
    std::fs::create_dir(&tls).expect("mkdir");
    common::make_tls_material(&tls);
    let cfg = dir.join("tls.toml");
    std::fs::write(
        &cfg,
        format!(
            "[tls]\ncert = \"{t}/server.pem\"\nkey = \"{t}/server.key\"\nclient_ca = \"{t}/ca.pem\"\n",
            t = tls.display()
        ),
    )
    .expect("write settings");
    let mut cmd = serve_cmd(&dir);
    cmd.args([
        "--config",
        s(&cfg),
        "--listen",
        "127.0.0.1:0",
        "--json",
        "--data",
    ])
    .arg(dir.join("data"));
    let (mut server, _out, before, addr) = started(cmd, &dir);
    let boot: Value = serde_json::from_str(&before[0]).expect("bootstrap JSON");
    let operator = boot["token"].as_str().expect("token").to_owned();
    let port = addr.rsplit(':').next().expect("port").to_owned();
    let run = |addr: &str, extra: &[&str]| {
        let mut args = vec!["admin", "user", "list", "--addr", addr];
        args.extend_from_slice(extra);
        paraph(
            &dir,
            &args,
            &[("PARAPH_TOKEN", &operator), ("PARAPH_TENANT", "default")],
        )
    };
    let not_down = |out: &Out| {
        assert!(
            !out.stderr.contains("running there"),
            "the server answered, yet: {}",
            out.stderr
        );
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    };
    // Plain HTTP/2 against the TLS port.
    let plain = run(&format!("http://127.0.0.1:{port}"), &[]);
    plain.fails(1, &["speaks TLS", &format!("https://127.0.0.1:{port}")]);
    not_down(&plain);
    // TLS without the CA that issued the server's certificate.
    let https = format!("https://localhost:{port}");
    let no_ca = run(&https, &[]);
    no_ca.fails(1, &["--ca"]);
    not_down(&no_ca);
    // The CA, but no client certificate for a server that wants one.
    let ca = tls.join("ca.pem");
    let no_cert = run(&https, &["--ca", s(&ca)]);
    no_cert.fails(1, &["client certificate", "--cert"]);
    not_down(&no_cert);
    // Everything: served.
    let ok = run(
        &https,
        &[
            "--ca",
            s(&ca),
            "--cert",
            s(&tls.join("client.pem")),
            "--key",
            s(&tls.join("client.key")),
        ],
    );
    ok.ok();
    server.terminate(Duration::from_secs(30));

    // TLS against a plain server.
    let plain_dir = dir.join("plain");
    std::fs::create_dir(&plain_dir).expect("mkdir");
    let (mut server, _out, operator, addr) = start_server(&plain_dir);
    let out = paraph(
        &dir,
        &[
            "admin",
            "user",
            "list",
            "--addr",
            &format!("https://{addr}"),
        ],
        &[("PARAPH_TOKEN", &operator), ("PARAPH_TENANT", "default")],
    );
    out.fails(1, &["does not speak TLS", &format!("http://{addr}")]);
    not_down(&out);
    server.terminate(Duration::from_secs(30));
}
