//! Test harness: a real paraph server on 127.0.0.1:0 over a temporary sled directory, driven by
//! the generated gRPC clients. The clock is a `ManualClock` the tests set.
#![allow(dead_code)]

pub mod cli;
pub mod signing;
#[allow(unused_imports)]
pub use signing::*;

use paraph::clock::ManualClock;
use paraph::config::Settings;
use paraph::domain::Timestamp;
use paraph::proto::{
    self, admin_service_client::AdminServiceClient, circuit_service_client::CircuitServiceClient,
    delegation_service_client::DelegationServiceClient,
    document_service_client::DocumentServiceClient,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use tonic::metadata::MetadataValue;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

pub const T0: Timestamp = Timestamp(1_767_225_600); // 2026-01-01T00:00:00Z

#[derive(Clone)]
pub struct Auth {
    token: MetadataValue<tonic::metadata::Ascii>,
    tenant: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        req.metadata_mut()
            .insert("authorization", self.token.clone());
        if let Some(t) = &self.tenant {
            req.metadata_mut().insert("x-paraph-tenant", t.clone());
        }
        Ok(req)
    }
}

pub type Admin = AdminServiceClient<InterceptedService<Channel, Auth>>;
pub type Circuits = CircuitServiceClient<InterceptedService<Channel, Auth>>;
pub type Docs = DocumentServiceClient<InterceptedService<Channel, Auth>>;
pub type Dele = DelegationServiceClient<InterceptedService<Channel, Auth>>;

pub struct TestServer {
    pub addr: SocketAddr,
    pub operator: String,
    pub clock: ManualClock,
    pub dir: Option<tempfile::TempDir>,
    /// The service, for running a scheduler pass at a chosen instant (None when attached).
    pub svc: Option<Arc<paraph::service::Paraph>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), paraph::server::ServerError>>>,
    channel: Channel,
}

/// An empty settings file in `dir` (created if needed), for `--config`: a `paraph` process a
/// test starts reads its settings from there and from its flags, never from a `paraph.toml`
/// that happens to sit in its working directory (a developer's, at the repository root).
pub fn isolated_config(dir: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).expect("create the directory of the settings file");
    let file = dir.join("isolated-settings.toml");
    std::fs::write(
        &file,
        "# The tests' servers: every setting comes from their flags.\n",
    )
    .expect("write the isolated settings file");
    file
}

/// The storage engine the in-process servers of the tests use: `PARAPH_TEST_ENGINE` (`sled`
/// or `redb`), else the default. CI runs the tests once more with `redb`.
pub fn test_engine() -> Option<paraph::store::EngineKind> {
    match std::env::var("PARAPH_TEST_ENGINE").as_deref() {
        Err(_) | Ok("") => None,
        Ok("sled") => Some(paraph::store::EngineKind::Sled),
        Ok("redb") => Some(paraph::store::EngineKind::Redb),
        Ok(other) => panic!("PARAPH_TEST_ENGINE={other}: expected sled or redb"),
    }
}

/// Whether the tests keep their stores in PostgreSQL: `PARAPH_TEST_STORE=postgres` (CI runs
/// the tests a third time so). The database is `PARAPH_TEST_PG_URL`, else a PostgreSQL the
/// tests start themselves (see [`test_pg_base`]).
pub fn on_postgres() -> bool {
    match std::env::var("PARAPH_TEST_STORE").as_deref() {
        Err(_) | Ok("") | Ok("embedded") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("PARAPH_TEST_STORE={other}: expected postgres or embedded"),
    }
}

/// The database of the tests on PostgreSQL: `PARAPH_TEST_PG_URL`, else the tests' own.
pub fn test_pg_base() -> String {
    match std::env::var("PARAPH_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => local_postgres(),
    }
}

/// The CA that issued the certificate of the tests' database (which serves TLS for the name
/// `localhost` only): `PARAPH_TEST_PG_CA` with `PARAPH_TEST_PG_URL`, else the tests' own.
pub fn test_pg_ca() -> std::path::PathBuf {
    match std::env::var("PARAPH_TEST_PG_URL") {
        Ok(u) if !u.is_empty() => std::env::var("PARAPH_TEST_PG_CA")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|_| {
                panic!(
                    "PARAPH_TEST_PG_URL names the tests' database: PARAPH_TEST_PG_CA must name \
                     the CA of its TLS certificate (for the name localhost; .ci/run makes both)"
                )
            }),
        _ => {
            local_postgres();
            local_postgres_dir().join("ca.pem")
        }
    }
}

fn local_postgres_dir() -> std::path::PathBuf {
    use sha2::Digest as _;
    let tag = hex::encode(&sha2::Sha256::digest(env!("CARGO_TARGET_TMPDIR").as_bytes())[..6]);
    std::env::temp_dir().join(format!("paraph-test-postgres-{tag}"))
}

/// Without `PARAPH_TEST_PG_URL`: a PostgreSQL of the tests' own, started on first need (its
/// programs in `PARAPH_TEST_PG_BIN`, Debian's for version 15 by default) in a directory of
/// the system's temporary directory named after this build, and left running for the next
/// tests and runs (`pg_ctl -D DIR/data stop` stops it; DIR is in the panic message of a
/// failure and in `DIR/port`'s path). Test processes running at once agree through a file
/// lock: one starts it, the others wait and use it.
fn local_postgres() -> String {
    use sha2::Digest as _;
    use std::io::Write as _;
    let tag = hex::encode(&sha2::Sha256::digest(env!("CARGO_TARGET_TMPDIR").as_bytes())[..6]);
    let dir = local_postgres_dir();
    let url = |port: &str| format!("postgresql://postgres@127.0.0.1:{port}/paraph_tests");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join(format!("paraph-test-postgres-{tag}.lock")))
        .expect("the local test PostgreSQL's lock file");
    fs2::FileExt::lock_exclusive(&lock).expect("lock the local test PostgreSQL");
    if let Ok(port) = std::fs::read_to_string(dir.join("port")) {
        let port = port.trim().to_owned();
        if std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_ok() {
            if dir.join("ca.pem").exists() {
                return url(&port);
            }
            // Started by an older version of the tests, without TLS: replaced.
            let _ = std::process::Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!(
                    "{}/pg_ctl",
                    std::env::var("PARAPH_TEST_PG_BIN")
                        .unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into())
                ))
                .args([
                    "-D",
                    &dir.join("data").to_string_lossy(),
                    "-m",
                    "fast",
                    "-w",
                    "stop",
                ])
                .output();
        }
    }
    let bin =
        std::env::var("PARAPH_TEST_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let root = unsafe { libc::geteuid() } == 0;
    // PostgreSQL refuses to run as root: then as the `postgres` user, which owns the directory.
    let run = |program: &str, args: &[&str]| {
        let program = format!("{bin}/{program}");
        let out = if root {
            std::process::Command::new("runuser")
                .args(["-u", "postgres", "--", &program])
                .args(args)
                .output()
        } else {
            std::process::Command::new(&program).args(args).output()
        };
        let out = out.unwrap_or_else(|e| {
            panic!("the PostgreSQL tests need {program} (or PARAPH_TEST_PG_URL): {e}")
        });
        assert!(
            out.status.success(),
            "{program} {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("the local test PostgreSQL's directory");
    if root {
        let ok = std::process::Command::new("chown")
            .args(["postgres:", &dir.to_string_lossy()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown postgres {}", dir.display());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
        .to_string();
    let data = dir.join("data");
    let (data_s, dir_s) = (data.to_string_lossy(), dir.to_string_lossy());
    run("initdb", &["-D", &data_s, "-A", "trust", "-U", "postgres"]);
    // The database's certificate is for the name localhost only (see `test_pg_ca`).
    make_tls_material_for(&dir, "DNS:localhost");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("server.key's mode");
    }
    if root {
        let ok = std::process::Command::new("chown")
            .args(["postgres:", &dir.join("server.key").to_string_lossy()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "chown postgres {}/server.key", dir.display());
    }
    let options = format!(
        "-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c max_connections=300 \
         -c fsync=on -c synchronous_commit=on -c ssl=on -c ssl_cert_file={dir_s}/server.pem \
         -c ssl_key_file={dir_s}/server.key"
    );
    let log = dir.join("log");
    run(
        "pg_ctl",
        &[
            "-D",
            &data_s,
            "-l",
            &log.to_string_lossy(),
            "-w",
            "-t",
            "60",
            "start",
            "-o",
            &options,
        ],
    );
    run(
        "createdb",
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            "paraph_tests",
        ],
    );
    let mut f = std::fs::File::create(dir.join("port.partial")).expect("port file");
    f.write_all(port.as_bytes()).expect("port file");
    std::fs::rename(dir.join("port.partial"), dir.join("port")).expect("port file");
    url(&port)
}

/// The `[store] url` of the data directory `data` when the tests run on PostgreSQL: a schema
/// of its own (named after the directory's path), created and migrated on first use, so that
/// every data directory of every test is a separate store, as a directory of its own is on
/// the embedded engines. `None` on the embedded engines.
pub fn test_store_url(data: &std::path::Path) -> Option<String> {
    on_postgres().then(|| pg_store_url(data))
}

/// The `[store] url` of a schema of its own for the data directory `data` in the tests'
/// database ([`test_pg_base`]), whatever `PARAPH_TEST_STORE` says: for the tests that only
/// make sense on PostgreSQL. Panics, saying so, when no PostgreSQL answers there.
pub fn pg_store_url(data: &std::path::Path) -> String {
    pg_schema_url(&test_pg_base(), data)
}

/// A schema of its own for the data directory `data` in the database at `base`, created and
/// migrated on first use (see [`test_store_url`]).
pub fn pg_schema_url(base: &str, data: &std::path::Path) -> String {
    use sha2::Digest as _;
    static MIGRATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let absolute = std::path::absolute(data).expect("absolute data path");
    let digest = sha2::Sha256::digest(absolute.to_string_lossy().as_bytes());
    let schema = format!("t_{}", hex::encode(&digest[..10]));
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-csearch_path%3D{schema}");
    let mut done = MIGRATED.lock().unwrap_or_else(|e| e.into_inner());
    let key = format!("{base} {schema}");
    if !done.contains(&key) {
        if let Err(e) = paraph::store::migrate(&paraph::store::PgOptions {
            url: url.clone(),
            pool_size: 1,
            statement_timeout: std::time::Duration::from_secs(60),
            connect_wait: Some(std::time::Duration::from_secs(20)),
        }) {
            panic!(
                "these tests need a PostgreSQL: none could be used at {} ({e}); start one, \
                 or name another with PARAPH_TEST_PG_URL",
                paraph::store::redact(base)
            );
        }
        done.push(key);
    }
    url
}

/// A [`TestServer::start_with`] tweak for the tests of what only the embedded engines have
/// (their files, the value log, compaction, conversion, a full disk): the store stays in the
/// data directory, on the engine of [`test_engine`], also when the tests run on PostgreSQL.
pub fn embedded_store(settings: &mut Settings) {
    settings.store.url = None;
}

/// The store of the data directory `data` of a stopped server, opened by the test itself where
/// the tests keep it: the PostgreSQL schema of [`test_store_url`], else the directory.
pub fn open_test_store(data: &std::path::Path) -> paraph::store::Store {
    match test_store_url(data) {
        Some(url) => paraph::store::Store::open_postgres(
            data,
            &paraph::store::PgOptions {
                url,
                pool_size: 1,
                statement_timeout: std::time::Duration::from_secs(60),
                connect_wait: Some(std::time::Duration::from_secs(20)),
            },
        )
        .expect("open the test's PostgreSQL store"),
        None => paraph::store::Store::open(data).expect("open the data directory"),
    }
}

/// Runs `statement` with `params` in the PostgreSQL schema of the data directory `data` (the
/// tests on PostgreSQL only), as someone with access to the database could: returns the number
/// of rows it changed.
pub async fn run_sql(
    data: &std::path::Path,
    statement: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> u64 {
    let url = test_store_url(data).expect("the tests run on PostgreSQL");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test database");
    let driver = tokio::spawn(connection);
    let changed = client
        .execute(statement, params)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
    drop(client);
    let _ = driver.await;
    changed
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(tempfile::tempdir().unwrap(), None, |_| {}).await
    }

    /// Starts on `dir` (with the engine of [`test_engine`] unless `tweak` says otherwise);
    /// `operator` is the token from an earlier start of the same directory.
    pub async fn start_with(
        dir: tempfile::TempDir,
        operator: Option<String>,
        tweak: impl FnOnce(&mut Settings),
    ) -> TestServer {
        let mut settings = Settings {
            data: dir.path().join("data"),
            engine: test_engine(),
            ..Settings::default()
        };
        settings.store.url = test_store_url(&settings.data);
        tweak(&mut settings);
        let clock = ManualClock::new(T0);
        let (svc, boot) = paraph::server::open(&settings, Arc::new(clock.clone())).unwrap();
        let operator = match (boot, operator) {
            (Some(b), None) => b.token,
            (None, Some(t)) => t,
            (b, o) => panic!(
                "bootstrap {:?} with operator {:?}",
                b.is_some(),
                o.is_some()
            ),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = tokio::sync::oneshot::channel();
        let service = svc.clone();
        let handle = tokio::spawn(async move {
            paraph::server::serve(svc, &settings, listener, async {
                let _ = rx.await;
            })
            .await
        });
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        TestServer {
            addr,
            operator,
            clock,
            dir: Some(dir),
            svc: Some(service),
            stop: Some(stop),
            handle: Some(handle),
            channel,
        }
    }

    /// Connects to a server running elsewhere (another process).
    pub async fn attach(addr: SocketAddr, operator: String) -> TestServer {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        TestServer {
            addr,
            operator,
            clock: ManualClock::new(T0),
            dir: None,
            svc: None,
            stop: None,
            handle: None,
            channel,
        }
    }

    /// Sets the clock and runs a scheduler pass at that instant (the server's own scheduler
    /// also wakes on the change; passes are serialised, so this returns once it is done).
    pub async fn at(&self, t: Timestamp) -> paraph::service::delegation::TickReport {
        self.clock.set(t);
        self.svc.as_ref().unwrap().tick().await.unwrap()
    }

    /// Graceful stop; returns the data directory for a restart.
    pub async fn stop(mut self) -> (tempfile::TempDir, String) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        (self.dir.take().unwrap(), self.operator.clone())
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn auth(token: &str, tenant: Option<&str>) -> Auth {
        Auth {
            token: format!("Bearer {token}").parse().unwrap(),
            tenant: tenant.map(|t| t.parse().unwrap()),
        }
    }

    pub fn admin(&self, token: &str, tenant: Option<&str>) -> Admin {
        AdminServiceClient::with_interceptor(self.channel(), Self::auth(token, tenant))
    }
    pub fn circuits(&self, token: &str, tenant: Option<&str>) -> Circuits {
        CircuitServiceClient::with_interceptor(self.channel(), Self::auth(token, tenant))
    }
    pub fn docs(&self, token: &str, tenant: Option<&str>) -> Docs {
        DocumentServiceClient::with_interceptor(self.channel(), Self::auth(token, tenant))
    }

    /// The content of document `id` as it reads now (its latest revision), read by `token`.
    pub async fn content(&self, token: &str, id: &str) -> Vec<u8> {
        let mut s = self
            .docs(token, None)
            .get_content(proto::GetContentRequest {
                id: id.into(),
                revision: None,
            })
            .await
            .unwrap()
            .into_inner();
        let mut out = Vec::new();
        while let Some(c) = s.message().await.unwrap() {
            out.extend(c.data);
        }
        out
    }
}

/// A delegation client acting with `token` (in the token's own tenant).
pub fn dele(srv: &TestServer, token: &str) -> Dele {
    DelegationServiceClient::with_interceptor(srv.channel(), auth(token))
}

/// A protobuf timestamp at `t` seconds.
pub fn at(t: i64) -> Option<proto::Timestamp> {
    Some(proto::Timestamp { seconds: t })
}

/// An interceptor adding `token` as bearer.
pub fn auth(token: &str) -> Auth {
    Auth {
        token: format!("Bearer {token}").parse().unwrap(),
        tenant: None,
    }
}

/// An interceptor adding `token` as bearer and naming `tenant` (for the platform operator).
pub fn auth_in(token: &str, tenant: &str) -> Auth {
    Auth {
        token: format!("Bearer {token}").parse().unwrap(),
        tenant: Some(tenant.parse().unwrap()),
    }
}

/// A tenant with named users and their tokens.
pub struct Org {
    pub tenant: String,
    pub tokens: HashMap<String, String>,
}

pub fn role(r: proto::Role) -> i32 {
    r as i32
}

impl Org {
    /// Creates tenant `tenant` (unless it is the bootstrap tenant) with: admin `boss`, officers
    /// alice, bob, carol, dave, submitter `finance`, auditor `audit`, and a user `erin` who is
    /// both submitter and officer.
    pub async fn create(srv: &TestServer, tenant: &str) -> Org {
        let op = srv.admin(&srv.operator, None);
        let mut tokens = HashMap::new();
        if tenant != "default" {
            let r = op
                .clone()
                .create_tenant(proto::CreateTenantRequest {
                    id: tenant.into(),
                    display_name: format!("Commune {tenant}"),
                    admin_user: "boss".into(),
                    idempotency_key: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            tokens.insert("boss".to_string(), r.admin_token.unwrap().token);
        } else {
            let mut a = srv.admin(&srv.operator, Some(tenant));
            a.create_user(proto::CreateUserRequest {
                name: "boss".into(),
                display_name: String::new(),
                roles: vec![role(proto::Role::Admin)],
                idempotency_key: String::new(),
            })
            .await
            .unwrap();
            let t = a
                .issue_token(proto::IssueTokenRequest {
                    user: "boss".into(),
                    idempotency_key: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            tokens.insert("boss".to_string(), t.token.unwrap().token);
        }
        let mut admin = srv.admin(&tokens["boss"], None);
        let users: &[(&str, &[proto::Role])] = &[
            ("alice", &[proto::Role::Officer]),
            ("bob", &[proto::Role::Officer]),
            ("carol", &[proto::Role::Officer]),
            ("dave", &[proto::Role::Officer]),
            ("finance", &[proto::Role::Submitter]),
            ("audit", &[proto::Role::Auditor]),
            ("erin", &[proto::Role::Submitter, proto::Role::Officer]),
        ];
        for (name, roles) in users {
            admin
                .create_user(proto::CreateUserRequest {
                    name: (*name).into(),
                    display_name: format!("{name} display"),
                    roles: roles.iter().map(|r| role(*r)).collect(),
                    idempotency_key: String::new(),
                })
                .await
                .unwrap();
            let t = admin
                .issue_token(proto::IssueTokenRequest {
                    user: (*name).into(),
                    idempotency_key: String::new(),
                })
                .await
                .unwrap()
                .into_inner();
            tokens.insert(name.to_string(), t.token.unwrap().token);
        }
        Org {
            tenant: tenant.into(),
            tokens,
        }
    }

    pub fn token(&self, user: &str) -> &str {
        &self.tokens[user]
    }
}

pub fn step(
    kind: proto::StepKind,
    actors: &[&str],
    mode: proto::StepMode,
    quorum: u32,
) -> proto::StepDefinition {
    proto::StepDefinition {
        kind: kind as i32,
        actors: actors.iter().map(|a| a.to_string()).collect(),
        mode: mode as i32,
        quorum,
        ..Default::default()
    }
}

pub fn visa(actors: &[&str]) -> proto::StepDefinition {
    step(proto::StepKind::Visa, actors, proto::StepMode::All, 0)
}

pub async fn create_circuit(
    srv: &TestServer,
    org: &Org,
    name: &str,
    steps: Vec<proto::StepDefinition>,
) -> proto::Circuit {
    srv.circuits(org.token("boss"), None)
        .create_circuit(proto::CreateCircuitRequest {
            name: name.into(),
            fallback: String::new(),
            steps,
            idempotency_key: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

pub fn header(circuit: &str, title: &str, meta: &[(&str, &str)]) -> proto::SubmitHeader {
    proto::SubmitHeader {
        r#type: proto::DocumentType::Mandate as i32,
        title: title.into(),
        circuit: circuit.into(),
        metadata: meta
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        file_name: "mandat.pdf".into(),
        // The tests' stand-in contents start with `%PDF-` without being PDFs: CAdES, not the
        // `auto` choice (PAdES, which refuses what does not parse).
        signature_format: "cades".into(),
        idempotency_key: String::new(),
    }
}

/// The finance officer submits the file `file_name` (`content`, titled `title`) to `circuit`
/// with the signature format `format`.
pub async fn submit_file(
    srv: &TestServer,
    org: &Org,
    circuit: &str,
    (title, file_name): (&str, &str),
    format: &str,
    content: &[u8],
) -> Result<proto::Document, Status> {
    let mut h = header(circuit, title, &[]);
    h.file_name = file_name.into();
    h.signature_format = format.into();
    let mut d = srv.docs(org.token("finance"), None);
    submit_raw(&mut d, h, content, 64 * 1024).await
}

/// Submits `content` in chunks of `chunk` bytes.
pub async fn submit_raw(
    docs: &mut Docs,
    header: proto::SubmitHeader,
    content: &[u8],
    chunk: usize,
) -> Result<proto::Document, Status> {
    use proto::submit_document_request::Part;
    let mut msgs = vec![proto::SubmitDocumentRequest {
        part: Some(Part::Header(header)),
    }];
    for c in content.chunks(chunk.max(1)) {
        msgs.push(proto::SubmitDocumentRequest {
            part: Some(Part::Chunk(c.to_vec())),
        });
    }
    docs.submit_document(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

pub async fn submit(
    srv: &TestServer,
    org: &Org,
    circuit: &str,
    meta: &[(&str, &str)],
) -> proto::Document {
    let mut d = srv.docs(org.token("finance"), None);
    submit_raw(
        &mut d,
        header(circuit, "Mandat 2026-001", meta),
        b"%PDF-1.7 test content",
        1024,
    )
    .await
    .unwrap()
}

pub async fn approve(
    srv: &TestServer,
    org: &Org,
    who: &str,
    id: &str,
    step: Option<u32>,
) -> Result<proto::Document, Status> {
    srv.docs(org.token(who), None)
        .approve(proto::ApproveRequest {
            id: id.into(),
            step,
            comment: String::new(),
            idempotency_key: String::new(),
        })
        .await
        .map(|r| r.into_inner())
}

pub async fn get(
    srv: &TestServer,
    org: &Org,
    who: &str,
    id: &str,
) -> Result<proto::Document, Status> {
    srv.docs(org.token(who), None)
        .get_document(proto::GetDocumentRequest { id: id.into() })
        .await
        .map(|r| r.into_inner())
}

/// The caller's inbox items (one page of up to 500).
pub async fn inbox_items(srv: &TestServer, org: &Org, who: &str) -> Vec<proto::InboxItem> {
    srv.docs(org.token(who), None)
        .list_inbox(proto::ListInboxRequest {
            page_size: 500,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .items
}

pub async fn inbox(srv: &TestServer, org: &Org, who: &str) -> Vec<String> {
    inbox_items(srv, org, who)
        .await
        .into_iter()
        .map(|i| i.id)
        .collect()
}

/// The next event of a watch stream (bounded wait).
pub async fn next_event(s: &mut tonic::Streaming<proto::DocumentEvent>) -> proto::DocumentEvent {
    tokio::time::timeout(std::time::Duration::from_secs(10), s.message())
        .await
        .expect("no event within 10 s")
        .unwrap()
        .expect("stream ended")
}

pub fn state(d: &proto::Document) -> proto::DocumentState {
    proto::DocumentState::try_from(d.state).unwrap()
}

pub fn step_status(d: &proto::Document, i: usize) -> proto::StepStatus {
    proto::StepStatus::try_from(d.steps[i].status).unwrap()
}

pub fn history_kinds(d: &proto::Document) -> Vec<String> {
    d.history.iter().map(|h| h.kind.clone()).collect()
}

#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(r: Result<T, Status>, code: Code, needle: &str) {
    match r {
        Ok(v) => panic!("expected {code:?} ({needle}), got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "{}", s.message());
            assert!(
                s.message().contains(needle),
                "message {:?} should contain {needle:?}",
                s.message()
            );
        }
    }
}

/// Makes a CA, a server certificate for 127.0.0.1/localhost and a client certificate with the
/// openssl command line (`ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key` in `dir`).
pub fn make_tls_material(dir: &std::path::Path) {
    make_tls_material_for(dir, "DNS:localhost,IP:127.0.0.1");
}

/// [`make_tls_material`] with the server certificate's subjectAltName `names`.
pub fn make_tls_material_for(dir: &std::path::Path, names: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "3650",
        "-subj",
        "/CN=paraph test CA",
        "-addext",
        "basicConstraints=critical,CA:true",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        format!("subjectAltName={names}\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:false\n"),
    )
    .expect("write");
    std::fs::write(
        dir.join("client.ext"),
        "extendedKeyUsage=clientAuth\nbasicConstraints=CA:false\n",
    )
    .expect("write");
    for who in ["server", "client"] {
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{who}.key"),
            "-out",
            &format!("{who}.csr"),
            "-subj",
            &format!("/CN={who}"),
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            &format!("{who}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{who}.pem"),
            "-days",
            "3650",
            "-extfile",
            &format!("{who}.ext"),
        ]);
    }
}
