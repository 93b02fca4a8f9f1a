//! Value-log compaction of a stopped server's data directory (`paraph admin compact`), run as
//! the real binary on real files: it reclaims what rewritten records left behind, and a process
//! killed at any step of it leaves a store that opens with every record as it was, which a
//! second compaction then finishes.

mod common;
use common::*;
use paraph::proto;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_paraph");

/// Every key and value of the store in `data`, values resolved (the store is opened and closed).
fn everything(data: &Path) -> BTreeMap<String, Vec<u8>> {
    let store = paraph::store::Store::open(data).unwrap();
    store
        .scan_keys("", None, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|k| {
            let v = store.get_raw(&k).unwrap().unwrap();
            (k, v.to_vec())
        })
        .collect()
}

/// The value log's files in `data` and their total size.
fn value_log(data: &Path) -> (Vec<String>, u64) {
    let mut names = Vec::new();
    let mut bytes = 0;
    for e in std::fs::read_dir(data).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("values.") && name.ends_with(".log") {
            bytes += e.metadata().unwrap().len();
            names.push(name);
        }
    }
    names.sort();
    (names, bytes)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Runs `paraph admin compact` on `data`, aborted at `abort` (`STEP:N`) when given.
fn compact(data: &Path, abort: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["admin", "compact", "--batch", "25", "--data"])
        .arg(data)
        .arg("--config")
        .arg(isolated_config(data.parent().expect("data has a parent")))
        .env_remove("PARAPH_TEST_COMPACT_ABORT");
    if let Some(a) = abort {
        cmd.env("PARAPH_TEST_COMPACT_ABORT", a);
    }
    cmd.output().unwrap()
}

async fn content(srv: &TestServer, org: &Org, id: &str) -> Vec<u8> {
    srv.content(org.token("alice"), id).await
}

/// On the embedded engines whatever store the other tests use: the value log and its
/// compaction are theirs alone.
#[tokio::test]
async fn compaction_reclaims_dead_values_and_a_crash_at_any_step_loses_nothing() {
    let srv = TestServer::start_with(tempfile::tempdir().unwrap(), None, embedded_store).await;
    let org = Org::create(&srv, "ville-c1").await;
    create_circuit(
        &srv,
        &org,
        "two",
        vec![visa(&["alice"]), visa(&["bob"]), visa(&["carol"])],
    )
    .await;
    let mut docs = Vec::new();
    for i in 0..60u32 {
        let body: Vec<u8> = (0..3000u32).map(|j| (i * 7 + j) as u8).collect();
        let d = submit_raw(
            &mut srv.docs(org.token("finance"), None),
            header("two", &format!("Mandat {i}"), &[]),
            &body,
            1024,
        )
        .await
        .unwrap();
        // Each step rewrites the document: its earlier versions are dead values.
        approve(&srv, &org, "alice", &d.id, None).await.unwrap();
        approve(&srv, &org, "bob", &d.id, None).await.unwrap();
        docs.push((d.id, body));
    }
    let (dir, operator) = srv.stop().await;
    let data = dir.path().join("data");
    let expected = everything(&data);
    let (_, log_before) = value_log(&data);

    // Killed at each step (the first and a later batch of each), then reopened.
    let scratch = tempfile::tempdir().unwrap();
    let steps = [
        "copied:1",
        "moved:1",
        "copied:4",
        "moved:4",
        "checked:1",
        "removed:1",
    ];
    for (n, step) in steps.iter().enumerate() {
        let copy = scratch.path().join(format!("crash-{n}"));
        copy_dir(&data, &copy);
        let out = compact(&copy, Some(step));
        assert_eq!(
            out.status.signal(),
            Some(6),
            "{step}: the compaction should have been stopped there: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            everything(&copy) == expected,
            "{step}: the store differs after the crash"
        );
        // Compacting again finishes the job.
        let out = compact(&copy, None);
        assert!(
            out.status.success(),
            "{step}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            everything(&copy) == expected,
            "{step}: the store differs after compacting again"
        );
        let (files, bytes) = value_log(&copy);
        assert_eq!(files.len(), 1, "{step}: {files:?}");
        assert!(bytes < log_before, "{step}: {bytes} of {log_before}");
    }

    // Uninterrupted, on the directory itself.
    let out = compact(&data, None);
    let said = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{said}");
    assert!(said.contains("compacted"), "{said}");
    let (files, log_after) = value_log(&data);
    assert_eq!(files, vec!["values.1.log".to_string()]);
    eprintln!("value log: {log_before} bytes before compaction, {log_after} after");
    // The two earlier versions of each document record (over 1 KiB each) are reclaimed.
    assert!(
        log_before - log_after > 60 * 2048,
        "{log_after} of {log_before}"
    );
    assert!(everything(&data) == expected);

    // The server serves the compacted directory and writes to it.
    let srv = TestServer::start_with(dir, Some(operator), embedded_store).await;
    for (id, body) in docs.iter().step_by(7) {
        assert_eq!(&content(&srv, &org, id).await, body);
        let d = approve(&srv, &org, "carol", id, None).await.unwrap();
        assert_eq!(state(&d), proto::DocumentState::Completed);
    }
    assert_eq!(inbox(&srv, &org, "carol").await.len(), docs.len() - 9);
    let (dir, _) = srv.stop().await;
    let data = dir.path().join("data");
    // Refused while a server holds the directory.
    let _store = paraph::store::Store::open(&data).unwrap();
    let out = compact(&data, None);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
