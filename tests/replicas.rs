//! Several replicas of `paraph serve` on one PostgreSQL store (pooled platforms): the race of
//! two officers has one winner across replicas, an idempotent retry gets the first answer
//! whichever replica it reaches, each tenant's audit log stays one gap-free, fork-free
//! sequence under concurrent appends from two replicas and is covered by checkpoints signed
//! with the shared key, WatchEvents on one replica sees the changes made through another, the
//! scheduler running on every replica handles each due item once, a replica killed under load
//! loses nothing it acknowledged, and a database restarted under load (or down at start) is
//! waited for without restarting paraph.
//!
//! These tests only make sense on PostgreSQL: they run whatever `PARAPH_TEST_STORE` says, on
//! the database at `PARAPH_TEST_PG_URL` (each in schemas of its own), and fail when none
//! answers there. The database-restart tests start a throwaway PostgreSQL of their own (its
//! programs in `PARAPH_TEST_PG_BIN`, run as the `postgres` user: the tests run as root).

mod common;
use common::cli::{lines, next_line, Proc, BIN};
use common::*;
use paraph::audit::{merkle, AuditEvent, AuditPublicKey, SignedCheckpoint};
use paraph::domain::Timestamp;
use paraph::proto::{self, audit_service_client::AuditServiceClient};
use proto::{DocumentState as S, StepKind as K, StepMode as M};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

type Audit = AuditServiceClient<InterceptedService<Channel, Auth>>;

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

fn audit(srv: &TestServer, token: &str) -> Audit {
    AuditServiceClient::with_interceptor(srv.channel(), auth(token))
        .max_decoding_message_size(64 * 1024 * 1024)
}

/// Two in-process replicas on one schema: `a` bootstrapped it (and made the audit key), `b`
/// reads the same audit key file. Each has its own data directory and its own clock.
struct Pair {
    a: TestServer,
    b: TestServer,
    key_file: PathBuf,
}

async fn pair() -> Pair {
    let dir_a = tempfile::tempdir().unwrap();
    let url = pg_store_url(&dir_a.path().join("data"));
    let key_file = dir_a.path().join("data").join("audit-key.pem");
    let u = url.clone();
    let a = TestServer::start_with(dir_a, None, move |s| s.store.url = Some(u)).await;
    assert!(key_file.exists(), "the first replica made the audit key");
    let k = key_file.clone();
    let b = TestServer::start_with(tempfile::tempdir().unwrap(), Some(a.operator.clone()), {
        move |s| {
            s.store.url = Some(url);
            s.audit_key = Some(k);
        }
    })
    .await;
    Pair { a, b, key_file }
}

/// The header of a submission with an idempotency key.
fn keyed(circuit: &str, key: &str) -> proto::SubmitHeader {
    let mut h = header(circuit, "Mandat", &[]);
    h.idempotency_key = key.into();
    h
}

async fn submit_keyed(
    srv: &TestServer,
    org: &Org,
    circuit: &str,
    key: &str,
) -> Result<proto::Document, tonic::Status> {
    let mut d = srv.docs(org.token("finance"), None);
    submit_raw(
        &mut d,
        keyed(circuit, key),
        b"%PDF-1.7 replica content",
        1024,
    )
    .await
}

fn count(d: &proto::Document, kind: &str) -> usize {
    d.history.iter().filter(|h| h.kind == kind).count()
}

/// The signed checkpoint of the caller's tenant, verified with `key`.
async fn checkpoint(a: &mut Audit, key: &AuditPublicKey, tenant: &str) -> SignedCheckpoint {
    let r = a
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await
        .unwrap()
        .into_inner();
    let cp = SignedCheckpoint::decode(r.checkpoint.as_bytes()).unwrap();
    cp.verify(key, &format!("paraph/{tenant}"))
        .expect("the checkpoint is signed by the shared audit key");
    assert_eq!(r.size, cp.checkpoint.size);
    cp
}

async fn log_key(a: &mut Audit) -> AuditPublicKey {
    let pem = a
        .get_log_key(proto::GetLogKeyRequest {})
        .await
        .unwrap()
        .into_inner()
        .public_key_pem;
    AuditPublicKey::from_pem(pem.as_bytes()).unwrap()
}

/// Every event of the caller's tenant log from 0 to `size`, page by page.
async fn all_events(a: &mut Audit, size: u64) -> Vec<proto::LoggedEvent> {
    let mut out: Vec<proto::LoggedEvent> = Vec::new();
    while (out.len() as u64) < size {
        let page = a
            .list_events(proto::ListEventsRequest {
                document_id: String::new(),
                start: out.len() as u64,
                count: 1000.min(size - out.len() as u64),
            })
            .await
            .unwrap()
            .into_inner()
            .events;
        assert!(!page.is_empty(), "the log ends at {} of {size}", out.len());
        out.extend(page);
    }
    out
}

async fn doc_events(a: &mut Audit, id: &str) -> Vec<(u64, Vec<u8>)> {
    a.list_events(proto::ListEventsRequest {
        document_id: id.into(),
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .events
    .into_iter()
    .map(|e| (e.index, e.event))
    .collect()
}

fn hashes(v: &[Vec<u8>]) -> Vec<merkle::Hash> {
    v.iter()
        .map(|h| merkle::hash_from_slice(h).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_officers_racing_through_two_replicas_have_exactly_one_winner() {
    let p = pair().await;
    let org = Org::create(&p.a, "ville-rr").await;
    create_circuit(
        &p.a,
        &org,
        "any",
        vec![
            step(K::Visa, &["alice", "bob"], M::Any, 0),
            visa(&["carol"]),
        ],
    )
    .await;
    let mut winners = BTreeMap::new();
    for i in 0..30 {
        let via = if i % 2 == 0 { &p.a } else { &p.b };
        let d = submit(via, &org, "any", &[]).await;
        let (ra, rb) = tokio::join!(
            approve(&p.a, &org, "alice", &d.id, Some(0)),
            approve(&p.b, &org, "bob", &d.id, Some(0))
        );
        let wins = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "exactly one wins: {ra:?} {rb:?}");
        *winners.entry(ra.is_ok()).or_insert(0) += 1;
        for r in [ra, rb] {
            if let Err(s) = r {
                assert!(
                    matches!(s.code(), Code::FailedPrecondition | Code::Aborted),
                    "{s:?}"
                );
            }
        }
        // Both replicas read the same one outcome.
        for srv in [&p.a, &p.b] {
            let now = get(srv, &org, "carol", &d.id).await.unwrap();
            assert_eq!(now.current_step, 1);
            assert_eq!(now.steps[0].actions.len(), 1);
            assert_eq!(count(&now, "approved"), 1, "{:?}", history_kinds(&now));
            assert_eq!(count(&now, "step_completed"), 1);
        }
    }
    assert_eq!(winners.values().sum::<i32>(), 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotent_submission_retried_through_another_replica_gets_the_first_answer() {
    let p = pair().await;
    let org = Org::create(&p.a, "ville-ri").await;
    create_circuit(&p.a, &org, "one", vec![visa(&["alice"])]).await;
    // Sent through A, retried through B.
    let first = submit_keyed(&p.a, &org, "one", "retry-1").await.unwrap();
    let again = submit_keyed(&p.b, &org, "one", "retry-1").await.unwrap();
    assert_eq!(first.id, again.id);
    // Sent through both at once: one document.
    let (x, y) = tokio::join!(
        submit_keyed(&p.a, &org, "one", "retry-2"),
        submit_keyed(&p.b, &org, "one", "retry-2")
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.id, y.id);
    assert_ne!(x.id, first.id);
    for srv in [&p.a, &p.b] {
        let ids: BTreeSet<String> = inbox(srv, &org, "alice").await.into_iter().collect();
        assert_eq!(ids, BTreeSet::from([first.id.clone(), x.id.clone()]));
        assert_eq!(inbox(srv, &org, "alice").await.len(), 2);
    }
    // An idempotent approval retried through the other replica.
    let mut req = proto::ApproveRequest {
        id: first.id.clone(),
        step: Some(0),
        comment: String::new(),
        idempotency_key: "approve-1".into(),
    };
    let done =
        p.a.docs(org.token("alice"), None)
            .approve(req.clone())
            .await
            .unwrap()
            .into_inner();
    req.comment.clear();
    let retried =
        p.b.docs(org.token("alice"), None)
            .approve(req)
            .await
            .unwrap()
            .into_inner();
    assert_eq!(state(&done), S::Completed);
    assert_eq!(retried.history.len(), done.history.len());
    assert_eq!(
        count(
            &get(&p.b, &org, "alice", &first.id).await.unwrap(),
            "approved"
        ),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_through_two_replicas_make_one_gap_free_signed_log() {
    const PER_REPLICA: usize = 200;
    const WORKERS: usize = 8;
    let p = pair().await;
    let org = Org::create(&p.a, "ville-ra").await;
    create_circuit(&p.a, &org, "one", vec![visa(&["alice"])]).await;
    let mut aud_a = audit(&p.a, org.token("audit"));
    let mut aud_b = audit(&p.b, org.token("audit"));
    let key = log_key(&mut aud_a).await;
    assert_eq!(log_key(&mut aud_b).await, key, "one audit key for both");
    let file_key =
        paraph::audit::AuditKey::from_pkcs8_pem(&std::fs::read(&p.key_file).unwrap()).unwrap();
    assert_eq!(file_key.public_key(), &key, "the key of the settings signs");
    let before = checkpoint(&mut aud_a, &key, "ville-ra").await;

    // 2 x 200 submissions, eight at a time through each replica, with checkpoints taken
    // through both meanwhile.
    let mut tasks = tokio::task::JoinSet::new();
    for (r, srv) in [&p.a, &p.b].into_iter().enumerate() {
        for w in 0..WORKERS {
            let mut docs = srv.docs(org.token("finance"), None);
            tasks.spawn(async move {
                let mut ids = Vec::new();
                for i in (w..PER_REPLICA).step_by(WORKERS) {
                    let d = submit_raw(
                        &mut docs,
                        header("one", &format!("r{r}-{i}"), &[]),
                        b"%PDF-1.7 log content",
                        1024,
                    )
                    .await
                    .unwrap_or_else(|e| panic!("submission {i} through replica {r}: {e:?}"));
                    ids.push(d.id);
                }
                ids
            });
        }
    }
    let mut during = Vec::new();
    for i in 0..6 {
        let aud = if i % 2 == 0 { &mut aud_a } else { &mut aud_b };
        during.push(checkpoint(aud, &key, "ville-ra").await);
    }
    let mut ids = Vec::new();
    while let Some(r) = tasks.join_next().await {
        ids.extend(r.unwrap());
    }
    assert_eq!(ids.len(), 2 * PER_REPLICA);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len());

    // The checkpoint read through either replica is the same, and covers every change.
    let after = checkpoint(&mut aud_a, &key, "ville-ra").await;
    let after_b = checkpoint(&mut aud_b, &key, "ville-ra").await;
    assert_eq!(after.checkpoint.size, after_b.checkpoint.size);
    assert_eq!(after.checkpoint.root, after_b.checkpoint.root);
    let mut indices = BTreeSet::new();
    for id in &ids {
        let evs = doc_events(&mut aud_b, id).await;
        assert!(!evs.is_empty(), "document {id} has its events");
        for (index, bytes) in evs {
            assert_eq!(AuditEvent::parse(&bytes).unwrap().index, index);
            assert!(indices.insert(index), "event {index} is claimed twice");
        }
    }
    // The log grew by exactly the acknowledged changes' events, no gap, no extra.
    let grown = after.checkpoint.size - before.checkpoint.size;
    assert_eq!(
        grown,
        indices.len() as u64,
        "the log grew by the changes' events"
    );
    assert_eq!(
        indices.iter().copied().collect::<Vec<_>>(),
        (before.checkpoint.size..after.checkpoint.size).collect::<Vec<_>>(),
        "the changes' events fill the new part of the log"
    );
    // One sequence: every event carries its index, and the root recomputed from them is the
    // checkpointed one.
    let events = all_events(&mut aud_a, after.checkpoint.size).await;
    let mut mem = merkle::MemNodes::new();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e.index, i as u64);
        let parsed = AuditEvent::parse(&e.event).unwrap();
        assert_eq!(parsed.index, i as u64);
        assert_eq!(parsed.tenant, "ville-ra");
        mem.append(&e.event).unwrap();
    }
    assert_eq!(
        merkle::root(&mem, after.checkpoint.size).unwrap(),
        after.checkpoint.root
    );
    // The last change is proven in the checkpoint, through either replica.
    let last = after.checkpoint.size - 1;
    for aud in [&mut aud_a, &mut aud_b] {
        let p = aud
            .get_inclusion_proof(proto::GetInclusionProofRequest {
                index: last,
                tree_size: after.checkpoint.size,
            })
            .await
            .unwrap()
            .into_inner();
        after
            .checkpoint
            .verify_inclusion(&merkle::leaf_hash(&p.event), last, &hashes(&p.hashes))
            .unwrap();
    }
    // Every checkpoint taken meanwhile, through either replica, is a prefix of the final one:
    // no fork.
    for old in during.iter().chain([&before]) {
        let c = aud_b
            .get_consistency_proof(proto::GetConsistencyProofRequest {
                from_size: old.checkpoint.size,
                to_size: after.checkpoint.size,
            })
            .await
            .unwrap()
            .into_inner();
        old.checkpoint
            .verify_consistency(&after.checkpoint, &hashes(&c.hashes))
            .unwrap_or_else(|e| panic!("checkpoint at {}: {e}", old.checkpoint.size));
        after.checkpoint.ensure_not_older(&old.checkpoint).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_events_on_one_replica_sees_changes_made_through_another() {
    let p = pair().await;
    let org = Org::create(&p.a, "ville-rw").await;
    create_circuit(&p.a, &org, "one", vec![visa(&["alice"])]).await;
    let mut watch =
        p.a.docs(org.token("boss"), None)
            .watch_events(proto::WatchEventsRequest {})
            .await
            .unwrap()
            .into_inner();
    let d = submit(&p.b, &org, "one", &[]).await;
    approve(&p.b, &org, "alice", &d.id, Some(0)).await.unwrap();
    let mut kinds = Vec::new();
    // Bounded: each wait is (next_event's), and the changes make a handful of events.
    for _ in 0..20 {
        let e = next_event(&mut watch).await;
        if e.document_id != d.id {
            continue;
        }
        kinds.push(e.kind.clone());
        if e.kind == "completed" {
            assert_eq!(
                proto::DocumentState::try_from(e.state).unwrap(),
                S::Completed
            );
            break;
        }
    }
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("submitted"),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"approved".to_string()), "{kinds:?}");
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("completed"),
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_scheduler_on_every_replica_handles_each_due_item_once() {
    const N: usize = 6;
    let p = pair().await;
    let org = Org::create(&p.a, "ville-rs").await;
    let mut esc = visa(&["bob"]);
    esc.deadline_seconds = 2 * HOUR as u64;
    esc.escalate = "fallback".into();
    esc.fallback = "dave".into();
    create_circuit(&p.a, &org, "esc", vec![esc]).await;
    create_circuit(&p.a, &org, "alice", vec![visa(&["alice"])]).await;
    dele(&p.a, org.token("alice"))
        .declare_absence(proto::DeclareAbsenceRequest {
            from: at(T0.0 + HOUR),
            to: at(T0.0 + DAY),
            delegate: "carol".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut due = Vec::new();
    let mut absent = Vec::new();
    for i in 0..N {
        let via = if i % 2 == 0 { &p.a } else { &p.b };
        due.push(submit(via, &org, "esc", &[]).await.id);
        absent.push(submit(via, &org, "alice", &[]).await.id);
    }
    let mut aud = audit(&p.b, org.token("audit"));
    // Each instant: both clocks move (each replica's own scheduler wakes), and a pass runs on
    // both at once besides.
    let both_at = |t: i64| {
        let (a, b) = (&p.a, &p.b);
        async move {
            let (ra, rb) = tokio::join!(a.at(Timestamp(t)), b.at(Timestamp(t)));
            ra.overdue + rb.overdue
        }
    };
    both_at(T0.0 + HOUR).await;
    for id in &absent {
        let d = get(&p.a, &org, "audit", id).await.unwrap();
        assert_eq!(count(&d, "delegated"), 1, "{:?}", history_kinds(&d));
    }
    let overdue = both_at(T0.0 + 3 * HOUR).await;
    assert!(overdue <= N, "{overdue} overdue marks for {N} due steps");
    both_at(T0.0 + DAY).await;
    // Passes again at the same instant change nothing.
    assert_eq!(both_at(T0.0 + DAY).await, 0);
    for id in &due {
        let d = get(&p.b, &org, "audit", id).await.unwrap();
        assert_eq!(count(&d, "escalated"), 1, "{:?}", history_kinds(&d));
        assert!(count(&d, "overdue") <= 1, "{:?}", history_kinds(&d));
        assert!(d.steps[0].overdue);
        let logged: Vec<String> = doc_events(&mut aud, id)
            .await
            .iter()
            .map(|(_, e)| AuditEvent::parse(e).unwrap().kind)
            .collect();
        assert_eq!(logged, history_kinds(&d), "the log mirrors the history");
        assert_eq!(
            inbox(&p.a, &org, "dave")
                .await
                .iter()
                .filter(|x| *x == id)
                .count(),
            1
        );
    }
    for id in &absent {
        let d = get(&p.b, &org, "audit", id).await.unwrap();
        assert_eq!(count(&d, "delegated"), 1, "{:?}", history_kinds(&d));
        assert_eq!(count(&d, "returned"), 1, "{:?}", history_kinds(&d));
        let logged: Vec<String> = doc_events(&mut aud, id)
            .await
            .iter()
            .map(|(_, e)| AuditEvent::parse(e).unwrap().kind)
            .collect();
        assert_eq!(logged, history_kinds(&d), "the log mirrors the history");
    }
    assert!(inbox(&p.b, &org, "carol").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_with_another_audit_key_refuses_to_start() {
    let p = pair().await;
    let org = Org::create(&p.b, "ville-rx").await;
    let url = pg_store_url(&p.a.dir.as_ref().unwrap().path().join("data"));
    // Its own data directory, where it would make a key of its own.
    let dir = tempfile::tempdir().unwrap();
    let settings = paraph::config::Settings {
        data: dir.path().join("data"),
        store: paraph::config::StoreSettings {
            url: Some(url),
            ..Default::default()
        },
        ..Default::default()
    };
    let clock = std::sync::Arc::new(paraph::clock::ManualClock::new(T0));
    let refused = paraph::server::open(&settings, clock)
        .err()
        .map(|e| e.to_string());
    let message = refused.expect("a replica with another audit key is refused");
    assert!(message.contains("same audit key"), "{message}");
    assert!(message.contains("audit_key"), "{message}");
    // The replicas with the shared key sign on.
    let mut aud = audit(&p.a, org.token("audit"));
    let key = log_key(&mut aud).await;
    create_circuit(&p.b, &org, "one", vec![visa(&["alice"])]).await;
    checkpoint(&mut aud, &key, "ville-rx").await;
    checkpoint(&mut audit(&p.b, org.token("audit")), &key, "ville-rx").await;
}

// ---------------------------------------------------------------------------------------------
// Real processes.

/// A `paraph serve` process on the store `url`, over `dir/data`.
struct Replica {
    proc: Proc,
    /// Its standard output and its log (standard error), kept so that their pipes are read.
    _out: Receiver<String>,
    _log: Receiver<String>,
    addr: String,
    /// The operator token, when this start bootstrapped the store.
    operator: Option<String>,
}

/// Spawns `paraph serve` over `dir/data` on `url`, with `audit_key` as the audit key if given.
fn spawn_serve(
    dir: &Path,
    url: &str,
    audit_key: Option<&Path>,
) -> (Proc, Receiver<String>, Receiver<String>) {
    let data = dir.join("data");
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    if let Some(k) = audit_key {
        cmd.env("PARAPH__AUDIT_KEY", k);
    }
    let mut proc = Proc {
        child: cmd
            .args(["serve", "--listen", "127.0.0.1:0", "--json", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(isolated_config(dir))
            .args(["--store", url])
            .env("RUST_LOG", "info")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn paraph serve"),
    };
    let out = lines(proc.child.stdout.take().expect("stdout"));
    let log = lines(proc.child.stderr.take().expect("stderr"));
    (proc, out, log)
}

/// Reads the standard output of a starting server up to its address.
fn until_listening(out: &Receiver<String>) -> (String, Option<String>) {
    let mut operator = None;
    loop {
        let line = next_line(out, "bootstrap or listening");
        if let Some(a) = line.strip_prefix("paraph listening on ") {
            return (a.to_owned(), operator);
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if let Some(t) = v["token"].as_str() {
                operator = Some(t.to_owned());
            }
        }
    }
}

fn start_replica(dir: &Path, url: &str, audit_key: Option<&Path>) -> Replica {
    let (proc, out, log) = spawn_serve(dir, url, audit_key);
    let (addr, operator) = until_listening(&out);
    Replica {
        proc,
        _out: out,
        _log: log,
        addr,
        operator,
    }
}

/// `paraph admin check` of the store `url`, with the audit key `key`.
fn admin_check(dir: &Path, url: &str, key: &Path) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    cmd.args(["admin", "check", "--data"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(isolated_config(dir))
        .args(["--store", url])
        .env("PARAPH__AUDIT_KEY", key)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .output()
        .expect("run paraph admin check")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_killed_under_load_loses_nothing_acknowledged_and_the_other_serves_on() {
    const ROUNDS: usize = 25;
    const WORKERS: usize = 3;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let url = pg_store_url(&dir_a.path().join("data"));
    let a = start_replica(dir_a.path(), &url, None);
    let operator = a.operator.clone().expect("the first replica bootstraps");
    let key = dir_a.path().join("data").join("audit-key.pem");
    let mut b = start_replica(dir_b.path(), &url, Some(&key));
    assert!(
        b.operator.is_none(),
        "the second replica finds the store made"
    );
    let sa = TestServer::attach(a.addr.parse().unwrap(), operator.clone()).await;
    let sb = TestServer::attach(b.addr.parse().unwrap(), operator.clone()).await;
    let org = Org::create(&sa, "ville-rk").await;
    create_circuit(&sa, &org, "one", vec![visa(&["alice"])]).await;

    // Workers on both replicas: submit, then approve; each acknowledged step is reported.
    #[derive(Debug)]
    enum Ack {
        Submitted(String),
        Approved(String),
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Ack)>();
    let mut tasks = tokio::task::JoinSet::new();
    for (r, srv) in [&sa, &sb].into_iter().enumerate() {
        for w in 0..WORKERS {
            let mut docs = srv.docs(org.token("finance"), None);
            let mut alice = srv.docs(org.token("alice"), None);
            let tx = tx.clone();
            tasks.spawn(async move {
                let mut failures = 0;
                for i in 0..ROUNDS {
                    let d = submit_raw(
                        &mut docs,
                        header("one", &format!("r{r}-w{w}-{i}"), &[]),
                        b"%PDF-1.7 kill content",
                        1024,
                    )
                    .await;
                    let Ok(d) = d else {
                        failures += 1;
                        if r == 0 {
                            panic!("the survivor refused a submission: {d:?}");
                        }
                        break;
                    };
                    let _ = tx.send((r, Ack::Submitted(d.id.clone())));
                    let done = alice
                        .approve(proto::ApproveRequest {
                            id: d.id.clone(),
                            step: Some(0),
                            comment: String::new(),
                            idempotency_key: String::new(),
                        })
                        .await;
                    match done {
                        Ok(_) => {
                            let _ = tx.send((r, Ack::Approved(d.id)));
                        }
                        Err(e) => {
                            if r == 0 {
                                panic!("the survivor refused an approval: {e:?}");
                            }
                            failures += 1;
                            break;
                        }
                    }
                }
                (r, failures)
            });
        }
    }
    drop(tx);
    // Once replica B has acknowledged some changes, it is killed.
    let mut acks = Vec::new();
    let mut from_b = 0;
    while from_b < 10 {
        let (r, ack) = rx.recv().await.expect("acknowledgements from B");
        from_b += usize::from(r == 1);
        acks.push(ack);
    }
    b.proc.child.kill().expect("SIGKILL replica B");
    b.proc.child.wait().unwrap();
    while let Some(r) = tasks.join_next().await {
        let (replica, failures) = r.unwrap();
        if replica == 0 {
            assert_eq!(failures, 0);
        }
    }
    while let Ok((_, ack)) = rx.try_recv() {
        acks.push(ack);
    }
    let submitted: BTreeSet<&String> = acks
        .iter()
        .filter_map(|a| match a {
            Ack::Submitted(id) => Some(id),
            Ack::Approved(_) => None,
        })
        .collect();
    let approved: BTreeSet<&String> = acks
        .iter()
        .filter_map(|a| match a {
            Ack::Approved(id) => Some(id),
            Ack::Submitted(_) => None,
        })
        .collect();
    assert!(submitted.len() >= WORKERS * ROUNDS, "{}", submitted.len());
    // Every acknowledged change reads back through the survivor.
    for id in &submitted {
        let d = get(&sa, &org, "audit", id)
            .await
            .unwrap_or_else(|e| panic!("{id}: {e:?}"));
        if approved.contains(id) {
            assert_eq!(state(&d), S::Completed, "{id}");
            assert_eq!(count(&d, "approved"), 1);
        }
    }
    // The survivor still serves, and its log is whole and signed by the shared key.
    let d = submit(&sa, &org, "one", &[]).await;
    approve(&sa, &org, "alice", &d.id, Some(0)).await.unwrap();
    let mut aud = audit(&sa, org.token("audit"));
    let pk = log_key(&mut aud).await;
    let cp = checkpoint(&mut aud, &pk, "ville-rk").await;
    let events = all_events(&mut aud, cp.checkpoint.size).await;
    let mut mem = merkle::MemNodes::new();
    for e in &events {
        mem.append(&e.event).unwrap();
    }
    assert_eq!(
        merkle::root(&mem, cp.checkpoint.size).unwrap(),
        cp.checkpoint.root
    );
    let logged: BTreeSet<String> = events
        .iter()
        .filter_map(|e| AuditEvent::parse(&e.event).ok())
        .map(|e| e.subject)
        .collect();
    for id in &submitted {
        assert!(
            logged.contains(&format!("document/{id}")),
            "{id} is in the log"
        );
    }
    let check_dir = tempfile::tempdir().unwrap();
    let out = admin_check(check_dir.path(), &url, &key);
    assert!(
        out.status.success(),
        "admin check: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    drop(a);
}

// ---------------------------------------------------------------------------------------------
// A throwaway PostgreSQL of the test's own, to restart.

/// The directory of PostgreSQL's programs: `PARAPH_TEST_PG_BIN`, else Debian's for version 15.
fn pg_bin() -> String {
    std::env::var("PARAPH_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
}

/// A PostgreSQL cluster in a temporary directory owned by `postgres`, stopped when dropped.
struct OwnPg {
    dir: tempfile::TempDir,
    port: u16,
}

fn as_postgres(command: &str) -> std::process::Output {
    Command::new("su")
        .args(["postgres", "-c", command])
        .stdin(Stdio::null())
        .output()
        .expect("run su postgres")
}

impl OwnPg {
    fn new() -> OwnPg {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .expect("chown");
        assert!(st.success(), "chown the cluster's directory to postgres");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = OwnPg { dir, port };
        let out = as_postgres(&format!(
            "{}/initdb -D {}/db -A trust -U postgres",
            pg_bin(),
            pg.dir.path().display()
        ));
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start();
        pg
    }

    fn start(&self) {
        let d = self.dir.path().display();
        let out = as_postgres(&format!(
            "{}/pg_ctl -D {d}/db -w -o '-p {} -k {d} -c listen_addresses=127.0.0.1' -l {d}/log start",
            pg_bin(),
            self.port
        ));
        assert!(
            out.status.success(),
            "pg_ctl start: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self, mode: &str) {
        let out = as_postgres(&format!(
            "{}/pg_ctl -D {}/db -w -m {mode} stop",
            pg_bin(),
            self.dir.path().display()
        ));
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn base(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPg {
    fn drop(&mut self) {
        let _ = as_postgres(&format!(
            "{}/pg_ctl -D {}/db -m immediate stop",
            pg_bin(),
            self.dir.path().display()
        ));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_restarted_under_load_is_unavailable_meanwhile_then_serves_again() {
    let pg = OwnPg::new();
    let dir = tempfile::tempdir().unwrap();
    let url = pg_schema_url(&pg.base(), &dir.path().join("data"));
    let srv = TestServer::start_with(dir, None, move |s| s.store.url = Some(url)).await;
    let org = Org::create(&srv, "ville-rd").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;

    // A load of keyed submissions for the length of the restart.
    let stop = tokio::sync::watch::channel(false);
    let mut docs = srv.docs(org.token("finance"), None);
    let mut halt = stop.1.clone();
    let load = tokio::spawn(async move {
        let mut outcomes: Vec<(String, Result<String, Code>)> = Vec::new();
        let mut i = 0;
        while !*halt.borrow_and_update() && i < 2_000 {
            let key = format!("load-{i}");
            let r = submit_raw(&mut docs, keyed("one", &key), b"%PDF-1.7 load", 1024).await;
            outcomes.push((key, r.map(|d| d.id).map_err(|s| s.code())));
            i += 1;
        }
        outcomes
    });
    let _ = submit(&srv, &org, "one", &[]).await;

    pg.stop("fast");
    let down = submit_keyed(&srv, &org, "one", "while-down").await;
    assert_code(down, Code::Unavailable, "");
    let read = srv
        .docs(org.token("alice"), None)
        .list_inbox(proto::ListInboxRequest {
            page_size: 10,
            page_token: String::new(),
        })
        .await;
    assert_eq!(read.map(|_| ()).unwrap_err().code(), Code::Unavailable);
    pg.start();

    // The same process serves again, at once.
    let back = submit_keyed(&srv, &org, "one", "while-down")
        .await
        .expect("a call after the restart succeeds");
    stop.0.send(true).unwrap();
    let outcomes = load.await.unwrap();
    let mut acked = vec![back.id.clone()];
    for (key, r) in &outcomes {
        match r {
            Ok(id) => acked.push(id.clone()),
            Err(code) => {
                assert_eq!(
                    *code,
                    Code::Unavailable,
                    "{key}: only UNAVAILABLE while down"
                );
                // A retry with the same key succeeds now.
                let d = submit_keyed(&srv, &org, "one", key).await.unwrap();
                acked.push(d.id);
            }
        }
    }
    // One document per key, each acknowledged one kept.
    assert_eq!(
        acked.iter().collect::<BTreeSet<_>>().len(),
        outcomes.len() + 1,
        "one document per idempotency key"
    );
    for id in &acked {
        let d = get(&srv, &org, "alice", id)
            .await
            .unwrap_or_else(|e| panic!("{id} acknowledged, then lost: {e:?}"));
        assert_eq!(state(&d), S::InProgress);
    }
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_waits_for_a_database_down_at_start_and_says_so() {
    let pg = OwnPg::new();
    let dir = tempfile::tempdir().unwrap();
    let plain = pg_schema_url(&pg.base(), &dir.path().join("data"));
    // The same URL with a password (the cluster trusts, so it is never asked for).
    let url = plain.replace("postgres@", "postgres:hunter2secret@");
    pg.stop("fast");
    let (proc, out, log) = spawn_serve(dir.path(), &url, None);
    let mut proc = proc;
    let line = loop {
        let line = next_line(&log, "a log line saying the database is awaited");
        if line.contains("retrying") {
            break line;
        }
    };
    assert!(line.contains(&format!("127.0.0.1:{}", pg.port)), "{line}");
    assert!(
        !line.contains("hunter2secret"),
        "the password is not logged: {line}"
    );
    // A second try is logged too: it keeps waiting, it does not exit.
    let again = loop {
        let line = next_line(&log, "another retry line");
        if line.contains("retrying") {
            break line;
        }
    };
    assert!(!again.contains("hunter2secret"), "{again}");
    assert!(
        proc.child.try_wait().unwrap().is_none(),
        "serve keeps waiting"
    );
    pg.start();
    let (addr, operator) = until_listening(&out);
    let srv = TestServer::attach(addr.parse().unwrap(), operator.expect("bootstrapped")).await;
    let org = Org::create(&srv, "ville-rl").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    let d = submit(&srv, &org, "one", &[]).await;
    assert_eq!(inbox(&srv, &org, "alice").await, vec![d.id]);
    assert_eq!(proc.terminate(Duration::from_secs(30)).code(), Some(0));
    drop(log);
}
