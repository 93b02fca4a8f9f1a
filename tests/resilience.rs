//! Bad days for the store, from outside: a real server process on a filesystem that fills up,
//! and data directories with damaged bytes.
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
    let script = "mount -t tmpfs -o size=\"$1\" tmpfs \"$2\" && shift 2 && exec \"$@\"";
    let mut child = Command::new("unshare")
        .args(["-rm", "sh", "-c", script, "sh", size])
        .arg(dir.path())
        .arg(env!("CARGO_BIN_EXE_paraph"))
        .args(&args)
        .arg("--data")
        .arg(dir.path().join("data"))
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

/// The document content submitted: large enough to go to the value log.
fn content(i: usize) -> Vec<u8> {
    let mut c = format!("%PDF-1.7 document {i} ").into_bytes();
    c.resize(200_000, b'a' + (i % 26) as u8);
    c
}

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
        health(&srv).await,
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
    assert_eq!(health(&srv).await, ServingStatus::Serving as i32);
    approve(&srv, &org, "alice", &acknowledged[0].0, None)
        .await
        .expect("an approval after recovery");
    acknowledged.push((after.id, 7));
    for (id, i) in &acknowledged {
        let d = get(&srv, &org, "finance", id).await.unwrap();
        let mut r = srv
            .docs(org.token("finance"), None)
            .get_content(proto::GetContentRequest { id: id.clone() })
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
    assert_eq!(health(&srv).await, ServingStatus::NotServing as i32);
    std::fs::remove_file(&filler).unwrap();
    boss.issue_token(proto::IssueTokenRequest {
        user: "alice".into(),
        idempotency_key: String::new(),
    })
    .await
    .expect("recovered again");
    assert_eq!(health(&srv).await, ServingStatus::Serving as i32);
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
