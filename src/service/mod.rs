//! The application layer: authenticate, authorise, load, run a pure domain transition, store
//! the result with its indexes, log entries and idempotency record in one transaction, flush,
//! then notify watchers.
//!
//! Owns authorisation and orchestration. It must not know gRPC types (the `grpc` layer converts)
//! nor encode records itself (the `store` layer does). Blocking storage work runs on the blocking
//! pool, never on the async executor.

mod auth;
pub mod documents;
pub mod report;
pub mod signatures;
pub mod stats;
pub mod tenancy;
pub mod trust;

pub use auth::{Caller, Principal};

use crate::clock::Clock;
use crate::domain::{DocState, DocumentId, DomainError, Event, IdempotencyKey, TenantId, UserName};
use crate::store::{Store, StoreError, Tx};
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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_document_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A change published to watchers after it is durable.
#[derive(Debug, Clone)]
pub struct Notice {
    pub tenant: TenantId,
    pub concerned: Vec<UserName>,
    pub document: DocumentId,
    pub title: String,
    pub state: DocState,
    pub event: Event,
}

/// One entry of a tenant's append-only event log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub at: crate::domain::Timestamp,
    pub actor: String,
    /// What changed: `document/{id}`, `user/{name}`, `circuit/{name}/{version}`, `token/{id}`.
    pub subject: String,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct IdemRecord {
    fingerprint: String,
    response: serde_json::Value,
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
    /// When the service was opened (for the uptime in the server statistics).
    started: std::time::Instant,
}

/// 16 fresh random bytes for identifiers and secrets.
fn random16() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::getrandom(&mut b).map_err(|e| ServiceError::Internal(format!("randomness: {e}")))?;
    Ok(b)
}

impl Paraph {
    pub fn new(store: Arc<Store>, clock: Arc<dyn Clock>, limits: Limits) -> Paraph {
        let (notices, _) = broadcast::channel(4096);
        Paraph {
            store,
            clock,
            limits,
            notices,
            seals: Default::default(),
            started: std::time::Instant::now(),
        }
    }

    /// Installs a tenant's seal key (from the settings, at start-up).
    pub fn with_seal(mut self, tenant: TenantId, key: signatures::SealKey) -> Paraph {
        self.seals.insert(tenant, Arc::new(key));
        self
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

    /// Runs a mutation: one transaction (with its idempotency record), then a shared flush,
    /// then the notices. A retry with the same idempotency key returns the first answer.
    async fn mutate<R>(
        &self,
        scope: String,
        method: &'static str,
        idem: Option<Idem>,
        f: impl Fn(&mut Tx<'_>) -> Result<(R, Vec<Notice>)> + Send + 'static,
    ) -> Result<R>
    where
        R: Serialize + DeserializeOwned + Send + 'static,
    {
        let idem_key = idem
            .as_ref()
            .map(|i| format!("idem/{scope}/{method}/{}", i.key.as_str()));
        let fingerprint = idem.as_ref().map(|i| hex::encode(i.fingerprint));
        let (response, notices) = self
            .blocking(move |store| {
                store.transact(|tx| {
                    if let (Some(k), Some(fp)) = (&idem_key, &fingerprint) {
                        if let Some(rec) = tx.get::<IdemRecord>(k)? {
                            if &rec.fingerprint != fp {
                                return Err(ServiceError::IdempotencyMismatch);
                            }
                            let r: R = serde_json::from_value(rec.response).map_err(|e| {
                                ServiceError::Internal(format!("stored idempotent answer: {e}"))
                            })?;
                            return Ok((r, Vec::new()));
                        }
                    }
                    let (r, notices) = f(tx)?;
                    if let (Some(k), Some(fp)) = (&idem_key, &fingerprint) {
                        let response = serde_json::to_value(&r)
                            .map_err(|e| ServiceError::Internal(format!("encode answer: {e}")))?;
                        tx.put(
                            k,
                            &IdemRecord {
                                fingerprint: fp.clone(),
                                response,
                            },
                        )?;
                    }
                    Ok((r, notices))
                })
            })
            .await?;
        self.store.flush().await?;
        for n in notices {
            // No receiver is not an error: nobody is watching.
            let _ = self.notices.send(Arc::new(n));
        }
        Ok(response)
    }
}

/// Appends an entry to the tenant's event log inside a transaction.
fn append_log(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    at: crate::domain::Timestamp,
    actor: &str,
    subject: String,
    kind: &str,
    detail: String,
) -> Result<()> {
    let seq_key = format!("logseq/{tenant}");
    let seq: u64 = tx.get(&seq_key)?.unwrap_or(0);
    tx.put(
        &format!("log/{tenant}/{seq:020}"),
        &LogEntry {
            seq,
            at,
            actor: actor.to_owned(),
            subject,
            kind: kind.to_owned(),
            detail,
        },
    )?;
    tx.put(&seq_key, &(seq + 1))?;
    Ok(())
}

/// A SHA-256 in lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}
