//! The platform operator's token, from the operator's side: the real `paraph` binary serves on
//! loopback, and the same binary lists, issues, rotates and revokes operator tokens; a token
//! revoked is refused (UNAUTHENTICATED) at once; the last live one cannot be revoked; whoever
//! holds the data directory of a stopped server gets a new one offline, and is refused while
//! the server runs. Listings never show a secret; every tenant's audit log records the changes.

mod common;

use common::cli::{restart_server, start_server, token_of, Cli};
use common::{TestServer, T0};
use paraph::proto;
use serde_json::Value;
use std::time::Duration;
use tonic::Code;

const STOP: Duration = Duration::from_secs(30);

fn cli(dir: &std::path::Path, addr: &str) -> Cli {
    Cli {
        dir: dir.to_path_buf(),
        addr: addr.to_owned(),
    }
}

fn operator_tokens(cli: &Cli, token: &str) -> Vec<Value> {
    let v = cli
        .run(token, &["admin", "token", "list", "--operator", "--json"])
        .json();
    v["tokens"].as_array().expect("tokens").clone()
}

/// The kinds and actors of the events of tenant `default`'s log.
fn default_log(cli: &Cli, token: &str) -> Vec<(String, String)> {
    let v = cli
        .run(
            token,
            &[
                "audit", "events", "--start", "0", "--count", "1000", "--json",
            ],
        )
        .json();
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            (
                e["kind"].as_str().unwrap_or_default().to_owned(),
                e["actor"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

async fn refused(addr: &str, token: &str) -> Code {
    let srv = TestServer::attach(addr.parse().expect("address"), token.to_owned()).await;
    srv.admin(token, None)
        .list_tokens(proto::ListTokensRequest::default())
        .await
        .map(|_| Code::Ok)
        .unwrap_or_else(|s| s.code())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_rotates_its_token_and_the_old_one_is_refused() {
    let _ = T0;
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut server, _out, operator, addr) = start_server(tmp.path());
    let cli = cli(tmp.path(), &addr);

    // The list shows ids and dates, never a secret.
    let listed = operator_tokens(&cli, &operator);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let first_id = listed[0]["token_id"].as_str().expect("id").to_owned();
    assert_eq!(listed[0]["current"], true);
    assert_eq!(listed[0]["user"], Value::Null);
    assert_eq!(listed[0]["revoked_at"], Value::Null);
    let text = cli.run(&operator, &["admin", "token", "list", "--operator"]);
    assert!(text.ok().contains(&first_id), "{}", text.stdout);
    assert!(text.stdout.contains("(this token)"), "{}", text.stdout);
    for out in [&text.stdout, &Value::Array(listed.clone()).to_string()] {
        assert!(!out.contains(&operator), "a listing shows a secret: {out}");
        assert!(!out.contains("pph_"), "a listing shows a secret: {out}");
    }

    // Rotation: a new token, the old one revoked in the same step.
    let rotated = cli
        .run(&operator, &["admin", "token", "rotate", "--json"])
        .json();
    let new = token_of(&rotated);
    assert_ne!(new, operator);
    assert_eq!(rotated["revoked_token_id"], first_id.as_str());
    assert_eq!(refused(&addr, &operator).await, Code::Unauthenticated);
    cli.run(&operator, &["admin", "token", "list", "--operator"])
        .fails(4, &["UNAUTHENTICATED"]);
    assert_eq!(refused(&addr, &new).await, Code::Ok);

    let listed = operator_tokens(&cli, &new);
    assert_eq!(listed.len(), 2, "{listed:?}");
    let old = listed.iter().find(|t| t["token_id"] == first_id.as_str());
    let old = old.expect("the old token is listed");
    assert_ne!(old["revoked_at"], Value::Null, "{old}");
    assert_eq!(old["current"], false);
    let current: Vec<&Value> = listed.iter().filter(|t| t["current"] == true).collect();
    assert_eq!(current.len(), 1);
    assert_eq!(current[0]["revoked_at"], Value::Null);

    // Every tenant's log records it: the operator acts in every tenant.
    let log = default_log(&cli, &new);
    for kind in ["operator_token_issued", "operator_token_revoked"] {
        assert!(
            log.contains(&(kind.to_owned(), "_operator".to_owned())),
            "{kind} missing from {log:?}"
        );
    }
    server.terminate(STOP);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_last_operator_token_cannot_be_revoked_and_tenants_cannot_touch_operator_tokens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut server, _out, operator, addr) = start_server(tmp.path());
    let cli = cli(tmp.path(), &addr);
    let first_id = operator_tokens(&cli, &operator)[0]["token_id"]
        .as_str()
        .expect("id")
        .to_owned();

    cli.run(
        &operator,
        &["admin", "token", "revoke", "--operator", &first_id],
    )
    .fails(5, &["FAILED_PRECONDITION", "last live operator token"]);
    assert_eq!(refused(&addr, &operator).await, Code::Ok);

    // A second one (printed alone on stdout), then the first can go.
    let second = cli.run(&operator, &["admin", "token", "issue", "--operator"]);
    let second = second.ok().trim().to_owned();
    assert!(second.starts_with("pph_"), "{second}");
    cli.run(
        &second,
        &["admin", "token", "revoke", "--operator", &first_id],
    )
    .ok();
    assert_eq!(refused(&addr, &operator).await, Code::Unauthenticated);
    let second_id = operator_tokens(&cli, &second)
        .into_iter()
        .find(|t| t["current"] == true)
        .expect("current")["token_id"]
        .as_str()
        .expect("id")
        .to_owned();
    cli.run(
        &second,
        &["admin", "token", "revoke", "--operator", &second_id],
    )
    .fails(5, &["last live operator token"]);

    // A tenant admin neither issues nor revokes operator tokens, nor sees them.
    cli.run(
        &second,
        &["admin", "user", "create", "boss", "--role", "admin"],
    )
    .ok();
    let boss = cli.run(&second, &["admin", "token", "issue", "boss"]);
    let boss = boss.ok().trim().to_owned();
    cli.run(&boss, &["admin", "token", "issue", "--operator"])
        .fails(4, &["PERMISSION_DENIED"]);
    cli.run(
        &boss,
        &["admin", "token", "revoke", "--operator", &second_id],
    )
    .fails(3, &["NOT_FOUND"]);
    let theirs = cli.run(&boss, &["admin", "token", "list", "--json"]).json();
    let theirs = theirs["tokens"].as_array().expect("tokens").clone();
    assert_eq!(theirs.len(), 1, "{theirs:?}");
    assert_eq!(theirs[0]["user"], "boss");
    assert_eq!(refused(&addr, &second).await, Code::Ok);
    server.terminate(STOP);
}

/// `paraph admin operator-token --data DATA EXTRA` on the tests' store for `data`.
fn operator_token_offline(cli: &Cli, data: &std::path::Path, extra: &[&str]) -> common::cli::Out {
    let store = common::cli::existing_store_args(data);
    let mut args = vec![
        "admin",
        "operator-token",
        "--data",
        data.to_str().expect("path"),
    ];
    args.extend_from_slice(extra);
    args.extend(store.iter().map(String::as_str));
    cli.run("", &args)
}

#[tokio::test(flavor = "multi_thread")]
async fn whoever_holds_the_data_directory_recovers_an_operator_token_only_while_the_server_is_stopped(
) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (mut server, _out, operator, addr) = start_server(tmp.path());
    let cli = cli(tmp.path(), &addr);
    let data = tmp.path().join("data");
    let data = data.as_path();

    // The running server holds the directory: refused, nothing issued.
    operator_token_offline(&cli, data, &[]).fails(5, &["in use", "stop the server"]);
    assert_eq!(operator_tokens(&cli, &operator).len(), 1);
    let old_id = operator_tokens(&cli, &operator)[0]["token_id"]
        .as_str()
        .expect("id")
        .to_owned();
    assert_eq!(server.terminate(STOP).code(), Some(0));

    // Stopped: a new token, printed once, the leaked one revoked.
    let out = operator_token_offline(&cli, data, &["--revoke-others", "--json"]).json();
    let recovered = token_of(&out);
    assert!(recovered.starts_with("pph_"), "{out}");
    assert_eq!(out["revoked"], serde_json::json!([old_id]));

    let (mut server, _out, addr) = restart_server(tmp.path());
    let cli = common::cli::Cli {
        dir: tmp.path().to_path_buf(),
        addr: addr.clone(),
    };
    assert_eq!(refused(&addr, &recovered).await, Code::Ok);
    assert_eq!(refused(&addr, &operator).await, Code::Unauthenticated);
    let listed = operator_tokens(&cli, &recovered);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(!Value::Array(listed).to_string().contains(&recovered));
    let log = default_log(&cli, &recovered);
    for kind in ["operator_token_issued", "operator_token_revoked"] {
        assert!(
            log.contains(&(kind.to_owned(), "_data-directory".to_owned())),
            "{kind} missing from {log:?}"
        );
    }
    server.terminate(STOP);

    // A directory that holds no store is refused.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).expect("mkdir");
    operator_token_offline(&cli, &empty, &[]).fails(1, &["never initialised"]);
}
