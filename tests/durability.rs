//! Durability: a graceful restart keeps everything; SIGKILL never loses an acknowledged action
//! nor leaves a half-applied one.

mod common;
use common::*;
use paraph::proto::{self, DocumentState as S, StepKind as K, StepMode as M};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

#[tokio::test]
async fn restart_keeps_tenants_users_tokens_circuits_documents_and_inboxes() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-p").await;
    create_circuit(
        &srv,
        &org,
        "three",
        vec![visa(&["alice"]), visa(&["bob"]), visa(&["carol"])],
    )
    .await;
    let d = submit(&srv, &org, "three", &[("amount", "5")]).await;
    approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    let before = get(&srv, &org, "audit", &d.id).await.unwrap();
    let (dir, operator) = srv.stop().await;

    let srv = TestServer::start_with(dir, Some(operator), |_| {}).await;
    let after = get(&srv, &org, "audit", &d.id).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(inbox(&srv, &org, "bob").await, vec![d.id.clone()]);
    let users = srv
        .admin(org.token("boss"), None)
        .list_users(proto::ListUsersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(users.users.len(), 8);
    approve(&srv, &org, "bob", &d.id, Some(1)).await.unwrap();
    let done = approve(&srv, &org, "carol", &d.id, Some(2)).await.unwrap();
    assert_eq!(state(&done), S::Completed);
    // The operator token survives, and the first tenant was not bootstrapped twice.
    srv.admin(&srv.operator, Some("default"))
        .list_users(proto::ListUsersRequest {})
        .await
        .unwrap();
    srv.stop().await;
}

/// On the embedded engines whatever store the other tests use: the conversion from sled to redb
/// is theirs alone.
#[tokio::test]
async fn a_sled_directory_converted_to_redb_keeps_everything() {
    let sled = |s: &mut paraph::config::Settings| {
        embedded_store(s);
        s.engine = Some(paraph::store::EngineKind::Sled);
    };
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, sled).await;
    let org = Org::create(&srv, "ville-c").await;
    create_circuit(&srv, &org, "two", vec![visa(&["alice"]), visa(&["bob"])]).await;
    let d = submit(&srv, &org, "two", &[("amount", "7")]).await;
    approve(&srv, &org, "alice", &d.id, Some(0)).await.unwrap();
    let before = get(&srv, &org, "audit", &d.id).await.unwrap();
    let (dir, operator) = srv.stop().await;
    let data = dir.path().join("data");
    assert!(data.join("db").exists(), "the default engine is sled");

    let convert = |to: &str| paraph_on(&data, &["admin", "convert", "--to", to]);
    let refused = convert("sled");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("only a conversion to redb"));
    let done = convert("redb");
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    assert!(data.join("index.redb").exists());
    assert!(!data.join("db").exists());
    assert!(
        !convert("redb").status.success(),
        "a second conversion is refused"
    );

    let srv = TestServer::start_with(dir, Some(operator), |s| {
        embedded_store(s);
        s.engine = None;
    })
    .await;
    assert_eq!(get(&srv, &org, "audit", &d.id).await.unwrap(), before);
    assert_eq!(inbox(&srv, &org, "bob").await, vec![d.id.clone()]);
    let done = approve(&srv, &org, "bob", &d.id, Some(1)).await.unwrap();
    assert_eq!(state(&done), S::Completed);
    srv.stop().await;
}

/// Embedded only (it names its engines), whatever store the other tests use.
#[test]
fn a_directory_keeps_its_engine_and_serving_it_with_another_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let init = paraph_on(&data, &["admin", "init", "--engine", "redb", "--json"]);
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    assert!(data.join("index.redb").exists());
    assert!(!data.join("db").exists());
    let wrong = paraph_on(
        &data,
        &["serve", "--listen", "127.0.0.1:0", "--engine", "sled"],
    );
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(err.contains("holds a redb store, not sled"), "{err}");
    assert!(!data.join("db").exists(), "nothing of sled was created");
}

/// Runs `paraph ARGS --data DATA` to its end.
fn paraph_on(data: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args(args)
        .arg("--data")
        .arg(data)
        .arg("--config")
        .arg(isolated_config(data.parent().expect("data has a parent")))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

struct Proc {
    child: Child,
    addr: std::net::SocketAddr,
}

/// Starts `paraph serve` as a child process (with `extra` arguments); returns it with the
/// bootstrap token if printed.
#[allow(clippy::zombie_processes)] // the caller kills and waits for the child
fn spawn_server(data: &std::path::Path, extra: &[&str]) -> (Proc, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_paraph"))
        .args(["serve", "--listen", "127.0.0.1:0", "--json", "--data"])
        .arg(data)
        .arg("--config")
        .arg(isolated_config(data.parent().expect("data has a parent")))
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if tx.send(line.unwrap_or_default()).is_err() {
                break;
            }
        }
    });
    let mut token = None;
    loop {
        let line = rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("server did not start");
        if let Some(addr) = line.strip_prefix("paraph listening on ") {
            return (
                Proc {
                    child,
                    addr: addr.trim().parse().unwrap(),
                },
                token,
            );
        }
        if line.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            token = Some(v["token"].as_str().unwrap().to_string());
        }
    }
}

/// On the default engine, sled, or on PostgreSQL when the tests run there.
#[tokio::test]
async fn sigkill_never_loses_an_acknowledged_action() {
    if on_postgres() {
        sigkill_case(None, None).await;
    } else {
        sigkill_case(Some("sled"), Some("db")).await;
    }
}

/// On redb whatever store the other tests use: its own writer and files are what is tested.
#[tokio::test]
async fn sigkill_never_loses_an_acknowledged_action_on_redb() {
    sigkill_case(Some("redb"), Some("index.redb")).await;
}

/// Starts the server on the engine `engine` (the default when `sled`), which must leave its file
/// `engine_file` in the data directory, or on the tests' PostgreSQL store when `None`. The
/// restart names no engine: the directory's own is found (or the same PostgreSQL store).
async fn sigkill_case(engine: Option<&str>, engine_file: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = match engine {
        None => common::cli::store_args(&data),
        Some("sled") => Vec::new(),
        Some(e) => vec!["--engine".to_string(), e.to_string()],
    };
    // A restart names no engine; on PostgreSQL it names the same store.
    let restart = match engine {
        None => store.clone(),
        Some(_) => Vec::new(),
    };
    fn as_strs(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let (mut p, token) = spawn_server(&data, &as_strs(&store));
    match engine_file {
        Some(f) => assert!(data.join(f).exists(), "{f}"),
        None => assert!(!data.join("db").exists() && !data.join("index.redb").exists()),
    }
    let operator = token.expect("first start prints the operator token");
    let srv = TestServer::attach(p.addr, operator.clone()).await;
    let org = Org::create(&srv, "default").await;
    create_circuit(
        &srv,
        &org,
        "two",
        vec![
            step(K::Visa, &["alice", "bob"], M::Any, 0),
            visa(&["carol"]),
        ],
    )
    .await;

    // Many concurrent acknowledged actions, then SIGKILL while more are in flight.
    let mut acked: Vec<(String, usize)> = Vec::new();
    for round in 0..3 {
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let mut fin = srv.docs(org.token("finance"), None);
            let mut alice = srv.docs(org.token("alice"), None);
            tasks.push(tokio::spawn(async move {
                let d = submit_raw(&mut fin, header("two", "Mandat", &[]), b"%PDF durable", 64)
                    .await
                    .unwrap();
                let ok = alice
                    .approve(proto::ApproveRequest {
                        id: d.id.clone(),
                        step: Some(0),
                        ..Default::default()
                    })
                    .await
                    .is_ok();
                (d.id, if ok { 1 } else { 0 })
            }));
        }
        for t in tasks {
            acked.push(t.await.unwrap());
        }
        if round == 2 {
            // Fire more requests and kill without waiting for their answers.
            for _ in 0..5 {
                let mut fin = srv.docs(org.token("finance"), None);
                tokio::spawn(async move {
                    let _ = submit_raw(&mut fin, header("two", "in flight", &[]), b"x", 64).await;
                });
            }
        }
    }
    p.child.kill().unwrap(); // SIGKILL
    p.child.wait().unwrap();
    drop(srv);

    let (mut p2, token2) = spawn_server(&data, &as_strs(&restart));
    assert!(token2.is_none(), "a restart must not bootstrap again");
    let srv = TestServer::attach(p2.addr, operator).await;
    for (id, approvals) in &acked {
        let d = get(&srv, &org, "audit", id).await.unwrap();
        assert_eq!(d.steps[0].actions.len(), *approvals, "document {id}");
        if *approvals == 1 {
            assert_eq!(d.current_step, 1);
            assert_eq!(
                d.history
                    .iter()
                    .map(|h| h.kind.as_str())
                    .collect::<Vec<_>>()[..4],
                ["submitted", "step_activated", "approved", "step_completed"]
            );
        }
    }
    // Every document that exists is whole: its inbox entries agree with its state.
    let carol = inbox(&srv, &org, "carol").await;
    for id in &carol {
        let d = get(&srv, &org, "audit", id).await.unwrap();
        assert_eq!(d.current_step, 1);
    }
    assert_eq!(carol.len(), acked.len());
    let alice = inbox(&srv, &org, "alice").await;
    for id in &alice {
        let d = get(&srv, &org, "audit", id).await.unwrap();
        assert_eq!(
            d.current_step, 0,
            "a document in alice's inbox waits at step 0"
        );
        assert_eq!(d.history.len(), 2);
    }
    p2.child.kill().unwrap();
    p2.child.wait().unwrap();
}
