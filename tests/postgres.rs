//! PostgreSQL as the store, from the operator's side: the schema's versions (`admin migrate`,
//! `serve` refusing a database it cannot use), the schema a DBA reads, and moving an embedded
//! store in (`admin copy`, then serving from the copy). These tests need a PostgreSQL: the
//! database at `PARAPH_TEST_PG_URL` (else one the tests start themselves, see
//! `common::test_pg_base`), whatever `PARAPH_TEST_STORE` says; each test works in schemas of
//! its own.

mod common;

use common::cli::{lines, Cli, Out, Proc, BIN, STEP_TIMEOUT};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

fn base_url() -> String {
    common::test_pg_base()
}

/// A URL naming a fresh schema (which nothing created yet) in the tests' database.
fn fresh_schema(tag: &str) -> (String, String) {
    let mut r = [0u8; 6];
    getrandom::getrandom(&mut r).expect("randomness");
    let schema = format!("{tag}_{}", hex::encode(r));
    let base = base_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    (
        format!("{base}{sep}options=-csearch_path%3D{schema}"),
        schema,
    )
}

/// Runs SQL on the tests' database (outside any paraph), returning the first column of each
/// row as text.
fn sql(query: &str) -> Vec<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&base_url(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "these tests need a PostgreSQL at {} (PARAPH_TEST_PG_URL): {e}",
                    base_url()
                )
            });
        tokio::spawn(conn);
        let rows = client
            .simple_query(query)
            .await
            .unwrap_or_else(|e| panic!("{query}: {e}"));
        rows.into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => {
                    Some(r.get(0).unwrap_or("NULL").to_owned())
                }
                _ => None,
            })
            .collect()
    })
}

fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs-test")
}

/// `paraph ARGS` with a clean environment and an isolated settings file, bounded in time.
fn paraph(dir: &Path, args: &[&str]) -> Out {
    let cli = Cli {
        dir: dir.to_path_buf(),
        addr: "http://127.0.0.1:1".into(),
    };
    let config = common::isolated_config(dir);
    let mut all: Vec<&str> = args.to_vec();
    all.push("--config");
    let config = config.to_string_lossy().into_owned();
    all.push(&config);
    cli.run("", &all)
}

/// Starts `paraph serve ARGS` (with an isolated settings file) and reads its output up to the
/// listening line, or up to its exit: the process, the lines before, the address if any.
fn serve(dir: &Path, args: &[&str]) -> (Proc, Vec<String>, Option<String>) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .expect("log file");
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("PARAPH") {
            cmd.env_remove(k);
        }
    }
    let mut server = Proc {
        child: cmd
            .arg("serve")
            .args(args)
            .arg("--config")
            .arg(common::isolated_config(dir))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("spawn paraph serve"),
    };
    let out = lines(server.child.stdout.take().expect("stdout"));
    let mut before = Vec::new();
    loop {
        match out.recv_timeout(STEP_TIMEOUT) {
            Ok(line) => {
                if let Some(a) = line.strip_prefix("paraph listening on ") {
                    return (server, before, Some(a.to_owned()));
                }
                before.push(line);
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return (server, before, None),
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("serve printed nothing in time"),
        }
    }
}

fn server_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("server.log")).unwrap_or_default()
}

#[test]
fn migrations_are_versioned_and_serve_refuses_a_database_it_cannot_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, schema) = fresh_schema("mig");
    let data = dir.path().join("data");
    let data_s = data.to_string_lossy().into_owned();

    // No schema yet: serve refuses, naming the command to run, and initialises nothing.
    let (mut server, _, addr) = serve(dir.path(), &["--data", &data_s, "--store", &url]);
    assert!(addr.is_none(), "served a database without a schema");
    let status = server.terminate(STEP_TIMEOUT);
    assert!(!status.success());
    let log = server_log(dir.path());
    assert!(
        log.contains("paraph admin migrate"),
        "the refusal names the command: {log}"
    );
    assert!(
        sql(&format!(
            "SELECT count(*) FROM information_schema.schemata WHERE schema_name = '{schema}'"
        )) == ["0"],
        "serve created the schema"
    );

    // Migrated once; a second migration has nothing to do.
    let first = paraph(dir.path(), &["admin", "migrate", "--store", &url, "--json"]).json();
    assert_eq!(first["from"], 0);
    assert_eq!(first["to"], paraph::store::SCHEMA_VERSION);
    let again = paraph(dir.path(), &["admin", "migrate", "--store", &url]);
    assert!(
        again.ok().contains("already at version"),
        "{}",
        again.stdout
    );
    let tables = sql(&format!(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}' \
         AND table_type = 'BASE TABLE' ORDER BY 1"
    ));
    for t in [
        "tenants",
        "users",
        "tokens",
        "circuits",
        "documents",
        "contents",
        "inbox",
        "signatures",
        "preparations",
        "absences",
        "deadlines",
        "idempotency",
        "audit_event_runs",
        "audit_heads",
        "audit_checkpoints",
    ] {
        assert!(tables.iter().any(|x| x == t), "no table {t}: {tables:?}");
    }

    // Now it serves, and the first start initialises the platform in the database.
    let (mut server, before, addr) = serve(dir.path(), &["--data", &data_s, "--store", &url]);
    assert!(addr.is_some(), "a migrated database is served: {before:?}");
    server.terminate(STEP_TIMEOUT);
    assert_eq!(
        sql(&format!("SELECT count(*) FROM {schema}.tenants")),
        ["1"],
        "the first tenant is a row of the tenants table"
    );

    // A schema newer than this binary: serve and migrate both refuse, naming the versions.
    sql(&format!(
        "INSERT INTO {schema}.paraph_schema (version) VALUES (99)"
    ));
    let (mut server, _, addr) = serve(dir.path(), &["--data", &data_s, "--store", &url]);
    assert!(addr.is_none(), "served a newer schema");
    server.terminate(STEP_TIMEOUT);
    assert!(
        server_log(dir.path()).contains("newer than this paraph"),
        "{}",
        server_log(dir.path())
    );
    let refused = paraph(dir.path(), &["admin", "migrate", "--store", &url]);
    assert_ne!(refused.code, Some(0));
    assert!(
        refused.stderr.contains("version 99"),
        "migrate names the version: {}",
        refused.stderr
    );
    // The password of a URL never appears in what paraph prints.
    let secret_url = url.replacen("postgres@", "postgres:hunter2@", 1);
    let out = paraph(dir.path(), &["admin", "migrate", "--store", &secret_url]);
    assert!(!out.stderr.contains("hunter2") && !out.stdout.contains("hunter2"));
    sql(&format!("DROP SCHEMA {schema} CASCADE"));
}

#[test]
fn an_embedded_store_is_copied_into_postgresql_verified_and_served_from_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let data_s = data.to_string_lossy().into_owned();
    let certs = certs().to_string_lossy().into_owned();
    // An embedded demo store, with a document signed by the demo's officers.
    let (mut server, before, addr) = serve(
        dir.path(),
        &[
            "--demo",
            "--certs",
            &certs,
            "--json",
            "--listen",
            "127.0.0.1:0",
            "--data",
            &data_s,
            "--engine",
            "sled",
        ],
    );
    let addr = addr.unwrap_or_else(|| panic!("the demo server did not start: {before:?}"));
    let token = |user: &str| {
        before
            .iter()
            .find_map(|l| {
                let mut w = l.split_whitespace();
                (w.next() == Some(user)).then(|| w.next().map(str::to_owned))?
            })
            .unwrap_or_else(|| panic!("no demo token for {user}: {before:?}"))
    };
    let cli = Cli {
        dir: dir.path().to_path_buf(),
        addr: format!("http://{addr}"),
    };
    std::fs::write(dir.path().join("mandate.txt"), b"Mandat 42: 1 200,00 EUR").expect("write");
    let submitted = cli.run(
        &token("finance"),
        &[
            "submit",
            "mandate.txt",
            "--type",
            "MANDATE",
            "--circuit",
            "demo",
            "--title",
            "Mandat 42",
            "--tenant",
            "demo",
        ],
    );
    let id = submitted.ok().trim().to_owned();
    assert!(!id.is_empty());
    cli.run(
        &token("carol"),
        &["approve", &id, "--comment", "vu", "--tenant", "demo"],
    )
    .ok();
    server.terminate(STEP_TIMEOUT);

    // Copied into an empty database.
    let (url, schema) = fresh_schema("copy");
    let report = paraph(
        dir.path(),
        &["admin", "copy", "--from", &data_s, "--to", &url, "--json"],
    )
    .json();
    let records = report["records"].as_object().expect("records by kind");
    let total: u64 = records.values().filter_map(|v| v.as_u64()).sum();
    assert!(total > 20, "{report}");
    assert_eq!(report["verified"].as_u64(), Some(total), "{report}");
    assert!(records["doc"].as_u64() >= Some(1), "{report}");
    assert!(
        report["audit_logs_verified"].as_u64() >= Some(1),
        "{report}"
    );
    // Readable by a DBA: the document is a row with its state.
    let state = sql(&format!(
        "SELECT record->>'state' FROM {schema}.documents_records WHERE doc_id = '{id}'"
    ));
    assert_eq!(state.len(), 1, "the document is one row");
    // A second copy into the same (now full) database is refused.
    let again = paraph(
        dir.path(),
        &["admin", "copy", "--from", &data_s, "--to", &url],
    );
    assert_ne!(again.code, Some(0));
    assert!(
        again.stderr.contains("already holds records"),
        "{}",
        again.stderr
    );
    // `admin check` passes on the copy.
    paraph(dir.path(), &["admin", "check", "--store", &url]).ok();

    // Served from the database (another data directory: the old one is not used any more),
    // with the seal and audit key of the old one: the document is there, and carol's visa.
    let data2 = dir.path().join("data2");
    let data2_s = data2.to_string_lossy().into_owned();
    let audit_key = data.join("audit-key.pem");
    let cmd_args = vec![
        "--data",
        &data2_s,
        "--store",
        &url,
        "--listen",
        "127.0.0.1:0",
    ];
    let seals = data.join("seals.toml");
    assert!(
        seals.exists(),
        "the demo keeps its seal in the data directory"
    );
    std::fs::copy(&seals, {
        std::fs::create_dir_all(&data2).expect("data2");
        data2.join("seals.toml")
    })
    .expect("copy the seal settings");
    std::fs::copy(&audit_key, data2.join("audit-key.pem")).expect("copy the audit key");
    for f in ["demo-seal.p12", "demo-seal.password"] {
        std::fs::copy(data.join(f), data2.join(f)).expect("copy the demo's seal");
    }
    let (mut server, before, addr) = serve(dir.path(), &cmd_args);
    let addr = addr.unwrap_or_else(|| {
        panic!(
            "serving the copy failed: {before:?}\n{}",
            server_log(dir.path())
        )
    });
    assert!(
        !before.iter().any(|l| l.contains("token")),
        "a copied store is not initialised again: {before:?}"
    );
    let cli = Cli {
        dir: dir.path().to_path_buf(),
        addr: format!("http://{addr}"),
    };
    let shown = cli.run(&token("finance"), &["show", &id, "--tenant", "demo"]);
    assert!(shown.ok().contains("Mandat 42"), "{}", shown.stdout);
    assert!(shown.stdout.contains("carol"), "{}", shown.stdout);
    server.terminate(STEP_TIMEOUT);
    sql(&format!("DROP SCHEMA {schema} CASCADE"));
}

/// A store on a fresh migrated schema, as `serve` opens it.
fn fresh_store(dir: &Path, tag: &str) -> paraph::store::Store {
    let (url, _) = fresh_schema(tag);
    let options = paraph::store::PgOptions {
        url,
        pool_size: 2,
        statement_timeout: std::time::Duration::from_secs(60),
        connect_wait: Some(std::time::Duration::from_secs(20)),
    };
    paraph::store::migrate(&options).expect("migrate");
    paraph::store::Store::open_postgres(dir, &options).expect("open the PostgreSQL store")
}

/// A connection is driven by the thread that reads (no task of its own): answers of thousands
/// of rows, which the client library hands over in many pieces, and values of megabytes come
/// through whole, on the writer's connection and on the readers'.
#[test]
fn large_answers_come_through_whole_on_every_connection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fresh_store(dir.path(), "line");
    let big: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
    let written = big.clone();
    store
        .transact_blocking(move |tx| {
            for i in 0..5000 {
                tx.put(&format!("k/{i:05}"), &format!("value {i}"))?;
            }
            tx.put_raw("k/big", &written)?;
            Ok::<_, paraph::store::StoreError>(())
        })
        .expect("write");
    // Read back inside a mutation (the writer's connection)...
    let seen = store
        .transact_blocking(|tx| {
            let keys = tx.scan_keys("k/", "", 10_000)?;
            let big = tx.get_raw("k/big")?.map(|v| v.len());
            Ok::<_, paraph::store::StoreError>((keys.len(), big))
        })
        .expect("read in a mutation");
    assert_eq!(seen, (5001, Some(3 << 20)));
    // ...and outside, from several threads at once (the readers' pool).
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let all = store.scan_raw("k/", None, 10_000).expect("scan");
                    assert_eq!(all.len(), 5001);
                    let keys: Vec<String> = (0..3000).map(|i| format!("k/{i:05}")).collect();
                    let many: Vec<Option<String>> = store.get_many(&keys).expect("get_many");
                    assert_eq!(many.len(), 3000);
                    assert_eq!(many[2999].as_deref(), Some("value 2999"));
                    assert!(many.iter().all(Option::is_some));
                    let raw = store.get_raw("k/big").expect("get").expect("present");
                    assert!(raw == big[..], "the large value is whole");
                })
            })
            .collect();
        for h in handles {
            h.join().expect("reader thread");
        }
    });
}

/// What a mutation says it will read is fetched with its group's lock (see `Reads`): it must
/// see exactly what reading without saying sees, whichever replica last changed the records,
/// inside and outside the declared range, and for a range too long to be fetched whole.
#[test]
fn declared_reads_see_what_undeclared_reads_see_across_replicas() {
    use paraph::store::{Reads, StoreError, Tx};
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (url, _) = fresh_schema("reads");
    let options = paraph::store::PgOptions {
        url,
        pool_size: 2,
        statement_timeout: std::time::Duration::from_secs(60),
        connect_wait: Some(std::time::Duration::from_secs(20)),
    };
    paraph::store::migrate(&options).expect("migrate");
    let a = paraph::store::Store::open_postgres(dir_a.path(), &options).expect("replica a");
    let b = paraph::store::Store::open_postgres(dir_b.path(), &options).expect("replica b");
    a.transact_blocking(|tx| {
        for k in [
            "r/a/01",
            "r/a/03",
            "r/a/05",
            "r/a/07",
            "r/a/09",
            "r/b/01",
            "one/present",
        ] {
            tx.put(k, &k.to_owned())?;
        }
        for i in 0..100 {
            tx.put(&format!("many/{i:03}"), &i)?;
        }
        Ok::<_, StoreError>(())
    })
    .expect("write on a");
    let look = |tx: &mut Tx<'_>| {
        let keys = tx.scan_keys("r/a/", "r/a/03", 100)?;
        let floor_in = tx.floor_raw("r/a/", "r/a/08")?.map(|(k, _)| k.to_vec());
        let floor_out = tx.floor_raw("r/a/", "r/a/02")?.map(|(k, _)| k.to_vec());
        let many = tx.scan_keys("many/", "", 1000)?.len();
        let values: Vec<Option<String>> = [
            "one/present",
            "one/absent",
            "one/late",
            "r/a/06",
            "never/read",
        ]
        .iter()
        .map(|k| tx.get::<String>(k))
        .collect::<Result<_, _>>()?;
        Ok::<_, StoreError>((keys, floor_in, floor_out, many, values))
    };
    a.transact_blocking(|tx| tx.scan_keys("r/a/", "", 100).map(|_| ()))
        .expect("first look on a");
    // Replica b changes the range and the keys.
    b.transact_blocking(|tx| {
        tx.remove("r/a/05")?;
        tx.remove("r/a/07")?;
        tx.put("r/a/06", &"six".to_owned())?;
        tx.put("r/a/08", &"eight".to_owned())?;
        tx.put("one/present", &"changed".to_owned())?;
        tx.put("one/late", &"late".to_owned())?;
        tx.put("many/100", &100)?;
        Ok::<_, StoreError>(())
    })
    .expect("write on b");
    let reads = Reads::new()
        .key("one/present")
        .key("one/absent")
        .key("one/late")
        .key("r/a/06")
        .key("never/read")
        .range("r/a/", "r/a/03")
        .range("many/", "many/");
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let declared = rt
        .block_on(a.transact_reading(reads, look))
        .expect("declared");
    let undeclared = a.transact_blocking(look).expect("undeclared");
    assert_eq!(declared, undeclared);
    let expected = (
        vec!["03".to_owned(), "06".into(), "08".into(), "09".into()],
        Some(b"r/a/08".to_vec()),
        Some(b"r/a/01".to_vec()),
        101,
        vec![
            Some("changed".to_owned()),
            None,
            Some("late".to_owned()),
            Some("six".to_owned()),
            None,
        ],
    );
    assert_eq!(declared, expected);
}

/// Counts the tests' database's sessions of `application` that use TLS and that do not.
fn sessions_by_tls(application: &str) -> (u32, u32) {
    let count = |ssl: bool| -> u32 {
        sql(&format!(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
             WHERE a.application_name = '{application}' AND s.ssl = {ssl}"
        ))[0]
            .parse()
            .expect("a count")
    };
    (count(true), count(false))
}

/// The link to the database is secured as the URL's `sslmode` says, with libpq's meaning:
/// `verify-full` takes the server's certificate only from the CA named by `sslrootcert` and
/// for the host name the URL connects to; `verify-ca` checks the chain only; `disable` sends
/// everything in clear. A database whose certificate is refused is refused at once, with the
/// reason, instead of being waited for. The tests' database serves a certificate for the name
/// `localhost` only, from a CA of its own.
#[test]
fn the_database_link_is_encrypted_and_its_certificate_checked_as_the_url_says() {
    let ca = common::test_pg_ca().to_string_lossy().into_owned();
    let other_ca = certs().join("chain.pem").to_string_lossy().into_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let (url, _) = fresh_schema("tls");
    assert!(
        url.contains("@127.0.0.1:"),
        "the tests' database is reached at 127.0.0.1: {url}"
    );
    let by_name = url.replacen("@127.0.0.1:", "@localhost:", 1);

    // Serves the store at `url` from the data directory `name` and counts its database
    // sessions over TLS and in clear.
    let sessions_of_a_server = |url: &str, name: &str| {
        let data = dir.path().join(name);
        let served = format!("{url}&application_name=paraph_{name}");
        let (mut server, _, addr) = serve(
            dir.path(),
            &[
                "--data",
                &data.to_string_lossy(),
                "--store",
                &served,
                "--listen",
                "127.0.0.1:0",
            ],
        );
        assert!(addr.is_some(), "{}", server_log(dir.path()));
        let counted = sessions_by_tls(&format!("paraph_{name}"));
        server.terminate(STEP_TIMEOUT);
        counted
    };

    // verify-full under the certificate's name: migrated and served over TLS only.
    let full = format!("{by_name}&sslmode=verify-full&sslrootcert={ca}");
    paraph(dir.path(), &["admin", "migrate", "--store", &full]).ok();
    let (tls, clear) = sessions_of_a_server(&full, "tls_full");
    assert!(
        tls >= 2 && clear == 0,
        "{tls} sessions over TLS, {clear} in clear"
    );

    // disable: in clear (the count above could tell them apart). A schema of its own (a
    // replica of the first would need its audit key).
    let (clear_url, _) = fresh_schema("tlsoff");
    let clear_url = format!("{clear_url}&sslmode=disable");
    paraph(dir.path(), &["admin", "migrate", "--store", &clear_url]).ok();
    let (tls, clear) = sessions_of_a_server(&clear_url, "tls_off");
    assert!(
        tls == 0 && clear >= 2,
        "{tls} sessions over TLS, {clear} in clear"
    );

    // verify-ca does not look at the name; verify-full does.
    let by_address = format!("{url}&sslmode=verify-ca&sslrootcert={ca}");
    paraph(dir.path(), &["admin", "migrate", "--store", &by_address]).ok();
    let wrong_name = format!("{url}&sslmode=verify-full&sslrootcert={ca}");
    let out = paraph(dir.path(), &["admin", "migrate", "--store", &wrong_name]);
    assert_ne!(
        out.code,
        Some(0),
        "a certificate for another name was accepted"
    );
    let said = out.stderr.to_lowercase();
    assert!(
        said.contains("certificate is refused") && said.contains("address mismatch"),
        "{}",
        out.stderr
    );

    // A CA that did not issue the database's certificate: refused, and serve stops at once
    // rather than waiting for a database that will never be accepted.
    let impostor = format!("{by_name}&sslmode=verify-full&sslrootcert={other_ca}");
    let out = paraph(dir.path(), &["admin", "migrate", "--store", &impostor]);
    assert_ne!(
        out.code,
        Some(0),
        "a certificate from another CA was accepted"
    );
    assert!(
        out.stderr.contains("certificate is refused")
            && out
                .stderr
                .contains("unable to get local issuer certificate"),
        "{}",
        out.stderr
    );
    let data = dir.path().join("impostor");
    let (mut server, _, addr) = serve(
        dir.path(),
        &[
            "--data",
            &data.to_string_lossy(),
            "--store",
            &impostor,
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert!(
        addr.is_none(),
        "served a database whose certificate is refused"
    );
    assert!(!server.terminate(STEP_TIMEOUT).success());
    assert!(
        server_log(dir.path()).contains("certificate is refused"),
        "{}",
        server_log(dir.path())
    );

    // A verifying mode without its CA is refused by name.
    let out = paraph(
        dir.path(),
        &[
            "admin",
            "migrate",
            "--store",
            &format!("{by_name}&sslmode=verify-full"),
        ],
    );
    assert_ne!(out.code, Some(0));
    assert!(out.stderr.contains("sslrootcert"), "{}", out.stderr);
}
