//! Bad days for the store, from outside: a real server process on a filesystem that fills up,
//! and data directories (or, on PostgreSQL, rows) with damaged bytes.
mod common;

use common::*;
use paraph::proto;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use tonic::Code;

/// A `paraph serve` child process whose data directory lives on a tmpfs of its own (mounted in
/// a private mount namespace, so no privilege is needed), reachable from here through the
/// process's root.
struct FullDiskServer {
    child: Child,
    addr: std::net::SocketAddr,
    operator: String,
    /// The tmpfs, as seen from this process.
    mount: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Drop for FullDiskServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether this machine lets an unprivileged process mount a tmpfs in a namespace of its own.
fn can_mount_tmpfs() -> bool {
    Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[allow(clippy::zombie_processes)] // killed and waited for on drop
fn spawn_on_tmpfs(size: &str) -> FullDiskServer {
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec![
        "serve".to_string(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--json".into(),
    ];
    if let Some(e) = test_engine() {
        args.extend(["--engine".into(), e.to_string()]);
    }
    // The settings file lives outside the directory the tmpfs hides; the server reads it
    // before it listens, while this directory still exists.
    let settings = tempfile::tempdir().unwrap();
    let script = "mount -t tmpfs -o size=\"$1\" tmpfs \"$2\" && shift 2 && exec \"$@\"";
    let mut child = Command::new("unshare")
        .args(["-rm", "sh", "-c", script, "sh", size])
        .arg(dir.path())
        .arg(env!("CARGO_BIN_EXE_paraph"))
        .args(&args)
        .arg("--data")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(isolated_config(settings.path()))
        .env("RUST_LOG", "warn,paraph=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mount = PathBuf::from(format!("/proc/{}/root", child.id())).join(
        dir.path()
            .strip_prefix("/")
            .expect("an absolute temporary directory"),
    );
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = child.stderr.take().unwrap();
    let kept = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            kept.lock().unwrap().push_str(&line);
            kept.lock().unwrap().push('\n');
        }
    });
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut operator = None;
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("server did not start");
        if let Some(addr) = line.strip_prefix("paraph listening on ") {
            return FullDiskServer {
                child,
                addr: addr.trim().parse().unwrap(),
                operator: operator.expect("a first start prints the operator token"),
                mount,
                log,
                _dir: dir,
            };
        }
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            operator = Some(v["token"].as_str().unwrap().to_string());
        }
    }
}

/// Fills the filesystem of `dir` to the last byte; returns the filler file.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0xa5u8; 64 * 1024];
    loop {
        match f.write(&block) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    // The last partial block, byte by byte: not one free byte is left.
    while f.write(&[0xa5]).is_ok_and(|n| n == 1) {}
    path
}

async fn health(srv: &TestServer) -> i32 {
    let mut health = tonic_health::pb::health_client::HealthClient::new(srv.channel());
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

/// The health status once it says `want`, or the last one seen after a few seconds: the
/// server's health reporter follows the store from a task of its own, so it may lag the answer
/// that met the full disk by a moment.
async fn health_becomes(srv: &TestServer, want: i32) -> i32 {
    let mut last = health(srv).await;
    for _ in 0..200 {
        if last == want {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        last = health(srv).await;
    }
    last
}

/// The document content submitted: large enough to go to the value log.
fn content(i: usize) -> Vec<u8> {
    let mut c = format!("%PDF-1.7 document {i} ").into_bytes();
    c.resize(200_000, b'a' + (i % 26) as u8);
    c
}

/// On the embedded engines whatever store the other tests use: the disk that fills up is the
/// one of their files (a PostgreSQL's own disk is its operator's).
#[tokio::test]
async fn a_full_disk_refuses_writes_clearly_reports_not_serving_and_recovers_when_space_returns() {
    use tonic_health::pb::health_check_response::ServingStatus;
    if !can_mount_tmpfs() {
        eprintln!("SKIPPED: this machine cannot mount a tmpfs in a user namespace (unshare -rm)");
        return;
    }
    let server = spawn_on_tmpfs("48m");
    let srv = TestServer::attach(server.addr, server.operator.clone()).await;
    let org = Org::create(&srv, "full").await;
    create_circuit(&srv, &org, "c", vec![visa(&["alice"])]).await;
    let mut docs = srv.docs(org.token("finance"), None);
    let mut acknowledged = Vec::new();
    for i in 0..5 {
        let d = submit_raw(
            &mut docs,
            header("c", &format!("doc {i}"), &[]),
            &content(i),
            64 * 1024,
        )
        .await
        .unwrap();
        acknowledged.push((d.id, i));
    }
    assert_eq!(health(&srv).await, ServingStatus::Serving as i32);

    let filler = fill(&server.mount);
    let full = submit_raw(
        &mut docs,
        header("c", "no room", &[]),
        &content(99),
        64 * 1024,
    )
    .await;
    let status = full.expect_err("a write on a full disk must fail");
    assert_eq!(
        status.code(),
        Code::ResourceExhausted,
        "{}",
        status.message()
    );
    assert!(
        status.message().contains("storage is full"),
        "{}",
        status.message()
    );
    assert_eq!(
        health_becomes(&srv, ServingStatus::NotServing as i32).await,
        ServingStatus::NotServing as i32,
        "health must say the server cannot write"
    );
    // Still full: still refused, the same way (and reads still answer).
    let again = approve(&srv, &org, "alice", &acknowledged[0].0, None).await;
    assert_eq!(
        again.expect_err("still full").code(),
        Code::ResourceExhausted
    );
    get(&srv, &org, "finance", &acknowledged[0].0)
        .await
        .unwrap();

    std::fs::remove_file(&filler).unwrap();
    // No restart: the next write goes through.
    let after = submit_raw(&mut docs, header("c", "after", &[]), &content(7), 64 * 1024)
        .await
        .expect("the store recovers by itself once space returns");
    assert_eq!(
        health_becomes(&srv, ServingStatus::Serving as i32).await,
        ServingStatus::Serving as i32
    );
    approve(&srv, &org, "alice", &acknowledged[0].0, None)
        .await
        .expect("an approval after recovery");
    acknowledged.push((after.id, 7));
    for (id, i) in &acknowledged {
        let d = get(&srv, &org, "finance", id).await.unwrap();
        let mut r = srv
            .docs(org.token("finance"), None)
            .get_content(proto::GetContentRequest {
                id: id.clone(),
                revision: None,
            })
            .await
            .unwrap()
            .into_inner();
        let mut got = Vec::new();
        while let Some(chunk) = r.message().await.unwrap() {
            got.extend_from_slice(&chunk.data);
        }
        assert_eq!(got, content(*i), "document {} came back different", d.id);
    }
    // Full again, and this time the writes are small: the index's engine has room left in
    // its files, so they go on until its own write fails; the store recovers from that too,
    // and every token answered before works after.
    let filler = fill(&server.mount);
    let mut boss = srv.admin(org.token("boss"), None);
    let mut issued = Vec::new();
    let refused = loop {
        assert!(issued.len() < 20_000, "the engine never ran out of room");
        match boss
            .issue_token(proto::IssueTokenRequest {
                user: "alice".into(),
                idempotency_key: String::new(),
            })
            .await
        {
            Ok(t) => issued.push(t.into_inner().token.unwrap().token),
            Err(s) => break s,
        }
    };
    eprintln!(
        "{} tokens issued on the full disk before one was refused",
        issued.len()
    );
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    assert_eq!(
        health_becomes(&srv, ServingStatus::NotServing as i32).await,
        ServingStatus::NotServing as i32
    );
    std::fs::remove_file(&filler).unwrap();
    boss.issue_token(proto::IssueTokenRequest {
        user: "alice".into(),
        idempotency_key: String::new(),
    })
    .await
    .expect("recovered again");
    assert_eq!(
        health_becomes(&srv, ServingStatus::Serving as i32).await,
        ServingStatus::Serving as i32
    );
    for token in &issued {
        srv.docs(token, None)
            .list_inbox(proto::ListInboxRequest {
                page_size: 1,
                page_token: String::new(),
            })
            .await
            .expect("a token answered before the failure still works");
    }
    // The cause is in the log; the contents never are.
    let log = server.log.lock().unwrap().clone();
    assert!(log.contains("No space left on device"), "{log}");
    assert!(!log.contains("%PDF-1.7 document"), "{log}");
}

/// Runs `paraph admin check --data DATA` on the tests' store for DATA.
fn admin_check(data: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args(["admin", "check", "--data"])
        .arg(data)
        .args(common::cli::existing_store_args(data))
        .arg("--config")
        .arg(isolated_config(data.parent().expect("data has a parent")))
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The file of the index of `data` (whichever engine it holds).
fn index_file(data: &Path) -> PathBuf {
    if data.join("index.redb").exists() {
        data.join("index.redb")
    } else {
        data.join("db")
    }
}

/// Flips one bit of every occurrence of `needle` in `file` (at `at` within it), except those
/// preceded by one of `not_after`; returns how many were flipped.
fn flip_in(file: &Path, needle: &[u8], at: usize, not_after: &[&[u8]]) -> usize {
    let mut bytes = std::fs::read(file).unwrap();
    let mut flipped = 0;
    let mut i = 0;
    while i + needle.len() <= bytes.len() {
        if &bytes[i..i + needle.len()] == needle
            && !not_after
                .iter()
                .any(|p| i >= p.len() && &bytes[i - p.len()..i] == *p)
        {
            bytes[i + at] ^= 0x01;
            flipped += 1;
        }
        i += 1;
    }
    std::fs::write(file, bytes).unwrap();
    flipped
}

/// A stopped store with documents, an approval and audit checkpoints; returns its temporary
/// directory, its data directory, the ids of its documents, the operator token and the tenant.
async fn stopped_store() -> (tempfile::TempDir, PathBuf, Vec<String>, String, Org) {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "acme").await;
    create_circuit(&srv, &org, "c", vec![visa(&["alice"]), visa(&["bob"])]).await;
    let mut docs = srv.docs(org.token("finance"), None);
    let mut ids = Vec::new();
    for i in 0..4 {
        let d = submit_raw(
            &mut docs,
            header("c", &format!("doc {i}"), &[]),
            &content(i),
            64 * 1024,
        )
        .await
        .unwrap();
        ids.push(d.id);
    }
    approve(&srv, &org, "alice", &ids[0], None).await.unwrap();
    let data = srv.dir.as_ref().unwrap().path().join("data");
    // Refused while the server holds the directory.
    let busy = admin_check(&data);
    assert_eq!(busy.status.code(), Some(5), "{busy:?}");
    assert!(
        String::from_utf8_lossy(&busy.stderr).contains("in use"),
        "{busy:?}"
    );
    let (dir, operator) = srv.stop().await;
    (dir, data, ids, operator, org)
}

/// On PostgreSQL, what someone with access to the database could do to the stopped store of
/// `data`: one bit of the content of document 2 flipped, and the record of document `ids[1]`
/// replaced by bytes that are not one. Returns the keys of the two records.
async fn damage_in_postgres(data: &Path, ids: &[String]) -> (String, String) {
    use sha2::Digest as _;
    let blob = format!(
        "blob/acme/{}",
        hex::encode(sha2::Sha256::digest(content(2)))
    );
    let mut flipped = content(2);
    flipped[3] ^= 0x01;
    let changed = run_sql(
        data,
        "UPDATE contents SET value = $1 WHERE store_key = $2",
        &[&flipped, &blob],
    )
    .await;
    assert_eq!(changed, 1, "{blob}");
    let doc = format!("doc/acme/{}", ids[1]);
    let garbage: &[u8] = b"{\"id\": \"damag";
    let changed = run_sql(
        data,
        "UPDATE documents SET value = $1 WHERE store_key = $2",
        &[&garbage, &doc],
    )
    .await;
    assert_eq!(changed, 1, "{doc}");
    (blob, doc)
}

#[tokio::test]
async fn admin_check_passes_a_clean_store_and_names_flipped_bytes_in_the_value_log_and_the_index() {
    let (dir, data, ids, _, _) = stopped_store().await;
    let clean = admin_check(&data);
    let out = String::from_utf8_lossy(&clean.stdout);
    assert!(
        clean.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&clean.stderr)
    );
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("2 audit logs"), "{out}");
    if on_postgres() {
        // No value log nor index file: the same damage, made through SQL, is named too.
        let (blob, doc) = damage_in_postgres(&data, &ids).await;
        let damaged = admin_check(&data);
        let out = String::from_utf8_lossy(&damaged.stdout);
        assert_eq!(damaged.status.code(), Some(1), "{out}");
        assert!(
            out.contains(&format!(
                "problem: {blob}: the content does not match its digest"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!("problem: {doc}: the record does not decode")),
            "{out}"
        );
        return;
    }

    // A document's content in the value log.
    let values = dir.path().join("values-damaged");
    copy_dir(&data, &values);
    let flipped = flip_in(&values.join("values.log"), b"%PDF-1.7 document 2 ", 3, &[]);
    assert_eq!(flipped, 1);
    let damaged = admin_check(&values);
    let out = String::from_utf8_lossy(&damaged.stdout);
    assert_eq!(damaged.status.code(), Some(1), "{out}");
    assert!(out.contains("problem: blob/acme/"), "{out}");
    assert!(out.contains("checksum"), "{out}");

    // A document's key in the index (its audit chain's key left alone).
    let index = dir.path().join("index-damaged");
    copy_dir(&data, &index);
    let key = format!("doc/acme/{}", ids[1]);
    let flipped = flip_in(&index_file(&index), key.as_bytes(), key.len() - 1, &[b"ev"]);
    let damaged = admin_check(&index);
    let out = String::from_utf8_lossy(&damaged.stdout);
    let err = String::from_utf8_lossy(&damaged.stderr);
    assert!(flipped > 0);
    assert!(!damaged.status.success(), "{flipped} flipped: {out}{err}");
    if index.join("index.redb").exists() {
        // redb keeps no checksum of its own that reads verify: ours names the record, and the
        // indexes that name the document say it is missing.
        assert!(
            out.contains(&format!("problem: evdoc/acme/{}", ids[1])),
            "{out}"
        );
        assert!(
            out.contains("is damaged (its checksum does not match)"),
            "{out}"
        );
    } else {
        // sled checks its own pages and refuses to open them.
        assert!(err.contains("corrupt"), "{out}{err}");
    }
}

#[tokio::test]
async fn a_request_on_a_damaged_record_answers_an_error_naming_it_never_not_found() {
    let (dir, data, ids, operator, org) = stopped_store().await;
    let key = format!("doc/acme/{}", ids[1]);
    // Document 1's record damaged: on redb (sled checks its own pages, and may drop the writes
    // after a damaged message of its log on opening: the document and its audit chain then
    // both vanish, undetectable), and on PostgreSQL.
    let document_damaged = if on_postgres() {
        damage_in_postgres(&data, &ids).await;
        true
    } else {
        flip_in(&data.join("values.log"), b"%PDF-1.7 document 2 ", 3, &[]);
        let redb = data.join("index.redb").exists();
        if redb {
            assert!(flip_in(&index_file(&data), key.as_bytes(), key.len() - 1, &[b"ev"]) > 0);
        }
        redb
    };
    let srv = TestServer::start_with(dir, Some(operator), |_| {}).await;
    // The content of document 2: damaged in the value log (or its row).
    let mut content = srv
        .docs(org.token("finance"), None)
        .get_content(proto::GetContentRequest {
            id: ids[2].clone(),
            revision: None,
        })
        .await;
    let status = match &mut content {
        Ok(stream) => stream
            .get_mut()
            .message()
            .await
            .expect_err("damaged content"),
        Err(s) => s.clone(),
    };
    assert_eq!(status.code(), Code::DataLoss, "{}", status.message());
    assert!(
        status.message().contains("blob/acme/"),
        "{}",
        status.message()
    );
    if document_damaged {
        // Document 1: its key damaged in the index (or its row).
        let lost = get(&srv, &org, "finance", &ids[1]).await;
        let status = lost.expect_err("a damaged document");
        assert_ne!(status.code(), Code::NotFound, "{}", status.message());
        assert_eq!(status.code(), Code::DataLoss, "{}", status.message());
        assert!(status.message().contains(&key), "{}", status.message());
    }
    // The others answer as before.
    get(&srv, &org, "finance", &ids[3]).await.unwrap();
    srv.stop().await;
}
