//! The application layer: authenticate, authorise, load, run a pure domain transition, store
//! the result with its indexes, log entries and idempotency record in one transaction (on the
//! store's writer, answered once durable), then notify watchers.
//!
//! Owns authorisation and orchestration. It must not know gRPC types (the `grpc` layer converts)
//! nor encode records itself (the `store` layer does). Blocking storage work runs on the blocking
//! pool or the store's writer, never on the async executor.

pub mod audit;
mod auth;
pub mod chain_cache;
pub mod check;
pub mod delegation;
pub mod documents;
pub mod heavy;
pub mod operator;
pub mod signatures;
pub mod stats;
pub mod tenancy;
pub mod transfers;
pub mod trust;
mod watched;

pub use auth::{Caller, Principal};

use crate::clock::Clock;
use crate::domain::{DocState, DocumentId, DomainError, Event, IdempotencyKey, TenantId, UserName};
use crate::store::{Reads, Store, StoreError, Tx};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::sync::broadcast;

/// Every way a service call can fail. The gRPC layer maps it to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("missing, unknown or revoked token")]
    Unauthenticated,
    #[error("{0}")]
    TooLarge(String),
    /// A shared resource (a budget, a pool) is spent for now: retry later.
    #[error("{0}")]
    Busy(String),
    /// A transfer made no progress within its idle timeout.
    #[error("{0}")]
    TimedOut(String),
    #[error("idempotency key already used for a different request")]
    IdempotencyMismatch,
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// Limits enforced by the service.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_document_bytes: u64,
    /// Most live (not cancelled, not yet over) absences of one user.
    pub max_live_absences_per_user: usize,
    /// Bytes of uploads in flight for the whole server (see [`transfers`]).
    pub upload_budget_bytes: u64,
    /// Bytes of uploads in flight for one tenant.
    pub upload_tenant_budget_bytes: u64,
    /// How long an upload or a download may stay without progress.
    pub transfer_idle_timeout: std::time::Duration,
    /// Bytes read from disk and sent per content message.
    pub download_chunk_bytes: usize,
    /// Content downloads served at once.
    pub max_concurrent_downloads: usize,
    /// Largest CMS a validation accepts.
    pub max_cms_bytes: usize,
    /// Most SignerInfos in a CMS a validation accepts.
    pub max_cms_signers: usize,
    /// Threads of the validation pool (see [`heavy`]).
    pub validation_workers: usize,
    /// Validations that may wait for a worker.
    pub validation_queue: usize,
    /// What PES signatures claim (policy, place, role).
    pub pes: crate::formats::xades_pes::PesSettings,
    /// PAdES signatures (space reserved for the CMS, `/Location`).
    pub pades: crate::formats::pades::PadesSettings,
}

impl Limits {
    /// The limits of `settings` (0 validation workers: one less than the cores, at least one).
    pub fn from_settings(s: &crate::config::Settings) -> Limits {
        let workers = match s.validation_workers {
            0 => std::thread::available_parallelism()
                .map_or(1, usize::from)
                .saturating_sub(1)
                .max(1),
            n => n,
        };
        Limits {
            max_document_bytes: s.max_document_bytes,
            max_live_absences_per_user: s.max_live_absences_per_user,
            upload_budget_bytes: s.upload_budget_bytes,
            upload_tenant_budget_bytes: s.upload_tenant_budget_bytes,
            transfer_idle_timeout: std::time::Duration::from_secs(
                s.transfer_idle_timeout_secs.max(1),
            ),
            download_chunk_bytes: s.download_chunk_bytes.clamp(4096, 4 * 1024 * 1024 - 1024),
            max_concurrent_downloads: s.max_concurrent_downloads.max(1),
            max_cms_bytes: s.max_cms_bytes,
            max_cms_signers: s.max_cms_signers.max(1),
            validation_workers: workers,
            // At least one place: with none, a job is taken only if a worker happens to be
            // waiting at that very instant.
            validation_queue: s.validation_queue.max(1),
            pes: s.pes.clone(),
            pades: s.pades.clone(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 64 * 1024 * 1024,
            max_live_absences_per_user: 50,
            upload_budget_bytes: 512 * 1024 * 1024,
            upload_tenant_budget_bytes: 256 * 1024 * 1024,
            transfer_idle_timeout: std::time::Duration::from_secs(30),
            download_chunk_bytes: 256 * 1024,
            max_concurrent_downloads: 64,
            max_cms_bytes: 1024 * 1024,
            max_cms_signers: 32,
            validation_workers: 1,
            validation_queue: 16,
            pes: Default::default(),
            pades: Default::default(),
        }
    }
}

/// A change published to watchers after it is durable (and, on a store shared by replicas,
/// to the other replicas' watchers).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Notice {
    pub tenant: TenantId,
    pub concerned: Vec<UserName>,
    pub document: DocumentId,
    pub title: String,
    pub state: DocState,
    pub event: Event,
}

/// The first answer to an idempotent call, stored as the request's fingerprint (64 hex
/// characters), a newline and the answer's JSON: the answer is encoded once, straight from its
/// type. Records written before this layout are one JSON object and are still read.
struct IdemRecord;

#[derive(Deserialize)]
struct LegacyIdemRecord {
    fingerprint: String,
    response: serde_json::Value,
}

impl IdemRecord {
    fn encode<R: Serialize>(fingerprint: &str, answer: &R) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(fingerprint.as_bytes());
        out.push(b'\n');
        serde_json::to_writer(&mut out, answer)
            .map_err(|e| ServiceError::Internal(format!("encode answer: {e}")))?;
        Ok(out)
    }

    /// The stored answer when `fingerprint` matches, else the mismatch error.
    fn answer<R: DeserializeOwned>(stored: &[u8], fingerprint: &str) -> Result<R> {
        let corrupt =
            |e: serde_json::Error| ServiceError::Internal(format!("stored idempotent answer: {e}"));
        if stored.first() == Some(&b'{') {
            let rec: LegacyIdemRecord = serde_json::from_slice(stored).map_err(corrupt)?;
            if rec.fingerprint != fingerprint {
                return Err(ServiceError::IdempotencyMismatch);
            }
            return serde_json::from_value(rec.response).map_err(corrupt);
        }
        let (stored_fp, answer) = match stored.iter().position(|b| *b == b'\n') {
            Some(i) => (&stored[..i], &stored[i + 1..]),
            None => (stored, &b""[..]),
        };
        if stored_fp != fingerprint.as_bytes() {
            return Err(ServiceError::IdempotencyMismatch);
        }
        serde_json::from_slice(answer).map_err(corrupt)
    }
}

/// What makes a mutating call idempotent: the client's key and a digest of the request.
#[derive(Debug, Clone)]
pub struct Idem {
    pub key: IdempotencyKey,
    pub fingerprint: [u8; 32],
}

impl Idem {
    pub fn new(key: Option<IdempotencyKey>, request_bytes: &[u8]) -> Option<Idem> {
        key.map(|key| Idem {
            key,
            fingerprint: Sha256::digest(request_bytes).into(),
        })
    }
}

/// The paraph application service, shared by every connection.
pub struct Paraph {
    store: Arc<Store>,
    clock: Arc<dyn Clock>,
    limits: Limits,
    notices: broadcast::Sender<Arc<Notice>>,
    seals: std::collections::HashMap<TenantId, Arc<signatures::SealKey>>,
    /// Serialises scheduler passes (the periodic one and any explicit call).
    tick_lock: tokio::sync::Mutex<()>,
    /// When the scheduler last went over each tenant.
    sched_last: std::sync::Mutex<std::collections::HashMap<TenantId, i64>>,
    /// Signs the audit logs' checkpoints.
    audit_key: Option<Arc<crate::audit::AuditKey>>,
    /// Successful path validations of signing certificates (see `chain_cache`).
    chains: Arc<chain_cache::ChainCache>,
    /// Trust settings as last read (see `trust::TrustCache`).
    trusts: Arc<trust::TrustCache>,
    /// When the service was opened (for the uptime in the server statistics).
    started: std::time::Instant,
    /// Principals already authenticated (see `auth::AuthCache`).
    auth: auth::AuthCache,
    /// Upload budget and download slots (see [`transfers`]).
    transfers: transfers::Transfers,
    /// Where signature validations run (see [`heavy`]).
    heavy: heavy::HeavyPool,
    /// When each token's use was last recorded (see `auth::LAST_USED_STEP_SECS`).
    token_use: std::sync::Mutex<std::collections::HashMap<[u8; 32], i64>>,
}

/// 16 fresh random bytes for identifiers and secrets.
fn random16() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| ServiceError::Internal(format!("randomness: {e}")))?;
    Ok(b)
}

/// A 16-byte id for records created at a high rate (documents, preparations): 8 bytes that
/// increase from a random start with each id this process issues, then 8 random bytes. The
/// records of the documents in flight then sit next to each other in the store's key order
/// (a few pages take the writes instead of one random page per write, which is what slows a
/// large store down), while an id stays unguessable (64 random bits; it is also only served
/// inside its tenant).
fn ordered_id16() -> Result<[u8; 16]> {
    static NEXT: std::sync::OnceLock<std::sync::atomic::AtomicU64> = std::sync::OnceLock::new();
    let start = match NEXT.get() {
        Some(n) => n,
        None => {
            let r = random16()?;
            let mut seed = [0u8; 8];
            seed.copy_from_slice(&r[..8]);
            // Half the range ahead: no wrap around in any real lifetime of the process.
            NEXT.get_or_init(|| std::sync::atomic::AtomicU64::new(u64::from_be_bytes(seed) >> 1))
        }
    };
    let n = start.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut b = random16()?;
    b[..8].copy_from_slice(&n.to_be_bytes());
    Ok(b)
}

impl Paraph {
    pub fn new(store: Arc<Store>, clock: Arc<dyn Clock>, limits: Limits) -> Paraph {
        let (notices, _) = broadcast::channel(4096);
        let transfers = transfers::Transfers::new(&limits);
        let heavy = heavy::HeavyPool::new(limits.validation_workers, limits.validation_queue);
        let auth = auth::AuthCache::new(store.watch(&auth::AUTH_PREFIXES), auth::AUTH_CACHE_MAX);
        let trusts = trust::TrustCache::new(store.watch(&[trust::TRUST_PREFIX]), 4096);
        Paraph {
            auth,
            store,
            clock,
            limits,
            notices,
            seals: Default::default(),
            tick_lock: tokio::sync::Mutex::new(()),
            sched_last: Default::default(),
            audit_key: None,
            chains: Arc::new(chain_cache::ChainCache::new()),
            trusts: Arc::new(trusts),
            started: std::time::Instant::now(),
            transfers,
            heavy,
            token_use: Default::default(),
        }
    }

    /// Installs a tenant's seal key (from the settings, at start-up).
    pub fn with_seal(mut self, tenant: TenantId, key: signatures::SealKey) -> Paraph {
        self.seals.insert(tenant, Arc::new(key));
        self
    }

    /// Installs the key that signs the audit logs' checkpoints (at start-up).
    pub fn with_audit_key(mut self, key: crate::audit::AuditKey) -> Paraph {
        let key = Arc::new(key);
        let (signer, clock) = (key.clone(), self.clock.clone());
        self.store
            .set_commit_hook(Arc::new(move |tx: &mut Tx<'_>, marks: &[String]| {
                audit::checkpoint_marked(tx, marks, &signer, clock.now()).map_err(|e| e.to_string())
            }));
        self.audit_key = Some(key);
        self
    }

    /// Changes of a clock that jumps (tests), for the scheduler.
    pub fn clock_changes(&self) -> Option<tokio::sync::watch::Receiver<i64>> {
        self.clock.changes()
    }

    /// The clock the service reads.
    pub fn now(&self) -> crate::domain::Timestamp {
        self.clock.now()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Subscribes to durable changes (filter with [`Caller::concerned_by`]).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Notice>> {
        self.notices.subscribe()
    }

    /// Runs blocking store work off the async executor.
    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| ServiceError::Internal(format!("blocking task: {e}")))?
    }

    /// Runs a mutation: one transaction (with its idempotency record) on the store's writer,
    /// answered once its group is durable, then the notices. A retry with the same idempotency key returns the first answer.
    async fn mutate<R>(
        &self,
        scope: String,
        method: &'static str,
        idem: Option<Idem>,
        f: impl FnOnce(&mut Tx<'_>) -> Result<(R, Vec<Notice>)> + Send + 'static,
    ) -> Result<R>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        self.mutate_reading(scope, method, idem, Reads::new(), f)
            .await
    }

    /// [`Paraph::mutate`] for a mutation that says beforehand what it will read besides its
    /// idempotency record (see [`Reads`]).
    async fn mutate_reading<R>(
        &self,
        scope: String,
        method: &'static str,
        idem: Option<Idem>,
        reads: Reads,
        f: impl FnOnce(&mut Tx<'_>) -> Result<(R, Vec<Notice>)> + Send + 'static,
    ) -> Result<R>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let (r, ()) = self
            .mutate_with(
                scope,
                method,
                idem,
                reads,
                move |tx| f(tx).map(|(r, notices)| (r, (), notices)),
                |_, _| Ok(()),
            )
            .await?;
        Ok(r)
    }

    /// [`Paraph::mutate`] for an answer with a part the idempotency record need not hold again
    /// because the store keeps it, never changed, elsewhere (a signature record): `f` returns it
    /// beside the part that is stored, and a retry reads it back with `reread` from the stored
    /// part, inside its transaction.
    async fn mutate_with<R, X>(
        &self,
        scope: String,
        method: &'static str,
        idem: Option<Idem>,
        reads: Reads,
        f: impl FnOnce(&mut Tx<'_>) -> Result<(R, X, Vec<Notice>)> + Send + 'static,
        reread: impl FnOnce(&Tx<'_>, &R) -> Result<X> + Send + 'static,
    ) -> Result<(R, X)>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
        X: Send + 'static,
    {
        let idem_key = idem
            .as_ref()
            .map(|i| format!("idem/{scope}/{method}/{}", i.key.as_str()));
        let fingerprint = idem.as_ref().map(|i| hex::encode(i.fingerprint));
        let reads = match &idem_key {
            Some(k) => reads.key(k.clone()),
            None => reads,
        };
        let (response, notices) = self
            .store
            .transact_reading(reads, move |tx| {
                if let (Some(k), Some(fp)) = (&idem_key, &fingerprint) {
                    if let Some(stored) = tx.get_raw(k)? {
                        let first: R = IdemRecord::answer(&stored, fp)?;
                        let rest = reread(tx, &first)?;
                        return Ok::<_, ServiceError>(((first, rest), Vec::new()));
                    }
                }
                let (r, x, notices) = f(tx)?;
                if let (Some(k), Some(fp)) = (&idem_key, &fingerprint) {
                    tx.put_raw(k, &IdemRecord::encode(fp, &r)?)?;
                }
                Ok(((r, x), notices))
            })
            .await?;
        self.publish(notices);
        Ok(response)
    }

    /// Hands durable changes to this process's watchers and to the other replicas'.
    fn publish(&self, notices: Vec<Notice>) {
        if notices.is_empty() {
            return;
        }
        if self.store.is_postgres() {
            match serde_json::to_vec(&notices) {
                Ok(bytes) => {
                    if let Err(e) = self.store.announce(&bytes) {
                        // The change is durable; only the other replicas' live updates miss it
                        // (their watchers see it in the document's next state).
                        tracing::warn!(error = %e, "a notice could not reach the other replicas");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "a notice could not be encoded"),
            }
        }
        for n in notices {
            // No receiver is not an error: nobody is watching.
            let _ = self.notices.send(Arc::new(n));
        }
    }

    /// Relays to this process's watchers what the other replicas announce (a store shared by
    /// replicas only; runs until the store is closed).
    pub fn relay_replica_notices(self: &Arc<Self>) {
        let Some(mut rx) = self.store.notices() else {
            return;
        };
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(bytes) => {
                        let Some(svc) = weak.upgrade() else {
                            return;
                        };
                        match serde_json::from_slice::<Vec<Notice>>(&bytes) {
                            Ok(notices) => {
                                for n in notices {
                                    let _ = svc.notices.send(Arc::new(n));
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "an undecodable replica notice"),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                        tracing::warn!(missed = k, "replica notices were missed");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }
}

/// Appends an event about `subject` to the tenant's audit log inside a transaction.
fn append_log(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    at: crate::domain::Timestamp,
    actor: &str,
    subject: String,
    kind: &str,
    detail: String,
) -> Result<()> {
    audit::append(
        tx,
        tenant,
        crate::audit::AuditEvent {
            v: 0,
            tenant: String::new(),
            index: 0,
            at: at.0,
            actor: actor.to_owned(),
            on_behalf_of: None,
            subject,
            kind: kind.to_owned(),
            detail,
            document: None,
        },
    )?;
    Ok(())
}

/// The number a record key carries after `prefix` (`evs/{t}/{first:020}`,
/// `sig/{t}/{doc}/{i:04}`): `None` if the key does not start with `prefix` or what follows is
/// not a number.
fn key_number<T: std::str::FromStr>(prefix: &str, key: &[u8]) -> Option<T> {
    let digits = key.strip_prefix(prefix.as_bytes())?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// A SHA-256 in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[cfg(test)]
mod idem_tests {
    use super::{IdemRecord, ServiceError};

    #[test]
    fn idempotent_answers_round_trip_refuse_another_request_and_read_the_old_layout() {
        let fp = "ab".repeat(32);
        let stored = IdemRecord::encode(&fp, &vec!["first".to_owned()]).expect("encode");
        let back: Vec<String> = IdemRecord::answer(&stored, &fp).expect("same request");
        assert_eq!(back, vec!["first".to_owned()]);
        let other = "cd".repeat(32);
        assert!(matches!(
            IdemRecord::answer::<Vec<String>>(&stored, &other),
            Err(ServiceError::IdempotencyMismatch)
        ));
        let legacy = format!(r#"{{"fingerprint":"{fp}","response":["old"]}}"#);
        let back: Vec<String> = IdemRecord::answer(legacy.as_bytes(), &fp).expect("legacy");
        assert_eq!(back, vec!["old".to_owned()]);
        assert!(matches!(
            IdemRecord::answer::<Vec<String>>(legacy.as_bytes(), &other),
            Err(ServiceError::IdempotencyMismatch)
        ));
        assert!(IdemRecord::answer::<Vec<String>>(b"garbage", &fp).is_err());
    }
}

#[cfg(test)]
mod id_tests {
    use super::ordered_id16;

    #[test]
    fn ordered_ids_sort_in_issue_order_and_keep_a_random_half() {
        let ids: Vec<[u8; 16]> = (0..1000).map(|_| ordered_id16().expect("id")).collect();
        // Hex keeps the byte order: the ids' keys sort as they were issued.
        let hexes: Vec<String> = ids.iter().map(hex::encode).collect();
        assert!(hexes.windows(2).all(|w| w[0] < w[1]));
        let tails: std::collections::HashSet<&[u8]> = ids.iter().map(|i| &i[8..]).collect();
        assert_eq!(tails.len(), ids.len(), "the random halves repeat");
    }
}
