//! Persistence of domain records in an embedded sled database.
//!
//! Owns the key layout, record encoding and atomicity: every mutation runs as ONE sled
//! transaction (records, indexes, event log and idempotency record together), under a single
//! writer lock so that concurrent mutations never interleave, and callers flush before replying
//! ([`Store::flush`]; concurrent flushes are shared, which gives group commit). It knows nothing
//! of gRPC, authorisation or workflow rules.
//!
//! Key layout (one tree, `/`-separated, every tenant-scoped key starts with the tenant id):
//!
//! | prefix | value |
//! |---|---|
//! | `meta/init` | bootstrap marker |
//! | `tenant/{t}` | Tenant |
//! | `user/{t}/{user}` | User |
//! | `userlist/{t}` | every User of the tenant (transactions cannot scan) |
//! | `token/{sha256}` | TokenRecord (the secret itself is never stored) |
//! | `tokenid/{id}` | sha256 of the token with that id |
//! | `circuit/{t}/{name}/{version:010}` | Circuit |
//! | `circuitlatest/{t}/{name}` | latest version number |
//! | `doc/{t}/{id}` | Document |
//! | `blob/{t}/{sha256}` | document content |
//! | `inbox/{t}/{user}/{since:020}/{id}` | empty: the document waits for the user |
//! | `ev/{t}/{index:020}` | canonical audit event bytes: leaf `index` of the tenant's log |
//! | `mt/{t}/{level:02}/{index:020}` | 32-byte hash of a perfect subtree of the tenant's log |
//! | `mthead/{t}` | head of the tenant's log: size, root, right-edge subtree hashes |
//! | `evdoc/{t}/{doc}` | the document's event indexes and the leaf hash of the last one |
//! | `ckpt/{t}` | the latest signed checkpoint of the tenant's log |
//! | `sig/{t}/{doc}/{i:04}`, `sigcount/{t}/{doc}` | SignatureRecord i of a document, their count |
//! | `sighash/{t}/{doc}/{i:04}` | hex SHA-256 of signature i's CMS (for its audit event) |
//! | `prep/{t}/{id}` | a pending signature Preparation |
//! | `trust/{t}` | TrustSettings |
//! | `absences/{t}` | every Absence of the tenant (transactions cannot scan) |
//! | `due/{t}/{due:020}/{doc}` | empty: the document's active step is due then |
//! | `idem/{t}/{caller}/{method}/{key}` | IdemRecord |

use serde::{de::DeserializeOwned, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage failure: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored record {key} is unreadable: {source}")]
    Corrupt {
        key: String,
        source: serde_json::Error,
    },
    #[error("record encoding failed: {0}")]
    Encode(serde_json::Error),
    #[error("the writer lock is poisoned")]
    Poisoned,
}

/// The embedded database.
pub struct Store {
    db: sled::Db,
    tree: sled::Tree,
    writer: Mutex<()>,
    /// Group commit: flush requests are numbered; one flush at a time covers every request
    /// numbered before it started.
    flush_requests: std::sync::atomic::AtomicU64,
    flushed: tokio::sync::Mutex<u64>,
}

fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(StoreError::Encode)
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(256 * 1024 * 1024)
            .open()?;
        let tree = db.open_tree("paraph")?;
        Ok(Store {
            db,
            tree,
            writer: Mutex::new(()),
            flush_requests: std::sync::atomic::AtomicU64::new(0),
            flushed: tokio::sync::Mutex::new(0),
        })
    }

    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.tree.get(key.as_bytes())? {
            Some(v) => Ok(Some(decode(key.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    pub fn get_raw(&self, key: &str) -> Result<Option<sled::IVec>, StoreError> {
        Ok(self.tree.get(key.as_bytes())?)
    }

    /// Records under `prefix`, in key order, starting strictly after `after` when given,
    /// at most `limit` of them.
    pub fn scan<T: DeserializeOwned>(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        let iter = match after {
            Some(a) => {
                let start = format!("{prefix}{a}\u{0}");
                self.tree.range(start.into_bytes()..)
            }
            None => self.tree.range(prefix.as_bytes().to_vec()..),
        };
        for item in iter {
            let (k, v) = item?;
            if !k.starts_with(prefix.as_bytes()) || out.len() >= limit {
                break;
            }
            let key = String::from_utf8_lossy(&k).into_owned();
            out.push((key, decode(&k, &v)?));
        }
        Ok(out)
    }

    /// Keys under `prefix` (values ignored), with the prefix stripped.
    pub fn scan_keys(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        let iter = match after {
            Some(a) => self.tree.range(format!("{prefix}{a}\u{0}").into_bytes()..),
            None => self.tree.range(prefix.as_bytes().to_vec()..),
        };
        for item in iter {
            let (k, _) = item?;
            if !k.starts_with(prefix.as_bytes()) || out.len() >= limit {
                break;
            }
            out.push(String::from_utf8_lossy(&k[prefix.len()..]).into_owned());
        }
        Ok(out)
    }

    /// The last record under `prefix` in key order.
    pub fn last<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Option<(String, T)>, StoreError> {
        match self.tree.scan_prefix(prefix.as_bytes()).next_back() {
            Some(item) => {
                let (k, v) = item?;
                Ok(Some((
                    String::from_utf8_lossy(&k).into_owned(),
                    decode(&k, &v)?,
                )))
            }
            None => Ok(None),
        }
    }

    /// Runs `f` as one atomic transaction, serialised with every other writer. `f` may be run
    /// more than once and must have no side effects besides the ones on `Tx`.
    pub fn transact<R, E>(&self, f: impl Fn(&mut Tx<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        let _guard = self
            .writer
            .lock()
            .map_err(|_| E::from(StoreError::Poisoned))?;
        let result = self.tree.transaction(|t| {
            let mut tx = Tx {
                t,
                marks: Vec::new(),
            };
            f(&mut tx).map_err(ConflictableTransactionError::Abort)
        });
        match result {
            Ok(r) => Ok(r),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(E::from(StoreError::Sled(e))),
        }
    }

    /// Makes every transaction committed before the call durable. Concurrent callers share
    /// the same fsync (group commit): while one flush runs, the callers queue, and the next
    /// flush covers all of them at once.
    ///
    /// sled 0.34's own `flush_async` can deadlock when called concurrently (sled issue #1308),
    /// so flushes are serialised here and run the synchronous `flush` on the blocking pool.
    pub async fn flush(&self) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering;
        // Every commit of this caller happened before this number was taken.
        let request = self.flush_requests.fetch_add(1, Ordering::SeqCst) + 1;
        let mut flushed = self.flushed.lock().await;
        if *flushed >= request {
            // A flush that started after our request already covered our commits.
            return Ok(());
        }
        // This flush covers every request numbered up to now.
        let covers = self.flush_requests.load(Ordering::SeqCst);
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| {
                StoreError::Sled(sled::Error::ReportableBug(format!("flush task: {e}")))
            })??;
        *flushed = covers;
        Ok(())
    }

    /// Synchronous flush, for shutdown and command-line tools.
    pub fn flush_sync(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

/// The view of the store inside a transaction.
pub struct Tx<'a> {
    t: &'a TransactionalTree,
    /// Notes the transaction's code leaves for the end of the same transaction (e.g. which
    /// audit logs grew and need a new checkpoint), deduplicated, in order.
    marks: Vec<String>,
}

fn tx_err(e: sled::transaction::UnabortableTransactionError) -> StoreError {
    match e {
        sled::transaction::UnabortableTransactionError::Storage(e) => StoreError::Sled(e),
        // A conflict cannot happen under the writer lock; report it as a storage failure.
        sled::transaction::UnabortableTransactionError::Conflict => {
            StoreError::Sled(sled::Error::Unsupported("transaction conflict".into()))
        }
    }
}

impl Tx<'_> {
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        match self.t.get(key.as_bytes()).map_err(tx_err)? {
            Some(v) => Ok(Some(decode(key.as_bytes(), &v)?)),
            None => Ok(None),
        }
    }

    pub fn exists(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.t.get(key.as_bytes()).map_err(tx_err)?.is_some())
    }

    pub fn get_raw(&self, key: &str) -> Result<Option<sled::IVec>, StoreError> {
        self.t.get(key.as_bytes()).map_err(tx_err)
    }

    /// Leaves a note for the end of this transaction (kept once).
    pub fn mark(&mut self, note: String) {
        if !self.marks.contains(&note) {
            self.marks.push(note);
        }
    }

    /// The notes left so far, emptied.
    pub fn take_marks(&mut self) -> Vec<String> {
        std::mem::take(&mut self.marks)
    }

    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), StoreError> {
        self.t
            .insert(key.as_bytes(), encode(value)?)
            .map_err(tx_err)?;
        Ok(())
    }

    pub fn put_raw(&mut self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.t.insert(key.as_bytes(), value).map_err(tx_err)?;
        Ok(())
    }

    pub fn remove(&mut self, key: &str) -> Result<(), StoreError> {
        self.t.remove(key.as_bytes()).map_err(tx_err)?;
        Ok(())
    }
}
