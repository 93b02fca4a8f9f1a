//! `paraph bench`: a load benchmark of a running server, driven with the platform operator token.
//!
//! It provisions a fresh tenant `bench-<random hex>` trusting the test PKI (anchor, signing CA,
//! CRLs, policy OIDs → RGS levels, as `serve --demo` does), a submitter, a visa officer, a
//! signing officer bound to the test certificate of the chosen key algorithm, a token for each
//! and the circuit `visa-sign` (visa, then an RGS `***` signature). Then N concurrent tasks push
//! M documents through SubmitDocument → Approve → PrepareSignature → local signature →
//! CompleteSignature, one HTTP/2 connection per role shared by all tasks. It reports
//! throughput, latency percentiles per RPC (successful calls), errors by gRPC code (it goes on
//! past errors and exits 1 if there were any) and the server's resident memory read with the
//! operator-only `GetServerStats`.

use super::commands::{idempotency_key, print_json};
use super::conn::{connect, Chan, Target};
use super::error::{code_name, CliError};
use super::signing::{progress_bar, Progress, Signer};
use super::{ClientOpts, IdemOpts};
use crate::proto::{
    self, document_service_client::DocumentServiceClient,
    signature_service_client::SignatureServiceClient, submit_document_request::Part,
};
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The circuit `paraph bench` creates in its tenant.
pub const BENCH_CIRCUIT: &str = "visa-sign";

/// RGS level of the signature step (the test officer certificates used are `***`).
const SIGNATURE_LEVEL: u32 = 3;

/// User names in the bench tenant.
const SUBMITTER: &str = "bench-submitter";
const VISA_OFFICER: &str = "bench-visa";
const SIGNER: &str = "bench-signer";

/// How often the progress bar is redrawn.
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// The key algorithm of the signing officer, i.e. which test certificate he is bound to.
#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
pub enum KeyAlg {
    /// ECDSA P-256 (`officer-l3-p256`).
    #[value(name = "ecdsa-p256")]
    EcdsaP256,
    /// RSA-2048 (`officer-l3-rsa2048`).
    #[value(name = "rsa-2048")]
    Rsa2048,
}

impl KeyAlg {
    fn name(self) -> &'static str {
        match self {
            KeyAlg::EcdsaP256 => "ecdsa-p256",
            KeyAlg::Rsa2048 => "rsa-2048",
        }
    }

    /// The file stem of its certificate and PKCS#12 file in the test PKI.
    fn stem(self) -> &'static str {
        match self {
            KeyAlg::EcdsaP256 => "officer-l3-p256",
            KeyAlg::Rsa2048 => "officer-l3-rsa2048",
        }
    }
}

#[derive(Args)]
pub struct BenchArgs {
    /// Number of concurrent tasks, each taking the next document when its last one is done.
    #[arg(long, value_name = "N", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Number of documents to push through the circuit.
    #[arg(long, value_name = "M", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub documents: u32,
    /// Circuit to submit to. `visa-sign` is created in the fresh tenant; any other name must
    /// exist there.
    #[arg(long, value_name = "NAME", default_value = BENCH_CIRCUIT)]
    pub circuit: String,
    /// Key algorithm of the signing officer.
    #[arg(long, value_enum, value_name = "ALG", default_value = "ecdsa-p256")]
    pub key_alg: KeyAlg,
    /// Directory of the test PKI (trust settings, the officer's certificate and PKCS#12 file).
    #[arg(long, value_name = "DIR", default_value = "certs-test")]
    pub certs: PathBuf,
    /// Size of each generated document, in bytes (each one is unique).
    #[arg(long, value_name = "BYTES", default_value_t = 4096,
          value_parser = clap::value_parser!(u32).range(64..=(16 * 1024 * 1024)))]
    pub size: u32,
    /// Longest wait for one call, in seconds; a call past it counts as DEADLINE_EXCEEDED.
    #[arg(long, value_name = "SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Run for this many seconds instead of a number of documents (a soak run: --documents is
    /// then ignored). The server's memory and disk use are read every --sample-every seconds.
    #[arg(long, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..=(7 * 24 * 3600)))]
    pub duration: Option<u64>,
    /// Start at most this many documents per second (0: as fast as the tasks go). A long soak
    /// run at a steady rate shows memory and disk use per document without filling the disk.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub rate: u32,
    /// With --duration: seconds between two readings of the server's memory and disk use.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub sample_every: u64,
    /// Stop taking new documents once this many errors were counted (0: never stop).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub max_errors: u64,
    /// Another replica of the same server (same database) to spread the calls over, as many
    /// times as there are: each document's four calls then go to the replicas in turn, so
    /// that every step is taken on another replica than the one before.
    #[arg(long, value_name = "ADDR")]
    pub replica: Vec<String>,
    /// --token is the platform operator token; --tenant is ignored (a fresh tenant is made).
    #[command(flatten)]
    pub c: ClientOpts,
}

/// The RPC kinds timed, in report order; `document` is a whole document, first call to last.
const KINDS: [&str; 5] = ["submit", "approve", "prepare", "complete", "document"];
const SUBMIT: usize = 0;
const APPROVE: usize = 1;
const PREPARE: usize = 2;
const COMPLETE: usize = 3;
const DOCUMENT: usize = 4;

/// Errors found by the client itself (not a gRPC status), e.g. an unexpected document state.
const CLIENT_ERROR: &str = "CLIENT";

/// What one task (then all of them) measured.
#[derive(Default)]
struct Tally {
    /// Latencies of successful calls, in milliseconds, per kind of [`KINDS`].
    latencies: [Vec<f64>; 5],
    /// Calls answered (successfully or not).
    rpcs: u64,
    /// Documents that reached `completed`.
    completed: u64,
    errors: BTreeMap<String, u64>,
    /// The first error message of each code, as `rpc: message`.
    samples: BTreeMap<String, String>,
}

impl Tally {
    fn error(&mut self, code: &str, rpc: &str, message: impl std::fmt::Display) {
        *self.errors.entry(code.to_owned()).or_default() += 1;
        self.samples
            .entry(code.to_owned())
            .or_insert_with(|| format!("{rpc}: {message}"));
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: Tally) {
        for (mine, theirs) in self.latencies.iter_mut().zip(other.latencies) {
            mine.extend(theirs);
        }
        self.rpcs += other.rpcs;
        self.completed += other.completed;
        for (code, n) in other.errors {
            *self.errors.entry(code).or_default() += n;
        }
        for (code, s) in other.samples {
            self.samples.entry(code).or_insert(s);
        }
    }

    /// Times one call, bounded by `limit`; records its latency or its error.
    async fn call<T>(
        &mut self,
        kind: usize,
        limit: Duration,
        fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Option<T> {
        let start = Instant::now();
        // Dropping the call on time-out cancels it (the stream is reset).
        let r = tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(tonic::Status::deadline_exceeded(format!(
                "no answer within {} s",
                limit.as_secs()
            )))
        });
        let elapsed = start.elapsed();
        self.rpcs += 1;
        match r {
            Ok(resp) => {
                self.latencies[kind].push(millis(elapsed));
                Some(resp.into_inner())
            }
            Err(s) => {
                self.error(code_name(s.code()), KINDS[kind], s.message());
                None
            }
        }
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`-th percentile (0 < p ≤ 100) of ascending `sorted` values, by the nearest-rank
/// method: the smallest value with at least p % of the values at or below it.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = (p / 100.0 * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Latency summary of one kind of call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

/// Summarises latencies (any order); `None` when there are none.
pub fn summarize(values: &mut [f64]) -> Option<Summary> {
    values.sort_by(f64::total_cmp);
    let max = *values.last()?;
    Some(Summary {
        count: values.len(),
        mean: values.iter().sum::<f64>() / values.len() as f64,
        p50: percentile(values, 50.0)?,
        p95: percentile(values, 95.0)?,
        p99: percentile(values, 99.0)?,
        max,
    })
}

/// Milliseconds rounded to the microsecond, for the JSON output.
fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The role clients shared by every task (one connection per role, multiplexed).
#[derive(Clone)]
struct Roles {
    submitter: DocumentServiceClient<Chan>,
    visa: DocumentServiceClient<Chan>,
    signer: SignatureServiceClient<Chan>,
}

/// What every task reads.
struct Shared {
    /// Documents to run (`usize::MAX` for a run of a set duration).
    total: usize,
    /// The end of a run of a set duration: no document is started after it.
    deadline: Option<Instant>,
    /// With --rate: when the run started and the time between two document starts.
    pace: Option<(Instant, Duration)>,
    next: AtomicUsize,
    done: AtomicUsize,
    /// Documents with an error.
    failed: AtomicU64,
    /// Errors counted so far, and the count at which no new document is started (0: never).
    errors: AtomicU64,
    max_errors: u64,
    /// Documents started.
    started: AtomicUsize,
    /// Set once every task has ended (the progress bar stops then).
    finished: std::sync::atomic::AtomicBool,
    timeout: Duration,
    signer: Arc<Signer>,
    tenant: String,
    circuit: String,
    size: usize,
}

fn fresh_key() -> Result<String, CliError> {
    idempotency_key(&IdemOpts {
        idempotency_key: None,
    })
}

fn target(c: &ClientOpts, token: String, tenant: Option<String>) -> Target {
    Target {
        addr: c.addr.clone(),
        token: Some(token),
        tenant,
        ca: c.ca.clone(),
        cert: c.cert.clone(),
        key: c.key.clone(),
    }
}

/// `size` bytes unique to document `i` of `tenant`: a header line, then a filler that depends
/// on both (so the stored blobs are distinct).
fn content(tenant: &str, i: usize, size: usize) -> Vec<u8> {
    let mut out = format!("paraph bench {tenant} document {i}\n").into_bytes();
    let mut block = Sha256::digest(&out).to_vec();
    while out.len() < size {
        out.extend(
            block
                .iter()
                .map(|b| b"0123456789abcdef"[usize::from(b & 15)]),
        );
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(size);
    out
}

/// One document through the circuit; a failure is recorded and ends this document.
async fn one_document(replicas: &mut [Roles], sh: &Shared, i: usize, t: &mut Tally) {
    let n = replicas.len().max(1);
    // The replica of the document's k-th call.
    let at = |k: usize| (i + k) % n;
    let keys: Result<Vec<String>, CliError> = (0..4).map(|_| fresh_key()).collect();
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return t.error(CLIENT_ERROR, "submit", e),
    };
    let data = content(&sh.tenant, i, sh.size);
    let sha = hex::encode(Sha256::digest(&data));
    let header = proto::SubmitHeader {
        r#type: proto::DocumentType::Other as i32,
        title: format!("bench document {i}"),
        circuit: sh.circuit.clone(),
        metadata: Default::default(),
        file_name: format!("bench-{i}.txt"),
        signature_format: String::new(),
        idempotency_key: keys[0].clone(),
    };
    let msgs = vec![
        proto::SubmitDocumentRequest {
            part: Some(Part::Header(header)),
        },
        proto::SubmitDocumentRequest {
            part: Some(Part::Chunk(data)),
        },
    ];
    let start = Instant::now();
    let Some(d) = t
        .call(
            SUBMIT,
            sh.timeout,
            replicas[at(0)]
                .submitter
                .submit_document(tokio_stream::iter(msgs)),
        )
        .await
    else {
        return;
    };
    let Ok(step) = u32::try_from(d.current_step) else {
        return t.error(CLIENT_ERROR, "submit", "no active step after submission");
    };
    let Some(d) = t
        .call(
            APPROVE,
            sh.timeout,
            replicas[at(1)].visa.approve(proto::ApproveRequest {
                id: d.id.clone(),
                step: Some(step),
                comment: String::new(),
                idempotency_key: keys[1].clone(),
            }),
        )
        .await
    else {
        return;
    };
    let Ok(step) = u32::try_from(d.current_step) else {
        return t.error(CLIENT_ERROR, "approve", "no active step after the visa");
    };
    let Some(prep) = t
        .call(
            PREPARE,
            sh.timeout,
            replicas[at(2)]
                .signer
                .prepare_signature(proto::PrepareSignatureRequest {
                    document_id: d.id.clone(),
                    step: Some(step),
                    certificate_chain: sh.signer.chain().to_vec(),
                    idempotency_key: keys[2].clone(),
                }),
        )
        .await
    else {
        return;
    };
    if prep.document_id != d.id || prep.step != step {
        return t.error(CLIENT_ERROR, "prepare", "preparation of another step");
    }
    let prep_id = prep.id.clone();
    // RSA-2048 signing costs ~0.3 ms of CPU: keep it off the async workers.
    let value = if sh.signer.is_rsa() {
        let signer = sh.signer.clone();
        tokio::task::spawn_blocking(move || signer.sign(&prep, &sha))
            .await
            .map_err(|e| CliError::Local(format!("signing task: {e}")))
            .and_then(|r| r)
    } else {
        sh.signer.sign(&prep, &sha)
    };
    let value = match value {
        Ok(v) => v,
        Err(e) => return t.error(CLIENT_ERROR, "sign", e),
    };
    let Some(done) = t
        .call(
            COMPLETE,
            sh.timeout,
            replicas[at(3)]
                .signer
                .complete_signature(proto::CompleteSignatureRequest {
                    preparation_id: prep_id,
                    signature_value: value,
                    signature_values: Vec::new(),
                    idempotency_key: keys[3].clone(),
                }),
        )
        .await
    else {
        return;
    };
    if done.state == proto::DocumentState::Completed as i32 {
        t.completed += 1;
        t.latencies[DOCUMENT].push(millis(start.elapsed()));
    } else {
        t.error(
            CLIENT_ERROR,
            "complete",
            format!(
                "document {} is {} after the signature, not completed",
                d.id,
                super::render::state(done.state)
            ),
        );
    }
}

async fn worker(mut roles: Vec<Roles>, sh: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    loop {
        if sh.max_errors > 0 && sh.errors.load(Ordering::Relaxed) >= sh.max_errors {
            return t;
        }
        if sh.deadline.is_some_and(|d| Instant::now() >= d) {
            return t;
        }
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        if i >= sh.total {
            return t;
        }
        if let Some((start, gap)) = sh.pace {
            // Document i starts no earlier than i gaps after the start.
            let at = start + gap.saturating_mul(u32::try_from(i).unwrap_or(u32::MAX));
            tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await;
            if sh.deadline.is_some_and(|d| Instant::now() >= d) {
                return t;
            }
        }
        sh.started.fetch_add(1, Ordering::Relaxed);
        let before = t.error_count();
        one_document(&mut roles, &sh, i, &mut t).await;
        let new_errors = t.error_count() - before;
        if new_errors > 0 {
            sh.failed.fetch_add(1, Ordering::Relaxed);
            sh.errors.fetch_add(new_errors, Ordering::Relaxed);
        }
        sh.done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Adds a hint to a refusal of the operator-only calls.
fn operator_hint(s: tonic::Status) -> CliError {
    if matches!(
        s.code(),
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
    ) {
        CliError::Status(tonic::Status::new(
            s.code(),
            format!(
                "{} (paraph bench needs the platform operator token)",
                s.message()
            ),
        ))
    } else {
        CliError::Status(s)
    }
}

fn read_file(path: PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(&path)
        .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))
}

/// Everything the run needs, provisioned in a fresh tenant.
struct Setup {
    tenant: String,
    /// The role clients of each replica (the first: `--addr`).
    roles: Vec<Roles>,
    signer: Signer,
}

async fn provision(a: &BenchArgs, operator: &str) -> Result<Setup, CliError> {
    let certs = &a.certs;
    // Local inputs first: a bad --certs fails before anything is created.
    let p12_path = certs.join(format!("{}.p12", a.key_alg.stem()));
    let signer = Signer::from_p12(
        &read_file(p12_path.clone())?,
        crate::demo::P12_PASSWORD,
        &p12_path,
    )?;
    let anchor = read_file(certs.join(crate::demo::TEST_ANCHOR))?;
    let intermediate = read_file(certs.join(crate::demo::TEST_INTERMEDIATE))?;
    let crls = read_file(certs.join(crate::demo::TEST_CRLS))?;

    let mut op = connect(&target(&a.c, operator.to_owned(), None)).await?;
    let mut suffix = [0u8; 6];
    getrandom::getrandom(&mut suffix)
        .map_err(|e| CliError::Local(format!("no randomness for the tenant name: {e}")))?;
    let tenant = format!("bench-{}", hex::encode(suffix));
    let created = op
        .admin
        .create_tenant(proto::CreateTenantRequest {
            id: tenant.clone(),
            display_name: "paraph bench (test PKI)".into(),
            admin_user: "bench-admin".into(),
            idempotency_key: fresh_key()?,
        })
        .await
        .map_err(operator_hint)?
        .into_inner();
    let admin_token = created
        .admin_token
        .map(|t| t.token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| CliError::Local("the server returned no admin token".into()))?;
    let mut adm = connect(&target(&a.c, admin_token, None)).await?;

    if a.circuit != BENCH_CIRCUIT {
        // Only `visa-sign` is created; another circuit must already exist in the tenant.
        let found = adm
            .circuits
            .get_circuit(proto::GetCircuitRequest {
                name: a.circuit.clone(),
                version: 0,
            })
            .await;
        match found {
            Ok(_) => {}
            Err(s)
                if matches!(
                    s.code(),
                    tonic::Code::NotFound | tonic::Code::InvalidArgument
                ) =>
            {
                return Err(CliError::Usage(format!(
                    "--circuit {0}: no circuit '{0}' in the fresh bench tenant {tenant}; paraph \
                     bench creates only '{BENCH_CIRCUIT}' (a visa, then a signature): drop \
                     --circuit or pass --circuit {BENCH_CIRCUIT}",
                    a.circuit
                )))
            }
            Err(s) => return Err(s.into()),
        }
    }

    adm.admin
        .set_trust(proto::SetTrustRequest {
            anchors: vec![anchor],
            intermediates: vec![intermediate],
            crls: vec![crls],
            policy_levels: crate::demo::TEST_POLICY_LEVELS
                .iter()
                .map(|(oid, level)| proto::PolicyLevel {
                    oid: (*oid).to_owned(),
                    level: u32::from(*level),
                })
                .collect(),
            signature_policy: None,
            idempotency_key: fresh_key()?,
        })
        .await?;
    let users = [
        (SUBMITTER, proto::Role::Submitter, "bench submitter"),
        (VISA_OFFICER, proto::Role::Officer, "bench visa officer"),
        (SIGNER, proto::Role::Officer, "bench signing officer"),
    ];
    let mut tokens = Vec::new();
    for (name, role, display) in users {
        adm.admin
            .create_user(proto::CreateUserRequest {
                name: name.into(),
                display_name: display.into(),
                roles: vec![role as i32],
                idempotency_key: fresh_key()?,
            })
            .await?;
        let t = adm
            .admin
            .issue_token(proto::IssueTokenRequest {
                user: name.into(),
                idempotency_key: fresh_key()?,
            })
            .await?
            .into_inner()
            .token
            .map(|t| t.token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CliError::Local(format!("the server returned no token for {name}")))?;
        tokens.push(t);
    }
    let leaf =
        signer.chain().first().cloned().ok_or_else(|| {
            CliError::Usage(format!("{} holds no certificate", p12_path.display()))
        })?;
    adm.admin
        .bind_certificate(proto::BindCertificateRequest {
            user: SIGNER.into(),
            certificate: leaf,
            idempotency_key: fresh_key()?,
        })
        .await?;
    let step = |kind: proto::StepKind, actor: &str, level: u32| proto::StepDefinition {
        kind: kind as i32,
        actors: vec![actor.to_owned()],
        mode: proto::StepMode::All as i32,
        level,
        ..Default::default()
    };
    if a.circuit == BENCH_CIRCUIT {
        adm.circuits
            .create_circuit(proto::CreateCircuitRequest {
                name: BENCH_CIRCUIT.into(),
                fallback: String::new(),
                steps: vec![
                    step(proto::StepKind::Visa, VISA_OFFICER, 0),
                    step(proto::StepKind::Signature, SIGNER, SIGNATURE_LEVEL),
                ],
                idempotency_key: fresh_key()?,
            })
            .await?;
    }

    let [submitter, visa, signing] = <[String; 3]>::try_from(tokens)
        .map_err(|_| CliError::Local("expected three tokens".into()))?;
    let mut roles = Vec::new();
    for addr in std::iter::once(&a.c.addr).chain(a.replica.iter()) {
        let mut c = a.c.clone();
        c.addr = addr.clone();
        roles.push(Roles {
            submitter: connect(&target(&c, submitter.clone(), None)).await?.docs,
            visa: connect(&target(&c, visa.clone(), None)).await?.docs,
            signer: connect(&target(&c, signing.clone(), None)).await?.sigs,
        });
    }
    Ok(Setup {
        tenant,
        roles,
        signer,
    })
}

/// What the server tells of itself.
struct ServerFigures {
    rss: u64,
    peak: u64,
    /// Its storage engine; empty from a server that does not say.
    engine: String,
    /// What its data directory takes on disk; 0 from a server that does not say.
    store: u64,
}

/// The server's resident memory now and at its peak, and its storage engine, when the server
/// tells: `None` for a server without `GetServerStats`, one that cannot read them, or one that
/// does not answer (a warning then says why: the report is printed all the same).
async fn server_stats(op: &Target, limit: Duration) -> Option<ServerFigures> {
    let warn = |why: String| {
        eprintln_text!("paraph bench: no server statistics: {why}");
        None
    };
    let mut op = match connect(op).await {
        Ok(c) => c,
        Err(e) => return warn(e.to_string()),
    };
    let call = op.admin.get_server_stats(proto::GetServerStatsRequest {});
    match tokio::time::timeout(limit, call).await {
        Err(_) => warn(format!("no answer within {} s", limit.as_secs())),
        Ok(Ok(r)) => {
            let s = r.into_inner();
            (s.peak_rss_bytes > 0).then_some(ServerFigures {
                rss: s.rss_bytes,
                peak: s.peak_rss_bytes,
                engine: s.storage_engine,
                store: s.store_bytes,
            })
        }
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => None,
        Ok(Err(s)) => warn(operator_hint(s).to_string()),
    }
}

/// How many times the server's memory is read during the run.
const RSS_SAMPLES: usize = 10;

/// One reading of the server during the run.
#[derive(Clone, Copy)]
struct Sample {
    /// Since the run started.
    seconds: f64,
    documents_done: usize,
    rss: u64,
    store: u64,
}

/// The server's resident memory and disk use each time another tenth of the documents is
/// done: whether memory stays flat over a long run shows there, not in one peak figure. Ends
/// when the run does; empty if the server does not tell.
async fn rss_trace(op: Target, sh: Arc<Shared>, limit: Duration, start: Instant) -> Vec<Sample> {
    let mut trace = Vec::with_capacity(RSS_SAMPLES);
    let mut next = 1;
    while next <= RSS_SAMPLES {
        let done = sh.done.load(Ordering::Relaxed);
        if done * RSS_SAMPLES >= next * sh.total {
            match server_stats(&op, limit).await {
                Some(s) => trace.push(Sample {
                    seconds: start.elapsed().as_secs_f64(),
                    documents_done: done,
                    rss: s.rss,
                    store: s.store,
                }),
                None => break,
            }
            while next * sh.total <= done * RSS_SAMPLES {
                next += 1;
            }
        } else if sh.finished.load(Ordering::Relaxed) {
            // Stopped early (--max-errors): the remaining tenths never come.
            break;
        } else {
            tokio::time::sleep(PROGRESS_EVERY).await;
        }
    }
    trace
}

/// The soak run's readings: the server's memory and disk use every `every`, from the start
/// until the run ends (the last one after it). Each is also printed as it comes, so that a
/// long run shows its course. Empty if the server does not tell.
async fn soak_trace(
    op: Target,
    sh: Arc<Shared>,
    limit: Duration,
    start: Instant,
    every: Duration,
) -> Vec<Sample> {
    let mut trace: Vec<Sample> = Vec::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::from_std(start), every);
    loop {
        let last = tokio::select! {
            _ = tick.tick() => false,
            _ = async {
                while !sh.finished.load(Ordering::Relaxed) {
                    tokio::time::sleep(PROGRESS_EVERY).await;
                }
            } => true,
        };
        let done = sh.done.load(Ordering::Relaxed);
        let Some(s) = server_stats(&op, limit).await else {
            break;
        };
        let sample = Sample {
            seconds: start.elapsed().as_secs_f64(),
            documents_done: done,
            rss: s.rss,
            store: s.store,
        };
        let rate = match trace.last() {
            Some(p) if sample.seconds > p.seconds => {
                (done - p.documents_done) as f64 / (sample.seconds - p.seconds)
            }
            _ => 0.0,
        };
        eprintln_text!(
            "paraph bench: {:>7.0} s  {:>9} documents  {:>7.1} documents/s  RSS {:>8.1} MiB  \
             store {:>9.1} MiB",
            sample.seconds,
            done,
            rate,
            sample.rss as f64 / MIB,
            sample.store as f64 / MIB
        );
        trace.push(sample);
        if last {
            break;
        }
    }
    trace
}

const MIB: f64 = 1024.0 * 1024.0;

/// The measured run, for the output.
struct Report {
    tenant: String,
    circuit: String,
    key_alg: KeyAlg,
    documents: usize,
    /// Documents started (fewer than `documents` when it stopped at --max-errors).
    attempted: usize,
    concurrency: usize,
    size: usize,
    seconds: f64,
    tally: Tally,
    summaries: Vec<Option<Summary>>,
    rss_before: Option<u64>,
    rss_after: Option<u64>,
    peak_rss: Option<u64>,
    /// The server's storage engine, when it says.
    engine: Option<String>,
    /// The server's memory and disk use at each tenth of the run (each --sample-every of a
    /// soak run).
    rss_trace: Vec<Sample>,
    /// A run of a set duration (--duration), in seconds.
    duration: Option<u64>,
    /// Documents started per second at most (--rate; 0: no limit).
    rate: u32,
}

impl Report {
    fn per_second(&self, n: u64) -> f64 {
        if self.seconds > 0.0 {
            n as f64 / self.seconds
        } else {
            0.0
        }
    }

    fn json(&self) -> Value {
        let mut latency = Map::new();
        for (kind, s) in KINDS.iter().zip(&self.summaries) {
            let v = match s {
                Some(s) => json!({
                    "count": s.count,
                    "mean": round3(s.mean),
                    "p50": round3(s.p50),
                    "p95": round3(s.p95),
                    "p99": round3(s.p99),
                    "max": round3(s.max),
                }),
                None => json!({
                    "count": 0, "mean": null, "p50": null, "p95": null, "p99": null, "max": null,
                }),
            };
            latency.insert((*kind).to_owned(), v);
        }
        json!({
            "tenant": self.tenant,
            "circuit": self.circuit,
            "key_alg": self.key_alg.name(),
            "documents": self.documents,
            "attempted": self.attempted,
            "completed": self.tally.completed,
            "stopped_early": self.duration.is_none() && self.attempted < self.documents,
            "duration_seconds": self.duration,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "document_bytes": self.size,
            "seconds": round3(self.seconds),
            "documents_per_second": round3(self.per_second(self.tally.completed)),
            "rpcs": self.tally.rpcs,
            "rpcs_per_second": round3(self.per_second(self.tally.rpcs)),
            "errors": self.tally.error_count(),
            "errors_by_code": self.tally.errors,
            "latency_ms": latency,
            "server_rss_bytes_before": self.rss_before,
            "server_rss_bytes_after": self.rss_after,
            "server_peak_rss_bytes": self.peak_rss,
            "server_storage_engine": self.engine,
            "server_rss_trace": self
                .rss_trace
                .iter()
                .map(|s| json!({
                    "seconds": round3(s.seconds),
                    "documents_done": s.documents_done,
                    "rss_bytes": s.rss,
                    "store_bytes": s.store,
                }))
                .collect::<Vec<_>>(),
        })
    }

    fn text(&self) -> String {
        let mib = |b: Option<u64>| {
            b.map(|b| format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)))
                .unwrap_or_else(|| "?".into())
        };
        let mut out = format!(
            "paraph bench: {} documents of {} bytes, concurrency {}, {} signer, circuit {} \
             (tenant {})\n",
            self.documents,
            self.size,
            self.concurrency,
            self.key_alg.name(),
            self.circuit,
            self.tenant
        );
        if self.rate > 0 {
            out.push_str(&format!(
                "  paced at      {} documents/s at most\n",
                self.rate
            ));
        }
        out.push_str(&format!("  wall time     {:.2} s\n", self.seconds));
        out.push_str(&format!(
            "  documents/s   {:.1}   ({} completed)\n",
            self.per_second(self.tally.completed),
            self.tally.completed
        ));
        out.push_str(&format!(
            "  RPCs/s        {:.1}   ({} calls)\n",
            self.per_second(self.tally.rpcs),
            self.tally.rpcs
        ));
        out.push_str(&format!("  errors        {}\n", self.tally.error_count()));
        if self.duration.is_none() && self.attempted < self.documents {
            out.push_str(&format!(
                "  stopped early after {} of {} documents (--max-errors)\n",
                self.attempted, self.documents
            ));
        }
        for (code, n) in &self.tally.errors {
            let sample = self.tally.samples.get(code).map_or("", String::as_str);
            out.push_str(&format!("    {code:<20} {n:>6}   e.g. {sample}\n"));
        }
        if let Some(engine) = &self.engine {
            out.push_str(&format!("  server engine {engine}\n"));
        }
        if self.peak_rss.is_some() {
            out.push_str(&format!(
                "  server RSS    {} before, {} after, peak {}\n",
                mib(self.rss_before),
                mib(self.rss_after),
                mib(self.peak_rss)
            ));
        } else {
            out.push_str("  server RSS    not available\n");
        }
        if !self.rss_trace.is_empty() {
            out.push_str(&format!(
                "\n  {:>8} {:>10} {:>12} {:>14}\n",
                "seconds", "documents", "server RSS", "store on disk"
            ));
            for s in &self.rss_trace {
                out.push_str(&format!(
                    "  {:>8.0} {:>10} {:>12} {:>14}\n",
                    s.seconds,
                    s.documents_done,
                    mib(Some(s.rss)),
                    mib(Some(s.store))
                ));
            }
        }
        out.push_str(&format!(
            "\n  {:<10} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9}   (ms)\n",
            "latency", "count", "mean", "p50", "p95", "p99", "max"
        ));
        for (kind, s) in KINDS.iter().zip(&self.summaries) {
            match s {
                Some(s) => out.push_str(&format!(
                    "  {kind:<10} {:>7} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2}\n",
                    s.count, s.mean, s.p50, s.p95, s.p99, s.max
                )),
                None => out.push_str(&format!("  {kind:<10} {:>7}\n", 0)),
            }
        }
        out
    }
}

/// `paraph bench`.
pub async fn run(a: BenchArgs) -> Result<(), CliError> {
    let operator = a
        .c
        .token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            CliError::NoToken(
                "no token: pass the platform operator token with --token or PARAPH_TOKEN".into(),
            )
        })?
        .to_owned();
    let documents = match a.duration {
        Some(_) => usize::MAX,
        None => a.documents as usize,
    };
    let concurrency = a.concurrency as usize;
    let limit = Duration::from_secs(a.timeout);
    // About ten calls: bounded as a whole.
    let setup = tokio::time::timeout(limit * 10, provision(&a, &operator))
        .await
        .map_err(|_| {
            CliError::Status(tonic::Status::deadline_exceeded(format!(
                "provisioning the bench tenant took more than {} s",
                limit.as_secs() * 10
            )))
        })??;
    let op = target(&a.c, operator.clone(), None);
    let before = server_stats(&op, limit).await;

    let shared = Arc::new(Shared {
        total: documents,
        deadline: a.duration.map(|d| Instant::now() + Duration::from_secs(d)),
        pace: (a.rate > 0).then(|| (Instant::now(), Duration::from_secs(1) / a.rate)),
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        failed: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        max_errors: a.max_errors,
        started: AtomicUsize::new(0),
        finished: std::sync::atomic::AtomicBool::new(false),
        timeout: Duration::from_secs(a.timeout),
        signer: Arc::new(setup.signer),
        tenant: setup.tenant.clone(),
        circuit: a.circuit.clone(),
        size: a.size as usize,
    });
    // A soak run prints a line per reading instead.
    let progress =
        (!a.c.json && a.duration.is_none() && std::io::stderr().is_terminal()).then(|| {
            let sh = shared.clone();
            tokio::spawn(async move {
                let mut bar = Progress::new();
                let start = Instant::now();
                loop {
                    let done = sh.done.load(Ordering::Relaxed);
                    let rate = done as f64 / start.elapsed().as_secs_f64().max(1e-3);
                    bar.draw(&format!(
                        "{} {rate:.0} documents/s, {} failed",
                        progress_bar(done, sh.total),
                        sh.failed.load(Ordering::Relaxed)
                    ));
                    if done >= sh.total || sh.finished.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(PROGRESS_EVERY).await;
                }
                bar.clear();
            })
        });

    let start = Instant::now();
    let trace = before.is_some().then(|| {
        let op = target(&a.c, operator.clone(), None);
        match a.duration {
            Some(_) => tokio::spawn(soak_trace(
                op,
                shared.clone(),
                limit,
                start,
                Duration::from_secs(a.sample_every),
            )),
            None => tokio::spawn(rss_trace(op, shared.clone(), limit, start)),
        }
    });
    let tasks: Vec<_> = (0..concurrency.min(documents))
        .map(|_| tokio::spawn(worker(setup.roles.clone(), shared.clone())))
        .collect();
    let mut tally = Tally::default();
    for t in tasks {
        let part = t
            .await
            .map_err(|e| CliError::Local(format!("benchmark task failed: {e}")))?;
        tally.merge(part);
    }
    let seconds = start.elapsed().as_secs_f64();
    shared.finished.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        // The bar ends itself once every document is done.
        let _ = p.await;
    }
    let rss_trace = match trace {
        Some(t) => t.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let after = server_stats(&op, limit).await;

    let summaries = tally.latencies.iter_mut().map(|v| summarize(v)).collect();
    let report = Report {
        tenant: setup.tenant,
        circuit: a.circuit.clone(),
        key_alg: a.key_alg,
        documents: match a.duration {
            Some(_) => shared.started.load(Ordering::Relaxed),
            None => documents,
        },
        duration: a.duration,
        rate: a.rate,
        attempted: shared.started.load(Ordering::Relaxed),
        concurrency,
        size: a.size as usize,
        seconds,
        summaries,
        rss_before: before.as_ref().map(|s| s.rss),
        rss_after: after.as_ref().map(|s| s.rss),
        peak_rss: after.as_ref().map(|s| s.peak),
        engine: after
            .as_ref()
            .map(|s| s.engine.clone())
            .filter(|e| !e.is_empty()),
        rss_trace,
        tally,
    };
    if a.c.json {
        print_json(&report.json());
    } else {
        print_text!("{}", report.text());
    }
    let errors = report.tally.error_count();
    if errors > 0 {
        return Err(CliError::Partial(format!(
            "{errors} errors in {} documents (see errors_by_code)",
            report.attempted
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.0));
        assert_eq!(percentile(&v, 51.0), Some(3.0));
        assert_eq!(percentile(&v, 95.0), Some(4.0));
    }

    #[test]
    fn summaries_are_ordered_whatever_the_input_order() {
        let mut v: Vec<f64> = (0..1000).map(|i| f64::from((i * 7919) % 1000)).collect();
        let s = summarize(&mut v).unwrap();
        assert_eq!(s.count, 1000);
        assert_eq!((s.p50, s.p95, s.p99, s.max), (499.0, 949.0, 989.0, 999.0));
        assert!((s.mean - 499.5).abs() < 1e-9);
        assert!(summarize(&mut []).is_none());
    }

    #[test]
    fn generated_documents_are_unique_and_sized() {
        let a = content("bench-x", 1, 4096);
        let b = content("bench-x", 2, 4096);
        assert_eq!(a.len(), 4096);
        assert_ne!(a, b);
        assert_ne!(a, content("bench-y", 1, 4096));
        assert_eq!(content("bench-x", 1, 100).len(), 100);
    }
}
