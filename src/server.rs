//! Process wiring: opens the store, bootstraps it, serves the gRPC services (with health and
//! reflection, optional TLS and mTLS) and shuts down gracefully: stop accepting, let in-flight
//! calls finish, end watch streams, flush the store.

use crate::clock::Clock;
use crate::config::Settings;
use crate::grpc::Api;
use crate::proto::{
    admin_service_server::AdminServiceServer, audit_service_server::AuditServiceServer,
    circuit_service_server::CircuitServiceServer,
    delegation_service_server::DelegationServiceServer,
    document_service_server::DocumentServiceServer,
    signature_service_server::SignatureServiceServer,
};
use crate::service::{tenancy::Bootstrap, Limits, Paraph};
use crate::store::Store;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot open the data directory {path}: {source}")]
    Store {
        path: std::path::PathBuf,
        source: crate::store::StoreError,
    },
    #[error("cannot open the store in the database {url}: {source}")]
    Database {
        url: String,
        source: crate::store::StoreError,
    },
    #[error("bootstrap failed: {0}")]
    Bootstrap(crate::service::ServiceError),
    #[error("cannot read {what} {path}: {source}")]
    Tls {
        what: &'static str,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection: {0}")]
    Reflection(String),
    #[error("storage: {0}")]
    Flush(#[from] crate::store::StoreError),
    #[error("seal of tenant {tenant}: {reason}")]
    Seal { tenant: String, reason: String },
    #[error("check: {0}")]
    Check(String),
    #[error("settings: {0}")]
    Setting(String),
    #[error("demo setup failed: {0}")]
    Demo(String),
    #[error("operator token: {0}")]
    OperatorToken(String),
    #[error("audit key {path}: {reason}")]
    AuditKey {
        path: std::path::PathBuf,
        reason: String,
    },
    /// A start that failed, with what it means for the operator token.
    #[error("{source}; {hint}")]
    Start {
        source: Box<ServerError>,
        hint: String,
    },
}

impl ServerError {
    fn hint(self, hint: String) -> ServerError {
        ServerError::Start {
            source: Box::new(self),
            hint,
        }
    }
}

/// Reads the TLS files of the settings and builds their configuration, as serving will: a
/// missing or unreadable certificate or key fails here, before anything else happens.
fn check_tls(settings: &Settings) -> Result<(), ServerError> {
    if let Some(tls) = &settings.tls {
        let identity = Identity::from_pem(
            read("TLS certificate", &tls.cert)?,
            read("TLS key", &tls.key)?,
        );
        let mut cfg = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &tls.client_ca {
            cfg = cfg.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
        }
        Server::builder().tls_config(cfg)?;
    }
    Ok(())
}

/// Loads the audit key from the settings, or from `DATA/audit-key.pem`, generating and saving
/// it there (owner-only permissions) on the first start.
fn audit_key(settings: &Settings) -> Result<crate::audit::AuditKey, ServerError> {
    use crate::audit::AuditKey;
    let (path, generate) = match &settings.audit_key {
        Some(p) => (p.clone(), false),
        None => (settings.data.join("audit-key.pem"), true),
    };
    let fail = |reason: String| ServerError::AuditKey {
        path: path.clone(),
        reason,
    };
    match std::fs::read(&path) {
        Ok(pem) => AuditKey::from_pkcs8_pem(&pem).map_err(|e| fail(e.to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && generate => {
            let key = AuditKey::generate().map_err(|e| fail(e.to_string()))?;
            let pem = key.to_pkcs8_pem().map_err(|e| fail(e.to_string()))?;
            write_private(&path, &pem).map_err(|e| fail(e.to_string()))?;
            tracing::info!(path = %path.display(), "generated the audit key");
            Ok(key)
        }
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Writes a secret file readable by its owner only.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Opens the store in `settings.data` and initialises it on first use. Returns the service and,
/// on the very first start only, the bootstrap secrets to print once.
pub fn open(
    settings: &Settings,
    clock: Arc<dyn Clock>,
) -> Result<(Arc<Paraph>, Option<Bootstrap>), ServerError> {
    open_waiting(settings, clock, Some(DATABASE_WAIT))
}

/// How long a command other than `serve` waits for an unreachable database.
const DATABASE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// The store the settings name: PostgreSQL with `[store] url`, else the data directory's
/// engine. An unreachable database is waited for as `wait` says (`None`: for ever, with a log
/// line at each try: a replica started before its database comes up when it does).
pub fn open_store(
    settings: &Settings,
    wait: Option<std::time::Duration>,
) -> Result<Store, ServerError> {
    match settings.store.postgres(wait) {
        Some(options) => {
            Store::open_postgres(&settings.data, &options).map_err(|source| ServerError::Database {
                url: crate::store::redact(&options.url),
                source,
            })
        }
        None => {
            Store::open_with(&settings.data, settings.engine).map_err(|source| ServerError::Store {
                path: settings.data.clone(),
                source,
            })
        }
    }
}

/// [`open`], waiting for the database as [`open_store`] does.
pub fn open_waiting(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    wait: Option<std::time::Duration>,
) -> Result<(Arc<Paraph>, Option<Bootstrap>), ServerError> {
    let store = open_store(settings, wait)?;
    let mut svc = Paraph::new(Arc::new(store), clock, Limits::from_settings(settings));
    // The seals the data directory keeps (the demo's), unless the settings name another.
    let mut seals = crate::config::data_seals(&settings.data)
        .map_err(|e| ServerError::Setting(e.to_string()))?;
    for (tenant, seal) in &settings.seals {
        seals.insert(tenant.clone(), seal.clone());
    }
    for (tenant, seal) in &seals {
        let fail = |reason: String| ServerError::Seal {
            tenant: tenant.clone(),
            reason,
        };
        let id = crate::domain::TenantId::parse(tenant).map_err(|e| fail(e.to_string()))?;
        let password = seal.password().map_err(|e| fail(e.to_string()))?;
        let der =
            std::fs::read(&seal.p12).map_err(|e| fail(format!("{}: {e}", seal.p12.display())))?;
        let mut key =
            crate::service::signatures::SealKey::from_pkcs12(&der, &password).map_err(fail)?;
        key.pades = settings.pades.clone();
        svc = svc.with_seal(id, key);
    }
    svc = svc.with_audit_key(audit_key(settings)?);
    let svc = Arc::new(svc);
    let boot = svc
        .bootstrap_blocking(&settings.first_tenant)
        .map_err(ServerError::Bootstrap)?;
    if settings.store.url.is_some() {
        // Replicas share one database: a replica with another audit key than the others'
        // would sign their logs with a key their verifiers do not know.
        let other = svc
            .checkpoints_signed_by_another_key()
            .map_err(ServerError::Bootstrap)?;
        if let Some(tenant) = other {
            return Err(ServerError::AuditKey {
                path: settings
                    .audit_key
                    .clone()
                    .unwrap_or_else(|| settings.data.join("audit-key.pem")),
                reason: format!(
                    "it did not sign the stored checkpoint of tenant {tenant}: every replica \
                     on the database must use the same audit key (the audit_key setting)"
                ),
            });
        }
    }
    Ok((svc, boot))
}

fn read(what: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::Tls {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// Serves on `listener` until `shutdown` completes, then drains and flushes.
pub async fn serve(
    svc: Arc<Paraph>,
    settings: &Settings,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    settings
        .check()
        .map_err(|e| ServerError::Setting(e.to_string()))?;
    svc.relay_replica_notices();
    // Calls are authenticated on their headers before any body is read; bodies draw on one
    // budget for the whole server; calls and connections are bounded in number and time.
    let guard = crate::grpc::guard::GuardLayer::new(
        svc.clone(),
        crate::grpc::guard::Budget::new(
            settings.max_request_bytes_in_flight,
            std::time::Duration::from_millis(settings.request_budget_wait_ms),
        ),
        secs(settings.request_timeout_secs),
    );
    // One span per call with its method only: never metadata (tokens) nor payloads (documents).
    let mut builder = Server::builder()
        .trace_fn(|req| tracing::info_span!("grpc", method = %req.uri().path()))
        .max_concurrent_streams(settings.max_concurrent_streams)
        .http2_keepalive_interval(Some(secs(settings.http2_keepalive_interval_secs)))
        .http2_keepalive_timeout(Some(secs(settings.http2_keepalive_timeout_secs)))
        // Browsers speak gRPC-Web over HTTP/1.1 (or HTTP/2) to the same services.
        .accept_http1(true);
    if let Some(tls) = &settings.tls {
        let identity = Identity::from_pem(
            read("TLS certificate", &tls.cert)?,
            read("TLS key", &tls.key)?,
        );
        let mut cfg = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &tls.client_ca {
            cfg = cfg.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
        }
        builder = builder.tls_config(cfg)?;
    }
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<AdminServiceServer<Api>>().await;
    reporter.set_serving::<CircuitServiceServer<Api>>().await;
    reporter.set_serving::<DocumentServiceServer<Api>>().await;
    reporter.set_serving::<SignatureServiceServer<Api>>().await;
    reporter.set_serving::<DelegationServiceServer<Api>>().await;
    reporter.set_serving::<AuditServiceServer<Api>>().await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tokio::spawn(report_writable(svc.store().writable(), reporter.clone()));
    // Off (`reflection = false`), its calls answer UNIMPLEMENTED like any unknown service.
    // Both versions of the protocol: `grpc.reflection.v1`, and `v1alpha`, which many tools and
    // libraries (Python's grpcio-reflection among them) still speak.
    let (reflection, reflection_alpha) = if settings.reflection {
        let described = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(crate::proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let refused = |e: tonic_reflection::server::Error| ServerError::Reflection(e.to_string());
        (
            Some(described().build_v1().map_err(refused)?),
            Some(described().build_v1alpha().map_err(refused)?),
        )
    } else {
        (None, None)
    };

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let scheduler = tokio::spawn(scheduler(svc.clone(), stop_rx.clone()));
    let api = Api {
        svc: svc.clone(),
        stopping: stop_rx,
    };
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new calls, finishing in-flight ones");
        let _ = stop_tx.send(true);
    };
    // Every accepted connection gets TCP_NODELAY (small exchanges must not wait for delayed
    // ACKs) and TCP keepalive; accepting backs off when it fails (no descriptor left); a
    // connection with no call open for `idle_timeout_secs` is closed.
    let incoming = crate::grpc::conn::Incoming::new(
        listener,
        crate::grpc::conn::ConnOptions {
            idle: secs(settings.idle_timeout_secs),
            tcp_keepalive: secs(settings.tcp_keepalive_secs),
        },
    );
    // Outermost the web client's files (GET, no token), then gRPC-Web translated to gRPC, then
    // the gate: gRPC-Web calls are authenticated and budgeted like gRPC ones.
    builder
        .layer(crate::grpc::web::WebLayer)
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(guard)
        .add_service(health)
        .add_optional_service(reflection)
        .add_optional_service(reflection_alpha)
        .add_service(AdminServiceServer::new(api.clone()))
        .add_service(CircuitServiceServer::new(api.clone()))
        // SubmitDocumentInline carries a whole document in one message (the gate refuses a
        // longer one before reading it).
        .add_service(
            DocumentServiceServer::new(api.clone()).max_decoding_message_size(
                usize::try_from(
                    settings
                        .max_document_bytes
                        .saturating_add(crate::grpc::guard::INLINE_HEADER_ROOM),
                )
                .unwrap_or(usize::MAX),
            ),
        )
        // ValidateSignature carries the document inline: as large as a submission may be.
        .add_service(
            SignatureServiceServer::new(api.clone()).max_decoding_message_size(
                usize::try_from(settings.max_document_bytes)
                    .unwrap_or(usize::MAX)
                    .saturating_add(1024 * 1024),
            ),
        )
        .add_service(DelegationServiceServer::new(api.clone()))
        .add_service(AuditServiceServer::new(api).max_encoding_message_size(usize::MAX))
        .serve_with_incoming_shutdown(incoming, signal)
        .await?;
    if let Err(e) = scheduler.await {
        tracing::error!(error = %e, "scheduler task failed");
    }
    svc.store().flush().await?;
    tracing::info!("store flushed, stopped");
    Ok(())
}

fn secs(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n)
}

/// Reports the server NOT_SERVING while its store cannot write (a full disk) and SERVING again
/// once it recovers, for the whole server and each service.
async fn report_writable(
    mut writable: tokio::sync::watch::Receiver<bool>,
    reporter: tonic_health::server::HealthReporter,
) {
    loop {
        let status = if *writable.borrow_and_update() {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        for service in [
            "",
            <AdminServiceServer<Api> as tonic::server::NamedService>::NAME,
            <CircuitServiceServer<Api> as tonic::server::NamedService>::NAME,
            <DocumentServiceServer<Api> as tonic::server::NamedService>::NAME,
            <SignatureServiceServer<Api> as tonic::server::NamedService>::NAME,
            <DelegationServiceServer<Api> as tonic::server::NamedService>::NAME,
            <AuditServiceServer<Api> as tonic::server::NamedService>::NAME,
        ] {
            reporter.set_service_status(service, status).await;
        }
        if writable.changed().await.is_err() {
            return;
        }
    }
}

/// How often the scheduler looks for absences starting or ending and deadlines passing.
const SCHEDULER_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs the scheduler until the server stops: a pass every second, and at once whenever a
/// settable clock (tests) jumps. A failed pass is logged and retried at the next one.
async fn scheduler(svc: Arc<Paraph>, mut stopping: tokio::sync::watch::Receiver<bool>) {
    let mut changes = svc.clock_changes();
    let mut every = tokio::time::interval(SCHEDULER_PERIOD);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            alive = async {
                match changes.as_mut() {
                    Some(c) => c.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !alive {
                    changes = None;
                }
            }
            _ = stopping.changed() => break,
        }
        if *stopping.borrow() {
            break;
        }
        if let Err(e) = svc.tick().await {
            tracing::warn!(error = %e, "scheduler pass failed");
        }
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `paraph serve`: open, print the bootstrap secrets on first start, serve until a signal.
pub async fn run(settings: Settings, json: bool) -> Result<(), ServerError> {
    run_with(settings, json, None).await
}

/// `paraph serve [--demo]`: with `demo`, the demo tenant trusting the test PKI in that
/// directory is set up (see [`crate::demo`]).
pub async fn run_with(
    mut settings: Settings,
    json: bool,
    demo: Option<std::path::PathBuf>,
) -> Result<(), ServerError> {
    if let Some(certs) = &demo {
        crate::demo::add_seal(&mut settings, certs);
    }
    // Everything that can fail without touching the data directory comes first (settings, the
    // port, the TLS files): a start that fails there initialises nothing, and the operator
    // token is printed by the first start that succeeds.
    let fresh = crate::store::found_in(&settings.data).is_none();
    let before = |e: ServerError| {
        if fresh {
            e.hint(format!(
                "nothing was initialised in {dir}: the next start that succeeds prints the \
                 operator token (a lost one is replaced, with the server stopped, by \
                 `paraph admin operator-token --data {dir}`)",
                dir = settings.data.display()
            ))
        } else {
            e
        }
    };
    settings
        .check()
        .map_err(|e| before(ServerError::Setting(e.to_string())))?;
    let listener = TcpListener::bind(settings.listen).await.map_err(|source| {
        before(ServerError::Bind {
            addr: settings.listen,
            source,
        })
    })?;
    let addr = listener.local_addr().map_err(|source| {
        before(ServerError::Bind {
            addr: settings.listen,
            source,
        })
    })?;
    check_tls(&settings).map_err(before)?;
    let (svc, boot) =
        open_waiting(&settings, Arc::new(crate::clock::SystemClock), None).map_err(before)?;
    // From here on the directory may be initialised: a failure before the token is shown
    // leaves the offline recovery.
    let after = |e: ServerError| {
        if boot.is_some() {
            e.hint(format!(
                "the data directory {dir} was initialised but its operator token was not \
                 shown: with the server stopped, `paraph admin operator-token --data {dir}` \
                 issues one",
                dir = settings.data.display()
            ))
        } else {
            e
        }
    };
    let demo_text = match &demo {
        Some(certs) => {
            let info = crate::demo::setup(&svc, certs)
                .await
                .map_err(|e| after(ServerError::Demo(e.to_string())))?;
            crate::demo::keep_seal(&settings.data, certs)
                .map_err(|e| after(ServerError::Demo(e.to_string())))?;
            Some(crate::demo::instructions(&info, certs))
        }
        None => None,
    };
    // The server is about to serve: only now are the secrets announced.
    if let Some(b) = &boot {
        print_bootstrap(b, json);
    }
    if let Some(text) = demo_text {
        println!("{text}");
    }
    tracing::info!(%addr, data = %settings.data.display(), store = svc.store().kind_name(), tls = settings.tls.is_some(), "paraph listening");
    // A stable line for scripts and tests (the port may have been chosen by the system).
    println!("paraph listening on {addr}");
    serve(svc, &settings, listener, shutdown_signal()).await
}

/// Prints the first-start secrets, once.
pub fn print_bootstrap(b: &Bootstrap, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::json!({ "token": b.token, "tenant": b.tenant })
        );
    } else {
        println!("paraph initialised. Platform operator token (shown once, store it safely):");
        println!("  {}", b.token);
        println!("First tenant: {}", b.tenant);
    }
}

/// `paraph admin check`: verifies a stopped server's data directory end to end (see
/// [`crate::service::check`]). Refused while the directory is in use; never creates one.
pub fn admin_check(settings: &Settings) -> Result<crate::service::check::CheckReport, ServerError> {
    let fail = |source| ServerError::Store {
        path: settings.data.clone(),
        source,
    };
    if settings.store.url.is_none() && crate::store::found_in(&settings.data).is_none() {
        return Err(fail(crate::store::StoreError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "it holds no store",
        ))));
    }
    let store = open_store(settings, Some(DATABASE_WAIT))?;
    // The public key of the audit key, when it can be read: checkpoints are then verified.
    let path = match &settings.audit_key {
        Some(p) => p.clone(),
        None => settings.data.join("audit-key.pem"),
    };
    let key = match std::fs::read(&path) {
        Ok(pem) => Some(crate::audit::AuditKey::from_pkcs8_pem(&pem).map_err(|e| {
            ServerError::AuditKey {
                path: path.clone(),
                reason: e.to_string(),
            }
        })?),
        Err(_) => None,
    };
    crate::service::check::check_store(&store, key.as_ref().map(|k| k.public_key()))
        .map_err(|e| ServerError::Check(e.to_string()))
}

/// What `paraph admin copy` copied and verified.
#[derive(Debug, serde::Serialize)]
pub struct CopyReport {
    /// Records copied, by kind (the key's first segment).
    pub records: std::collections::BTreeMap<String, u64>,
    /// Bytes of record values copied.
    pub bytes: u64,
    /// Records read back from the database and found identical.
    pub verified: u64,
    /// Tenants whose audit log (every leaf, the root of its head and of its signed checkpoint)
    /// verified in the database.
    pub audit_logs_verified: u64,
}

impl std::fmt::Display for CopyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let total: u64 = self.records.values().sum();
        writeln!(f, "copied {total} records ({} bytes):", self.bytes)?;
        for (kind, n) in &self.records {
            writeln!(f, "  {kind:<16} {n}")?;
        }
        writeln!(f, "verified: {} records read back identical", self.verified)?;
        write!(
            f,
            "verified: {} audit logs (leaves, heads and signed checkpoints)",
            self.audit_logs_verified
        )
    }
}

/// Records copied per database transaction.
const COPY_CHUNK: usize = 2_000;

/// `paraph admin copy`: copies the stopped embedded store of `settings.data` into the empty
/// database of `settings.store.url` (migrated first when it has no schema), then reads every
/// record back and compares it, and checks the copy as `admin check` does (audit logs
/// recomputed to the roots of their heads and signed checkpoints).
pub fn admin_copy(settings: &Settings) -> Result<CopyReport, ServerError> {
    let fail = |m: String| ServerError::Check(m);
    let Some(options) = settings.store.postgres(Some(DATABASE_WAIT)) else {
        return Err(fail("a destination database is needed (--to URL)".into()));
    };
    if crate::store::found_in(&settings.data).is_none() {
        return Err(fail(format!(
            "{} holds no store to copy",
            settings.data.display()
        )));
    }
    let source = Store::open_with(&settings.data, None).map_err(|source| ServerError::Store {
        path: settings.data.clone(),
        source,
    })?;
    let url = crate::store::redact(&options.url);
    let db = |source| ServerError::Database {
        url: url.clone(),
        source,
    };
    crate::store::migrate(&options).map_err(db)?;
    // A local directory for the destination's lock and spool, removed afterwards.
    let scratch = settings.data.join("copy-to-database");
    let dest = Store::open_postgres(&scratch, &options).map_err(db)?;
    if !dest.scan_keys("", None, 1).map_err(db)?.is_empty() {
        return Err(fail(format!(
            "the database {url} already holds records: copy only into an empty one"
        )));
    }
    let mut report = CopyReport {
        records: Default::default(),
        bytes: 0,
        verified: 0,
        audit_logs_verified: 0,
    };
    // Tenants first, then documents, then the rest: the database's foreign keys are checked
    // at the end of each transaction.
    let firsts = ["tenant/", "doc/"];
    let mut passes: Vec<(&str, bool)> = firsts.iter().map(|p| (*p, true)).collect();
    passes.push(("", false));
    for (prefix, only) in passes {
        let mut after: Option<String> = None;
        loop {
            let page = source
                .scan_raw(prefix, after.as_deref(), COPY_CHUNK)
                .map_err(ServerError::Flush)?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last[prefix.len()..].to_owned());
            let chunk: Vec<(String, sled::IVec)> = page
                .into_iter()
                .filter(|(k, _)| only || !firsts.iter().any(|f| k.starts_with(f)))
                .collect();
            for (k, v) in &chunk {
                let kind = k.split('/').next().unwrap_or(k).to_owned();
                *report.records.entry(kind).or_default() += 1;
                report.bytes += v.len() as u64;
            }
            dest.transact_blocking(move |tx| {
                for (k, v) in &chunk {
                    tx.put_shared(k, v.clone())?;
                }
                Ok::<_, crate::store::StoreError>(())
            })
            .map_err(db)?;
        }
    }
    // Read back: the same keys with the same bytes, in the same order.
    let mut after: Option<String> = None;
    loop {
        let mine = source
            .scan_raw("", after.as_deref(), COPY_CHUNK)
            .map_err(ServerError::Flush)?;
        let theirs = dest
            .scan_raw("", after.as_deref(), COPY_CHUNK)
            .map_err(db)?;
        if mine.len() != theirs.len() {
            return Err(fail(format!(
                "verification failed: after {:?}, {} records in the directory, {} in the database",
                after,
                mine.len(),
                theirs.len()
            )));
        }
        let Some((last, _)) = mine.last() else {
            break;
        };
        for ((k1, v1), (k2, v2)) in mine.iter().zip(theirs.iter()) {
            if k1 != k2 || v1 != v2 {
                return Err(fail(format!(
                    "verification failed: record {k1} differs in the database (found {k2})"
                )));
            }
            report.verified += 1;
        }
        after = Some(last.clone());
    }
    let key_path = match &settings.audit_key {
        Some(p) => p.clone(),
        None => settings.data.join("audit-key.pem"),
    };
    let key = match std::fs::read(&key_path) {
        Ok(pem) => Some(crate::audit::AuditKey::from_pkcs8_pem(&pem).map_err(|e| {
            ServerError::AuditKey {
                path: key_path.clone(),
                reason: e.to_string(),
            }
        })?),
        Err(_) => None,
    };
    let check = crate::service::check::check_store(&dest, key.as_ref().map(|k| k.public_key()))
        .map_err(|e| ServerError::Check(e.to_string()))?;
    if !check.ok() {
        return Err(fail(format!(
            "the copy does not check: {}",
            check.problems.join("; ")
        )));
    }
    report.audit_logs_verified = check.tenants;
    drop(dest);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(report)
}

/// `paraph admin init`: initialise a data directory without serving.
pub fn admin_init(settings: &Settings, json: bool) -> Result<bool, ServerError> {
    let (_svc, boot) = open(settings, Arc::new(crate::clock::SystemClock))?;
    match boot {
        Some(b) => {
            print_bootstrap(&b, json);
            Ok(true)
        }
        None => Ok(false),
    }
}

/// `paraph admin operator-token`: whoever holds the data directory of a stopped server issues a
/// new platform operator token (and, with `revoke_others`, revokes every other one), recorded in
/// every tenant's audit log. A running server holds the directory's lock: refused then.
pub fn admin_operator_token(
    settings: &Settings,
    revoke_others: bool,
) -> Result<crate::service::operator::NewOperatorToken, ServerError> {
    if settings.store.url.is_none() && !settings.data.is_dir() {
        return Err(ServerError::OperatorToken(format!(
            "{} is not a data directory",
            settings.data.display()
        )));
    }
    let store = open_store(settings, Some(DATABASE_WAIT))?;
    let svc = Paraph::new(
        Arc::new(store),
        Arc::new(crate::clock::SystemClock),
        Limits::default(),
    )
    .with_audit_key(audit_key(settings)?);
    svc.recover_operator_token_blocking(revoke_others)
        .map_err(|e| ServerError::OperatorToken(e.to_string()))
}
