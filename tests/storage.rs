//! What users' requests cost on disk, and who may read the data directory, over a real server
//! on loopback and its real files: absences cost storage linear in their number (not the
//! tenant's whole list rewritten at each declaration), live absences per user are capped,
//! absences stored by older versions are still read, and the data directory is its owner's only.

mod common;
use common::*;
use paraph::proto;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tonic::Code;

const DAY: i64 = 86_400;

async fn declare(
    d: &mut Dele,
    user: &str,
    from: i64,
    to: i64,
    delegate: &str,
) -> Result<proto::Absence, tonic::Status> {
    d.declare_absence(proto::DeclareAbsenceRequest {
        user: user.into(),
        from: at(from),
        to: at(to),
        delegate: delegate.into(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner())
}

async fn cancel(d: &mut Dele, id: &str) -> Result<proto::Absence, tonic::Status> {
    d.cancel_absence(proto::CancelAbsenceRequest {
        id: id.into(),
        idempotency_key: String::new(),
    })
    .await
    .map(|r| r.into_inner())
}

async fn listed(d: &mut Dele, include_past: bool) -> Vec<proto::Absence> {
    d.list_absences(proto::ListAbsencesRequest {
        include_past,
        ..Default::default()
    })
    .await
    .unwrap()
    .into_inner()
    .absences
}

/// Bytes held by the files under `dir` (value log, index files, everything).
fn disk_use(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        total += if meta.is_dir() {
            disk_use(&entry.path())
        } else {
            meta.len()
        };
    }
    total
}

/// Declares then cancels `n` absences of alice, one after the other, each a day later, on the
/// day before it: the absences cancelled over a day ago are no longer read by each request
/// (as on a real platform, whose absences are spread over time), only what is kept is counted.
async fn declare_and_cancel(srv: &TestServer, d: &mut Dele, first: i64, n: i64) {
    for i in first..first + n {
        srv.clock.set(paraph::domain::Timestamp(T0.0 + DAY * i));
        let from = T0.0 + DAY * (i + 1);
        let a = declare(d, "", from, from + DAY / 2, "bob").await.unwrap();
        cancel(d, &a.id).await.unwrap();
    }
}

#[tokio::test]
async fn a_thousand_absences_cost_storage_linear_in_their_number() {
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-s1").await;
    let mut alice = dele(&srv, org.token("alice"));
    if on_postgres() {
        // The store's tables in its schema (with their indexes and TOAST), as the server
        // measures them: grown by whole pages, and by the versions of the rows that a
        // cancellation updated until the database vacuums them.
        let store = srv.svc.as_ref().expect("in process").store().clone();
        let size = move || store.disk_bytes().expect("the store's size");
        declare_and_cancel(&srv, &mut alice, 0, 100).await;
        let size0 = size();
        declare_and_cancel(&srv, &mut alice, 100, 400).await;
        let size1 = size();
        declare_and_cancel(&srv, &mut alice, 500, 500).await;
        let size2 = size();
        let (first, second) = ((size1 - size0) / 400, (size2 - size1) / 500);
        eprintln!("per declared and cancelled absence: {first} then {second} bytes in PostgreSQL");
        // The whole list rewritten at each of them cost about 400 bytes times the number
        // declared so far, twice: over 2.5 times more in the second run than in the first.
        assert!(
            first < 8 * 1024,
            "{first} bytes per declaration and cancellation"
        );
        assert!(
            second <= first + first / 2 + 1024,
            "the store grows faster than the number of absences: {first} then {second} bytes each"
        );
        assert_eq!(listed(&mut alice, true).await.len(), 1000);
        assert!(listed(&mut alice, false).await.is_empty());
        return;
    }
    let data = srv.dir.as_ref().unwrap().path().join("data");
    let log = |data: &Path| std::fs::metadata(data.join("values.log")).unwrap().len();
    // Warm up: the first writes create the index's and the log's files.
    declare_and_cancel(&srv, &mut alice, 0, 100).await;
    let (disk0, log0) = (disk_use(&data), log(&data));
    declare_and_cancel(&srv, &mut alice, 100, 400).await;
    let log1 = log(&data);
    declare_and_cancel(&srv, &mut alice, 500, 500).await;
    let (disk2, log2) = (disk_use(&data), log(&data));
    // A declaration and its cancellation (records, indexes, audit events, checkpoints): a few
    // KiB, whatever the number declared before. The whole list rewritten at each of them cost
    // about 400 bytes times the number of absences declared so far, twice.
    let disk = (disk2 - disk0) / 900;
    let (first, second) = ((log1 - log0) / 400, (log2 - log1) / 500);
    eprintln!(
        "per declared and cancelled absence: {disk} bytes on disk; {first} then {second} bytes \
         of value log"
    );
    assert!(
        disk < 8 * 1024,
        "{disk} bytes per declaration and cancellation"
    );
    // The append-only log is measured exactly (the index files grow by whole regions).
    assert!(
        second <= first + first / 4 + 64,
        "the value log grows faster than the number of absences: {first} then {second} bytes each"
    );
    // Every one is still there and cancelled.
    let all = listed(&mut alice, true).await;
    assert_eq!(all.len(), 1000);
    assert!(all.iter().all(|a| a.cancelled_at.is_some()));
    assert!(listed(&mut alice, false).await.is_empty());
}

#[tokio::test]
async fn live_absences_per_user_are_capped_by_a_setting() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, |s| {
        s.max_live_absences_per_user = 3;
    })
    .await;
    let org = Org::create(&srv, "ville-s2").await;
    let mut alice = dele(&srv, org.token("alice"));
    let mut boss = dele(&srv, org.token("boss"));
    let mut ids = Vec::new();
    for i in 1..=3 {
        let from = T0.0 + DAY * 10 * i;
        ids.push(
            declare(&mut alice, "", from, from + DAY, "bob")
                .await
                .unwrap()
                .id,
        );
    }
    // The fourth live one is refused, whoever declares it, naming the cap.
    let from = T0.0 + DAY * 100;
    for (who, user) in [(&mut alice, ""), (&mut boss, "alice")] {
        let e = declare(who, user, from, from + DAY, "bob")
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
        assert!(
            e.message().contains("3 live absences")
                && e.message().contains("max_live_absences_per_user"),
            "{}",
            e.message()
        );
    }
    // Another user has his own allowance.
    declare(&mut boss, "bob", from, from + DAY, "carol")
        .await
        .unwrap();
    // A cancelled absence no longer counts...
    cancel(&mut alice, &ids[0]).await.unwrap();
    declare(&mut alice, "", from, from + DAY, "bob")
        .await
        .unwrap();
    declare(&mut alice, "", from + 2 * DAY, from + 3 * DAY, "bob")
        .await
        .unwrap_err();
    // ...nor does one that is over.
    srv.at(paraph::domain::Timestamp(T0.0 + DAY * 21 + 1)).await;
    declare(&mut alice, "", from + 2 * DAY, from + 3 * DAY, "bob")
        .await
        .unwrap();
    assert_eq!(listed(&mut alice, false).await.len(), 3);
    assert_eq!(listed(&mut alice, true).await.len(), 5);
}

#[tokio::test]
async fn absences_stored_by_older_versions_are_still_read_routed_and_cancelled() {
    use paraph::domain::{Absence, AbsenceId, Scope, TenantId, Timestamp, UserName};
    let srv = TestServer::start().await;
    let org = Org::create(&srv, "ville-s3").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    let (dir, operator) = srv.stop().await;
    // What an older version kept: the tenant's whole list under one key.
    let old = |id: &str, user: &str, from: i64, to: i64, delegate: &str| Absence {
        id: AbsenceId::parse(id).unwrap(),
        tenant: TenantId::parse("ville-s3").unwrap(),
        user: UserName::parse(user).unwrap(),
        from: Timestamp(from),
        to: Timestamp(to),
        delegate: UserName::parse(delegate).unwrap(),
        scope: Scope::default(),
        declared_by: UserName::parse(user).unwrap(),
        declared_at: Timestamp(T0.0 - DAY),
        cancelled_at: None,
    };
    let list = vec![
        old(
            "00000000000000000000000000000001",
            "alice",
            T0.0 - DAY,
            T0.0 + DAY,
            "bob",
        ),
        old(
            "00000000000000000000000000000002",
            "carol",
            T0.0 - 10 * DAY,
            T0.0 - 5 * DAY,
            "dave",
        ),
    ];
    {
        let store = open_test_store(&dir.path().join("data"));
        store
            .transact_blocking(move |tx| tx.put("absences/ville-s3", &list))
            .unwrap();
    }
    let srv = TestServer::start_with(dir, Some(operator), |_| {}).await;
    let mut alice = dele(&srv, org.token("alice"));
    let live = listed(&mut alice, false).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].id, "00000000000000000000000000000001");
    let mut boss = dele(&srv, org.token("boss"));
    assert_eq!(listed(&mut boss, true).await.len(), 2);
    // The old absence routes alice's step to bob, and counts against the overlap rule.
    let doc = submit(&srv, &org, "one", &[]).await;
    assert_eq!(inbox(&srv, &org, "bob").await, vec![doc.id.clone()]);
    let e = declare(&mut alice, "", T0.0, T0.0 + 2 * DAY, "carol")
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    // Cancelled like any other: the step comes back to alice.
    cancel(&mut alice, "00000000000000000000000000000001")
        .await
        .unwrap();
    assert!(inbox(&srv, &org, "bob").await.is_empty());
    assert_eq!(inbox(&srv, &org, "alice").await, vec![doc.id.clone()]);
    assert!(listed(&mut alice, false).await.is_empty());
    // And a restart finds the same.
    let (dir, operator) = srv.stop().await;
    let srv = TestServer::start_with(dir, Some(operator), |_| {}).await;
    let mut boss = dele(&srv, org.token("boss"));
    let all = listed(&mut boss, true).await;
    assert_eq!(all.len(), 2);
    assert!(listed(&mut boss, false).await.is_empty());
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir` (recursively) with a mode allowing anyone but its owner in.
fn open_to_others(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if mode(&p) & 0o077 != 0 {
            out.push(format!("{} {:o}", p.display(), mode(&p)));
        }
        if p.is_dir() {
            out.extend(open_to_others(&p));
        }
    }
    out
}

/// On the embedded engines whatever store the other tests use: the files of their store are
/// what is checked (the value log, the index).
#[tokio::test]
async fn the_data_directory_and_its_files_are_its_owners_only() {
    // A fresh directory.
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, embedded_store).await;
    let org = Org::create(&srv, "ville-s4").await;
    create_circuit(&srv, &org, "one", vec![visa(&["alice"])]).await;
    submit(&srv, &org, "one", &[]).await;
    let (dir, operator) = srv.stop().await;
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700);
    assert!(
        open_to_others(&data).is_empty(),
        "{:?}",
        open_to_others(&data)
    );
    assert!(data.join("values.log").exists());
    // One left open by an older version (or an operator): tightened on start.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    for f in ["values.log", "lock"] {
        std::fs::set_permissions(data.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::write(data.join("notes.txt"), b"left here").unwrap();
    std::fs::set_permissions(
        data.join("notes.txt"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let srv = TestServer::start_with(dir, Some(operator), embedded_store).await;
    assert_eq!(mode(&data), 0o700);
    assert!(
        open_to_others(&data).is_empty(),
        "{:?}",
        open_to_others(&data)
    );
    // Still served.
    assert_eq!(inbox(&srv, &org, "alice").await.len(), 1);
}
