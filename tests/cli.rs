//! End-to-end test of the command line, as a newcomer would use it after reading the README:
//! the real `paraph` binary serves on a loopback port with a temporary data directory, and the
//! same binary, as a client, creates users, tokens and a three-step circuit, submits a document,
//! approves it with each officer's token while a `paraph watch` runs in the background, reads it
//! back, and hits the main error paths. Every wait is bounded: the test cannot hang.

mod common;

use common::cli::{lines, start_server, token_of, Cli, Proc, STEP_TIMEOUT};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

/// Longest wait for the watch stream to deliver an event or end.
const WATCH_TIMEOUT: Duration = Duration::from_secs(20);

/// Deterministic bytes that do not compress to a trivial pattern (several 1 MiB chunks).
fn document_bytes(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(dir: &Path, name: &str, contents: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).expect("write file");
    p
}

const CIRCUIT: &str = r#"# Three visas: the accountant, then one of the two heads of department, then the director
# for amounts of 1000 and more.
name = "expense"

[[steps]]
kind = "visa"
actors = ["alice"]
deadline = "48h"

[[steps]]
kind = "visa"
actors = ["bob", "carol"]
mode = "any"

[[steps]]
kind = "visa"
actors = ["carol"]
condition = "amount >= 1000"
"#;

/// Starts `paraph serve` on a loopback port over `dir/data`; returns the process, the operator
/// token printed on first start and the address.

#[test]
fn a_newcomer_runs_a_document_through_a_three_step_circuit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let (mut server, _server_out, operator, addr) = start_server(&dir);
    // host:port is accepted and means http://host:port.
    let cli = Cli { dir, addr };
    let dir = cli.dir.clone();

    // --- Users and tokens, as the platform operator acting in tenant "default". ---
    for (name, display) in [
        ("alice", "Alice Martin"),
        ("bob", "Bob Durand"),
        ("carol", "Carol Petit"),
    ] {
        let out = cli.run(
            &operator,
            &[
                "admin", "user", "create", name, "--role", "officer", "--name", display,
            ],
        );
        assert!(out.ok().contains(name), "{}", out.stdout);
    }
    let finance = cli
        .run(
            &operator,
            &[
                "admin",
                "user",
                "create",
                "finance",
                "--role",
                "SUBMITTER",
                "--json",
            ],
        )
        .json();
    assert_eq!(finance["name"], "finance");
    assert_eq!(finance["roles"], serde_json::json!(["submitter"]));

    // A retry with the same idempotency key returns the first answer and creates nothing new.
    let first = cli.run(
        &operator,
        &[
            "admin",
            "user",
            "create",
            "dave",
            "--role",
            "auditor",
            "--idempotency-key",
            "create-dave-1",
            "--json",
        ],
    );
    let again = cli.run(
        &operator,
        &[
            "admin",
            "user",
            "create",
            "dave",
            "--role",
            "auditor",
            "--idempotency-key",
            "create-dave-1",
            "--json",
        ],
    );
    assert_eq!(first.json(), again.json());
    // Without a key, the second creation is a new request and the user exists already.
    cli.run(
        &operator,
        &["admin", "user", "create", "dave", "--role", "auditor"],
    )
    .fails(5, &["ALREADY_EXISTS"]);

    let users = cli
        .run(&operator, &["admin", "user", "list", "--json"])
        .json();
    let names: Vec<&str> = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| u["name"].as_str().expect("name"))
        .collect();
    for n in ["alice", "bob", "carol", "finance", "dave"] {
        assert_eq!(names.iter().filter(|x| **x == n).count(), 1, "{names:?}");
    }

    let alice_tok = cli
        .run(&operator, &["admin", "token", "issue", "alice", "--json"])
        .json();
    assert_eq!(alice_tok["user"], "alice");
    assert!(alice_tok["token_id"]
        .as_str()
        .is_some_and(|s| !s.is_empty()));
    let alice = token_of(&alice_tok);
    // Text mode prints the token alone on stdout, for `BOB=$(paraph admin token issue bob)`.
    let bob_out = cli.run(&operator, &["admin", "token", "issue", "bob"]);
    let bob = bob_out.ok().trim().to_owned();
    assert!(
        !bob.contains(char::is_whitespace) && !bob.is_empty(),
        "{bob:?}"
    );
    assert!(bob_out.stderr.contains("token id"), "{}", bob_out.stderr);
    let carol = token_of(
        &cli.run(&operator, &["admin", "token", "issue", "carol", "--json"])
            .json(),
    );
    let fin = token_of(
        &cli.run(&operator, &["admin", "token", "issue", "finance", "--json"])
            .json(),
    );

    // --- The circuit. ---
    write(&dir, "circuit.toml", CIRCUIT.as_bytes());
    let circuit = cli
        .run(
            &operator,
            &["circuit", "create", "--file", "circuit.toml", "--json"],
        )
        .json();
    assert_eq!(circuit["name"], "expense");
    assert_eq!(circuit["version"], 1);
    assert_eq!(circuit["steps"][0]["deadline_seconds"], 48 * 3600);
    assert_eq!(circuit["steps"][1]["mode"], "any");
    assert_eq!(circuit["steps"][2]["condition"], "amount >= 1000");
    let listed = cli.run(&operator, &["circuit", "list"]);
    assert!(listed.ok().contains("expense"), "{}", listed.stdout);
    let shown = cli
        .run(&operator, &["circuit", "show", "expense", "--json"])
        .json();
    assert_eq!(shown["steps"].as_array().map(Vec::len), Some(3));

    // --- The submitter watches his documents in the background. ---
    let mut watch = Proc {
        child: cli
            .command(&fin, &["watch", "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paraph watch"),
    };
    let events = lines(watch.child.stdout.take().expect("watch stdout"));
    let watch_err = lines(watch.child.stderr.take().expect("watch stderr"));
    // The subscription is live once `watch` says so.
    let ready = watch_err
        .recv_timeout(WATCH_TIMEOUT)
        .expect("watch did not start");
    assert!(ready.contains("watching"), "{ready}");
    // And the operator watches the whole tenant in text mode, as in the README.
    let mut op_watch = Proc {
        child: cli
            .command(&operator, &["watch"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paraph watch"),
    };
    let op_events = lines(op_watch.child.stdout.take().expect("watch stdout"));
    let op_err = lines(op_watch.child.stderr.take().expect("watch stderr"));
    let ready = op_err
        .recv_timeout(WATCH_TIMEOUT)
        .expect("watch did not start");
    assert!(ready.contains("watching"), "{ready}");

    // --- Submit (several chunks) and approve with each officer's token. ---
    let content = document_bytes(2 * 1024 * 1024 + 12_345);
    write(&dir, "invoice-118.pdf", &content);
    let submitted = cli.run(
        &fin,
        &[
            "submit",
            "invoice-118.pdf",
            "--type",
            "mandate",
            "--circuit",
            "expense",
            "--title",
            "Invoice 118",
            "--meta",
            "amount=1200.50",
            "--meta",
            "beneficiary=ACME",
        ],
    );
    let id = submitted.ok().trim().to_owned();
    assert_eq!(id.len(), 32, "{id:?}");

    let inbox = cli.run(&alice, &["inbox", "--json"]).json();
    let item = inbox["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap_or_else(|| panic!("not in alice's inbox: {inbox}"))
        .clone();
    assert_eq!(item["step"], 0);
    assert_eq!(item["step_kind"], "visa");
    assert_eq!(item["type"], "mandate");
    assert_eq!(item["submitter"], "finance");
    assert!(item["due_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    let bob_inbox = cli.run(&bob, &["inbox", "--all", "--json"]).json();
    assert_eq!(bob_inbox["items"].as_array().map(Vec::len), Some(0));

    // A submitter is no officer.
    cli.run(&fin, &["approve", &id])
        .fails(4, &["PERMISSION_DENIED"]);

    let after_alice = cli
        .run(&alice, &["approve", &id, "--comment", "checked", "--json"])
        .json();
    assert_eq!(after_alice["state"], "in_progress");
    assert_eq!(after_alice["current_step"], 1);
    let text = cli.run(&bob, &["inbox"]);
    assert!(text.ok().contains(&id), "{}", text.stdout);
    cli.run(&bob, &["approve", &id]).ok();
    let done = cli.run(&carol, &["approve", &id, "--json"]).json();
    assert_eq!(done["state"], "completed");

    // --- Read it back. ---
    let doc = cli.run(&fin, &["show", &id, "--json"]).json();
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["state"], "completed");
    assert_eq!(doc["type"], "mandate");
    assert_eq!(doc["title"], "Invoice 118");
    assert_eq!(doc["circuit"], "expense");
    assert_eq!(doc["circuit_version"], 1);
    assert_eq!(doc["submitter"], "finance");
    assert_eq!(doc["metadata"]["amount"], "1200.50");
    assert_eq!(doc["content_size"], content.len() as u64);
    assert_eq!(doc["current_step"], Value::Null);
    let steps = doc["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 3);
    for (s, who) in steps.iter().zip(["alice", "bob", "carol"]) {
        assert_eq!(s["status"], "done", "{s}");
        assert_eq!(s["actions"][0]["actor"], who, "{s}");
        assert_eq!(s["actions"][0]["kind"], "approved", "{s}");
    }
    assert_eq!(steps[0]["actions"][0]["reason"], "checked");
    let kinds: Vec<&str> = doc["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds.first(), Some(&"submitted"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"completed"), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "approved").count(), 3);
    let created = doc["created_at"].as_str().expect("created_at");
    assert!(
        created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T',
        "{created}"
    );
    let human = cli.run(&fin, &["show", &id]);
    assert!(human.ok().contains("completed"), "{}", human.stdout);

    let fetched = cli.run(&fin, &["content", &id, "--out", "copy.pdf"]);
    fetched.ok();
    assert_eq!(
        std::fs::read(dir.join("copy.pdf")).expect("copy"),
        content,
        "downloaded content differs"
    );

    // --- The watcher saw the document complete. ---
    let deadline = Instant::now() + WATCH_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match events.recv_timeout(left) {
            Ok(l) => l,
            Err(e) => panic!("no completed event ({e:?}); events seen: {seen:#?}"),
        };
        let ev: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("watch printed no JSON line ({e}): {line}"));
        let complete = ev["document_id"] == id.as_str() && ev["kind"] == "completed";
        seen.push(ev);
        if complete {
            assert_eq!(seen.last().expect("event")["state"], "completed");
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|e| e["document_id"] == id.as_str() && e["kind"] == "submitted"),
        "{seen:#?}"
    );

    let deadline = Instant::now() + WATCH_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match op_events.recv_timeout(left) {
            Ok(l) => l,
            Err(e) => panic!("the operator saw no completed event ({e:?}): {seen:#?}"),
        };
        let words: Vec<&str> = line.split_whitespace().collect();
        let complete = words.get(1) == Some(&id.as_str()) && words.get(2) == Some(&"completed");
        seen.push(line);
        if complete {
            break;
        }
    }
    let _ = op_watch.child.kill();

    // --- Error paths. ---
    // A rejection needs a reason: a usage error, refused before any call.
    cli.run(&carol, &["reject", &id]).fails(2, &["--reason"]);
    // Nothing left to act on.
    cli.run(&carol, &["reject", &id, "--reason", "too late"])
        .fails(5, &["has no active step", "completed"]);
    // An unknown key in a circuit file is refused, naming the key and the file.
    write(
        &dir,
        "bad-circuit.toml",
        b"name = \"bad\"\n\n[[steps]]\nkind = \"visa\"\nactors = [\"alice\"]\ncolour = \"red\"\n",
    );
    cli.run(
        &operator,
        &["circuit", "create", "--file", "bad-circuit.toml"],
    )
    .fails(2, &["colour", "bad-circuit.toml"]);
    // The server names the field it refuses.
    write(
        &dir,
        "bad-quorum.toml",
        b"name = \"bad\"\n[[steps]]\nkind = \"visa\"\nactors = [\"alice\"]\nmode = \"quorum\"\nquorum = 3\n",
    );
    cli.run(
        &operator,
        &["circuit", "create", "--file", "bad-quorum.toml"],
    )
    .fails(2, &["INVALID_ARGUMENT", "quorum"]);
    // A malformed id.
    cli.run(&fin, &["show", "not-a-document-id"])
        .fails(2, &["INVALID_ARGUMENT"]);
    // An unknown id.
    cli.run(&fin, &["show", &"0".repeat(32)])
        .fails(3, &["NOT_FOUND"]);
    // A bad token.
    cli.run("pph_not-a-real-token", &["inbox"])
        .fails(4, &["UNAUTHENTICATED"]);
    // A revoked token (the auditor dave reads, then loses his token).
    let dave = cli
        .run(&operator, &["admin", "token", "issue", "dave", "--json"])
        .json();
    let dave_token = token_of(&dave);
    cli.run(&dave_token, &["show", &id]).ok();
    let revoke = cli.run(
        &operator,
        &[
            "admin",
            "token",
            "revoke",
            dave["token_id"].as_str().expect("token_id"),
        ],
    );
    revoke.ok();
    let refused = cli.run(&dave_token, &["show", &id]);
    refused.fails(4, &["UNAUTHENTICATED"]);
    // Tokens never leak into error output.
    assert!(!refused.stderr.contains(&dave_token), "{}", refused.stderr);

    // --- Withdrawal, a condition the metadata cannot decide, and a second tenant. ---
    write(&dir, "note.txt", b"a note\n");
    let submit = |meta: &str| {
        cli.run(
            &fin,
            &[
                "submit",
                "note.txt",
                "--type",
                "OTHER",
                "--circuit",
                "expense",
                "--title",
                "A note",
                "--meta",
                meta,
            ],
        )
    };
    submit("beneficiary=ACME").fails(2, &["INVALID_ARGUMENT", "amount"]);
    let second = submit("amount=12").ok().trim().to_owned();
    let paged = cli
        .run(&alice, &["inbox", "--page-size", "1", "--all", "--json"])
        .json();
    assert!(
        paged["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["id"] == second.as_str()),
        "{paged}"
    );
    let withdrawn = cli
        .run(
            &fin,
            &["withdraw", &second, "--reason", "sent by mistake", "--json"],
        )
        .json();
    assert_eq!(withdrawn["state"], "withdrawn");
    cli.run(&fin, &["withdraw", &second])
        .fails(5, &["FAILED_PRECONDITION"]);

    let acme = cli
        .run(
            &operator,
            &[
                "admin",
                "tenant",
                "create",
                "acme",
                "--name",
                "ACME town",
                "--admin",
                "mayor",
                "--json",
            ],
        )
        .json();
    assert_eq!(acme["tenant"], "acme");
    assert_eq!(acme["admin"], "mayor");
    let mayor = token_of(&acme);
    let acme_users = cli
        .run(
            &mayor,
            &["admin", "user", "list", "--tenant", "acme", "--json"],
        )
        .json();
    assert_eq!(acme_users["users"][0]["name"], "mayor");
    // Another tenant's document does not exist for acme's admin.
    cli.run(&mayor, &["show", &id, "--tenant", "acme"])
        .fails(3, &["NOT_FOUND"]);

    // --- Graceful stop: the server exits on SIGTERM and the watcher's stream ends. ---
    let status = server.terminate(STEP_TIMEOUT);
    assert!(status.success(), "server exited with {status}");
    let deadline = Instant::now() + WATCH_TIMEOUT;
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(_) => continue,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => panic!("watch did not end with the server"),
        }
    }
    let status = watch.child.wait().expect("wait watch");
    assert!(status.success(), "watch exited with {status}");
}

#[test]
fn absences_route_steps_to_the_delegate_and_admins_reassign_from_the_command_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    let (mut server, _server_out, operator, addr) = start_server(&dir);
    let cli = Cli { dir, addr };
    let mut tokens = std::collections::HashMap::new();
    for (name, role) in [
        ("alice", "officer"),
        ("bob", "officer"),
        ("carol", "officer"),
        ("finance", "submitter"),
    ] {
        cli.run(
            &operator,
            &["admin", "user", "create", name, "--role", role],
        )
        .ok();
        let t = cli.run(&operator, &["admin", "token", "issue", name]);
        tokens.insert(name, t.ok().trim().to_owned());
    }
    write(
        &cli.dir,
        "one.toml",
        b"name = \"one\"\n[[steps]]\nkind = \"visa\"\nactors = [\"alice\"]\ndeadline = \"2d\"\nescalate = \"fallback\"\nfallback = \"carol\"\n",
    );
    cli.run(&operator, &["circuit", "create", "--file", "one.toml"])
        .ok();
    write(&cli.dir, "m.pdf", b"%PDF mandate");

    // Alice declares her absence (the server's clock is the real one here).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let from = paraph::pki::format_rfc3339(now - 3600);
    let to = paraph::pki::format_rfc3339(now + 86_400);
    let bad = cli.run(
        &tokens["alice"],
        &[
            "absence",
            "set",
            "--from",
            &to,
            "--to",
            &from,
            "--delegate",
            "bob",
        ],
    );
    bad.fails(2, &["INVALID_ARGUMENT", "after"]);
    let set = cli.run(
        &tokens["alice"],
        &[
            "absence",
            "set",
            "--from",
            &from,
            "--to",
            &to,
            "--delegate",
            "bob",
            "--type",
            "mandate",
        ],
    );
    let absence_id = set.ok().trim().to_owned();
    assert_eq!(absence_id.len(), 32, "{absence_id:?}");
    let list = cli
        .run(&tokens["bob"], &["absence", "list", "--json"])
        .json();
    assert_eq!(list["absences"][0]["id"], absence_id.as_str());
    assert_eq!(list["absences"][0]["active"], true);
    assert_eq!(list["absences"][0]["types"], serde_json::json!(["mandate"]));

    let submit = |title: &str| {
        cli.run(
            &tokens["finance"],
            &[
                "submit",
                "m.pdf",
                "--type",
                "mandate",
                "--circuit",
                "one",
                "--title",
                title,
            ],
        )
        .ok()
        .trim()
        .to_owned()
    };
    let first = submit("Mandat 1");
    let second = submit("Mandat 2");
    // Bob's inbox marks the delegated items and says for whom.
    let text = cli.run(&tokens["bob"], &["inbox"]);
    assert!(
        text.ok().contains("(delegated: on behalf of alice)"),
        "{}",
        text.stdout
    );
    let inbox = cli.run(&tokens["bob"], &["inbox", "--json"]).json();
    assert_eq!(inbox["items"].as_array().unwrap().len(), 2);
    assert_eq!(inbox["items"][0]["on_behalf_of"], "alice");
    assert_eq!(inbox["items"][0]["route"], "delegation");
    let shown = cli
        .run(&tokens["bob"], &["approve", &first, "--json"])
        .json();
    assert_eq!(shown["state"], "completed");
    let show = cli.run(&tokens["bob"], &["show", &first]);
    assert!(show.ok().contains("on behalf of alice"), "{}", show.stdout);

    // Reassignment: refused to an officer, done by the operator acting as admin.
    let reassign = [
        "reassign",
        &second,
        "--step",
        "0",
        "--from",
        "alice",
        "--to",
        "carol",
        "--reason",
        "long leave",
    ];
    cli.run(&tokens["bob"], &reassign)
        .fails(4, &["PERMISSION_DENIED"]);
    let moved = cli.run(&operator, &reassign);
    assert!(moved.ok().contains("reassigned step 0"), "{}", moved.stdout);
    let carol = cli.run(&tokens["carol"], &["inbox", "--json"]).json();
    assert_eq!(carol["items"][0]["id"], second.as_str());
    assert_eq!(carol["items"][0]["on_behalf_of"], "");

    // Alice is back: she cancels, and the list no longer shows a live absence.
    let cancelled = cli.run(&tokens["alice"], &["absence", "cancel", &absence_id]);
    assert!(cancelled.ok().contains("cancelled"), "{}", cancelled.stdout);
    let list = cli.run(&tokens["alice"], &["absence", "list"]);
    assert!(list.ok().contains("no absence"), "{}", list.stdout);
    let all = cli
        .run(&tokens["alice"], &["absence", "list", "--all", "--json"])
        .json();
    assert!(!all["absences"][0]["cancelled_at"].is_null());

    // The auditor's side: pin the log key, save a checkpoint, prove the log only grew, export
    // the evidence of the delegated document and verify it offline.
    cli.run(&operator, &["audit", "key", "--out", "log-key.pem"])
        .ok();
    let cp = cli.run(
        &operator,
        &[
            "audit",
            "checkpoint",
            "--log-key",
            "log-key.pem",
            "--save",
            "cp.txt",
        ],
    );
    assert!(cp.ok().contains("signature verified"), "{}", cp.stdout);
    let third = submit("Mandat 3");
    let grew = cli.run(
        &operator,
        &[
            "audit",
            "consistency",
            "--from",
            "cp.txt",
            "--log-key",
            "log-key.pem",
            "--json",
        ],
    );
    assert_eq!(grew.json()["consistent"], true);
    assert!(
        grew.json()["to"]["size"].as_u64() > grew.json()["from"]["size"].as_u64(),
        "{}",
        grew.stdout
    );
    let events = cli
        .run(
            &operator,
            &["audit", "events", "--document", &third, "--json"],
        )
        .json();
    assert_eq!(events["events"][0]["kind"], "submitted");
    cli.run(
        &operator,
        &["audit", "export", &first, "--out", "evidence.json"],
    )
    .ok();
    let verified = cli.run(
        "",
        &["verify-bundle", "evidence.json", "--log-key", "log-key.pem"],
    );
    let text = verified.ok();
    assert!(text.contains("bundle verified"), "{text}");
    assert!(text.contains("on behalf of alice"), "{text}");
    // A checkpoint signed by another key is refused.
    let other = paraph::audit::AuditKey::generate().unwrap();
    write(&cli.dir, "other.pem", &other.public_key().to_pem().unwrap());
    cli.run(
        "",
        &["verify-bundle", "evidence.json", "--log-key", "other.pem"],
    )
    .fails(6, &["bundle refused", "forged"]);
    server.terminate(STEP_TIMEOUT);
}

/// A `paraph.toml` in the working directory of a server the tests start (a developer's own
/// settings) changes nothing: the harness gives every server its settings explicitly.
#[test]
fn a_paraph_toml_in_the_working_directory_does_not_reach_the_tests_servers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().to_path_buf();
    write(
        &dir,
        "paraph.toml",
        b"first_tenant = \"hostile\"\nmax_document_bytes = 1\nreflection = false\n",
    );
    // The file is one the binary reads: a data directory set up from there without settings
    // of its own gets the hostile first tenant.
    let mut probe = std::process::Command::new(common::cli::BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            probe.env_remove(k);
        }
    }
    let probe = probe
        .args(["admin", "init", "--json", "--data"])
        .arg(dir.join("probe"))
        .args(common::cli::store_args(&dir.join("probe")))
        .current_dir(&dir)
        .output()
        .expect("run paraph admin init");
    assert!(probe.status.success(), "{probe:?}");
    let boot: Value = serde_json::from_slice(&probe.stdout).expect("bootstrap JSON");
    assert_eq!(boot["tenant"], "hostile", "{boot}");

    // The harness's server, started in that same directory: the first tenant is `default`
    // (start_server checks it), documents of more than one byte are accepted.
    let (mut server, _out, operator, addr) = start_server(&dir);
    let cli = Cli { dir, addr };
    cli.run(
        &operator,
        &["admin", "user", "create", "finance", "--role", "submitter"],
    )
    .ok();
    cli.run(
        &operator,
        &["admin", "user", "create", "alice", "--role", "officer"],
    )
    .ok();
    let circuit = write(
        &cli.dir,
        "visa.toml",
        b"name = \"visa\"\n[[steps]]\nkind = \"visa\"\nactors = [\"alice\"]\n",
    );
    cli.run(
        &operator,
        &[
            "circuit",
            "create",
            "--file",
            circuit.to_str().expect("path"),
        ],
    )
    .ok();
    let finance = cli
        .run(&operator, &["admin", "token", "issue", "finance"])
        .ok()
        .trim()
        .to_owned();
    let doc = write(&cli.dir, "mandate.txt", b"Mandat 2026-001: 1200.50 EUR\n");
    let id = cli
        .run(
            &finance,
            &[
                "submit",
                doc.to_str().expect("path"),
                "--type",
                "MANDATE",
                "--circuit",
                "visa",
                "--title",
                "M",
            ],
        )
        .ok()
        .trim()
        .to_owned();
    assert_eq!(id.len(), 32, "{id:?}");
    assert_eq!(server.terminate(STEP_TIMEOUT).code(), Some(0));
}

/// The help the binary prints says what the README says: every command of the README's CLI
/// reference exists, and the idempotency keys are time-ordered, not random.
#[test]
fn the_help_matches_the_readme() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let help = |words: &[&str]| {
        let out = std::process::Command::new(common::cli::BIN)
            .args(words)
            .arg("--help")
            .env_remove("PARAPH_TOKEN")
            .output()
            .expect("run paraph --help");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "paraph {} --help: {out:?}",
            words.join(" ")
        );
        text
    };
    let mut checked = 0;
    for row in readme.lines().filter(|l| l.starts_with("| `paraph ")) {
        let words: Vec<&str> = row["| `paraph ".len()..]
            .split([' ', '`'])
            .take_while(|w| {
                !w.is_empty()
                    && !w.starts_with('-')
                    && w.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
            })
            .collect();
        assert!(!words.is_empty(), "{row}");
        help(&words);
        checked += 1;
    }
    assert!(
        checked >= 20,
        "only {checked} commands found in the README's reference"
    );

    assert!(
        readme.contains("**grow with time**"),
        "the README says how keys are made"
    );
    // `auto` as the README says: PAdES for a PDF, XAdES for a PES flow, CAdES otherwise.
    assert!(readme.contains("`auto` signs a PDF with PAdES"));
    let submit = help(&["submit"]);
    assert!(
        submit.contains("auto (pades for a PDF, xades-pes for a PES V2 flow, cades otherwise)"),
        "{submit}"
    );
    for command in ["submit", "approve", "reject", "withdraw"] {
        let text = help(&[command]);
        assert!(
            text.contains("time-ordered"),
            "paraph {command} --help:\n{text}"
        );
        assert!(
            !text.contains("random key"),
            "paraph {command} --help:\n{text}"
        );
    }
}
