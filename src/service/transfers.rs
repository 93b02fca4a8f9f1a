//! Content in and out without holding it whole per call: uploads are received into a spool
//! file of the data directory (beyond a small first part kept in memory), hashed as they
//! arrive, under a budget of bytes in flight for the whole server and for each tenant; content
//! is served piece by piece from the store, a bounded number of downloads at once.
//!
//! **Memory.** While an upload is received it holds its first MiB and the message being
//! written in memory (the rest is in its spool file). The store's write path takes the content
//! as one value in memory: when the upload is complete it is read back from the spool and
//! handed to the store (one copy, briefly two while it is moved into the store's buffer; the
//! value log is then written from that buffer without another copy), and its reservation in the
//! budget is held until the store has written it. So the content of uploads in memory at any
//! time stays within twice the upload budget, whatever the number of uploads. A download holds
//! one piece (`download_chunk_bytes`) being read and one waiting to be sent.

use super::{Caller, Result, ServiceError};
use crate::domain::{Role, TenantId};
use crate::store::{SpoolFile, Store, StoreError, ValueReader};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Uploads up to this size stay in memory; larger ones are spooled to disk.
const IN_MEMORY_MAX: usize = 1024 * 1024;

/// Bytes of uploads in flight, for the whole server and per tenant.
pub struct Budget {
    global_max: u64,
    tenant_max: u64,
    used: Mutex<(u64, HashMap<TenantId, u64>)>,
}

impl Budget {
    pub fn new(global_max: u64, tenant_max: u64) -> Arc<Budget> {
        Arc::new(Budget {
            global_max,
            tenant_max,
            used: Mutex::new((0, HashMap::new())),
        })
    }

    /// Takes `n` more bytes for `tenant`, or refuses naming the budget that is spent.
    fn take(&self, tenant: &TenantId, n: u64) -> Result<()> {
        let mut used = self
            .used
            .lock()
            .map_err(|_| ServiceError::Internal("the upload budget lock is poisoned".into()))?;
        let (global, per_tenant) = &mut *used;
        let mine = per_tenant.get(tenant).copied().unwrap_or(0);
        if mine + n > self.tenant_max {
            return Err(ServiceError::Busy(format!(
                "the tenant's uploads in progress would exceed upload_tenant_budget_bytes \
                 ({} bytes): retry later",
                self.tenant_max
            )));
        }
        if *global + n > self.global_max {
            return Err(ServiceError::Busy(format!(
                "the server's uploads in progress would exceed upload_budget_bytes \
                 ({} bytes): retry later",
                self.global_max
            )));
        }
        *global += n;
        *per_tenant.entry(tenant.clone()).or_insert(0) += n;
        Ok(())
    }

    fn give_back(&self, tenant: &TenantId, n: u64) {
        if let Ok(mut used) = self.used.lock() {
            let (global, per_tenant) = &mut *used;
            *global = global.saturating_sub(n);
            if let Some(m) = per_tenant.get_mut(tenant) {
                *m = m.saturating_sub(n);
                if *m == 0 {
                    per_tenant.remove(tenant);
                }
            }
        }
    }

    /// Bytes in flight for the whole server now.
    pub fn in_use(&self) -> u64 {
        self.used.lock().map_or(0, |u| u.0)
    }
}

/// Bytes taken from the budget, given back when dropped.
pub struct Reservation {
    budget: Arc<Budget>,
    tenant: TenantId,
    bytes: u64,
}

impl Reservation {
    fn grow(&mut self, n: u64) -> Result<()> {
        self.budget.take(&self.tenant, n)?;
        self.bytes += n;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(&self.tenant, self.bytes);
    }
}

/// Content received whole, with its SHA-256, still counted in the upload budget.
pub struct Received {
    pub(super) bytes: Vec<u8>,
    pub(super) sha256: String,
    pub(super) held: Reservation,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Received")
            .field("len", &self.bytes.len())
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl Received {
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The hex SHA-256 of the content.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

/// Why a document over `max` bytes (`max_document_bytes`) is refused: the same words
/// whichever way it came (a streamed upload, one message).
pub fn too_large(max: u64) -> String {
    format!("document exceeds max_document_bytes ({max} bytes)")
}

/// An upload being received.
pub struct Upload {
    store: Arc<Store>,
    max: u64,
    held: Reservation,
    hash: Sha256,
    memory: Vec<u8>,
    spool: Option<SpoolFile>,
    len: u64,
}

impl Upload {
    /// Appends `bytes`: counted in the budget (refused when it is spent), hashed, and kept in
    /// memory while the upload is small, in its spool file beyond.
    pub async fn push(&mut self, bytes: Vec<u8>) -> Result<()> {
        let n = bytes.len() as u64;
        if self.len + n > self.max {
            return Err(ServiceError::TooLarge(too_large(self.max)));
        }
        self.held.grow(n)?;
        self.len += n;
        if self.spool.is_none() && self.memory.len() + bytes.len() <= IN_MEMORY_MAX {
            self.hash.update(&bytes);
            self.memory.extend_from_slice(&bytes);
            return Ok(());
        }
        let spool = match self.spool.take() {
            Some(s) => s,
            None => {
                let store = self.store.clone();
                let first = std::mem::take(&mut self.memory);
                tokio::task::spawn_blocking(move || {
                    let mut s = store.spool_file()?;
                    s.write(&first)?;
                    Ok::<_, ServiceError>(s)
                })
                .await
                .map_err(|e| ServiceError::Internal(format!("blocking task: {e}")))??
            }
        };
        let hash = self.hash.clone();
        let (spool, hash) = tokio::task::spawn_blocking(move || {
            let mut spool = spool;
            let mut hash = hash;
            hash.update(&bytes);
            spool.write(&bytes)?;
            Ok::<_, ServiceError>((spool, hash))
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("blocking task: {e}")))??;
        self.spool = Some(spool);
        self.hash = hash;
        Ok(())
    }

    /// The whole content, read back from its spool file if it has one; still counted in the
    /// budget until the [`Received`] is dropped.
    pub async fn finish(self) -> Result<Received> {
        let sha256 = hex::encode(self.hash.finalize());
        let bytes = match self.spool {
            None => self.memory,
            Some(mut spool) => tokio::task::spawn_blocking(move || spool.read_all())
                .await
                .map_err(|e| ServiceError::Internal(format!("blocking task: {e}")))??,
        };
        Ok(Received {
            bytes,
            sha256,
            held: self.held,
        })
    }
}

/// A document's content being served piece by piece; holds one of the download slots.
pub struct Download {
    reader: Option<ValueReader>,
    piece: usize,
    expected: String,
    hash: Sha256,
    id: String,
    /// The content's record (`blob/TENANT/SHA256`), named when it is damaged.
    key: String,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Download {
    /// The content's length in bytes.
    pub fn len(&self) -> u64 {
        self.reader.as_ref().map_or(0, ValueReader::len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next piece (`None` at the end). The last one is given only once the whole content
    /// matched its recorded digest.
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>> {
        let Some(mut reader) = self.reader.take() else {
            return Ok(None);
        };
        let piece = self.piece;
        let (reader, got) = tokio::task::spawn_blocking(move || {
            let got = reader.next_piece(piece);
            (reader, got)
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("blocking task: {e}")))?;
        let Some(bytes) = got? else {
            return Ok(None);
        };
        self.hash.update(&bytes);
        let done = reader.remaining() == 0;
        self.reader = Some(reader);
        if done && hex::encode(self.hash.clone().finalize()) != self.expected {
            // The record is damaged (on PostgreSQL, where no checksum of ours guards it, this
            // is the only check): named, as every damaged record is, never served.
            self.reader = None;
            tracing::error!(document = %self.id, "a document's content does not match its digest");
            return Err(StoreError::Damaged {
                key: self.key.clone(),
            }
            .into());
        }
        Ok(Some(bytes))
    }
}

/// The budgets and slots of transfers, shared by every call.
pub struct Transfers {
    pub(super) uploads: Arc<Budget>,
    pub(super) downloads: Arc<tokio::sync::Semaphore>,
}

impl Transfers {
    pub fn new(limits: &super::Limits) -> Transfers {
        Transfers {
            uploads: Budget::new(
                limits.upload_budget_bytes,
                limits.upload_tenant_budget_bytes,
            ),
            downloads: Arc::new(tokio::sync::Semaphore::new(limits.max_concurrent_downloads)),
        }
    }
}

impl super::Paraph {
    /// Starts receiving a document for `caller` (who must be a submitter): nothing is taken
    /// from the budget before bytes arrive.
    pub fn begin_upload(&self, caller: &Caller) -> Result<Upload> {
        caller.require(Role::Submitter)?;
        Ok(Upload {
            store: self.store.clone(),
            max: self.limits.max_document_bytes,
            held: Reservation {
                budget: self.transfers.uploads.clone(),
                tenant: caller.tenant.clone(),
                bytes: 0,
            },
            hash: Sha256::new(),
            memory: Vec::new(),
            spool: None,
            len: 0,
        })
    }

    /// Bytes of uploads in flight now (for statistics and tests).
    pub fn uploads_in_flight(&self) -> u64 {
        self.transfers.uploads.in_use()
    }

    /// The document's content as a [`Download`] (checked against its recorded digest as it is
    /// read); refused when `max_concurrent_downloads` are already being served.
    pub async fn open_content(
        &self,
        caller: &Caller,
        id: crate::domain::DocumentId,
        revision: Option<u32>,
    ) -> Result<(crate::domain::Document, Download)> {
        let slot = self
            .transfers
            .downloads
            .clone()
            .try_acquire_owned()
            .map_err(|_| {
                ServiceError::Busy(format!(
                    "max_concurrent_downloads ({}) content downloads are in progress: retry later",
                    self.limits.max_concurrent_downloads
                ))
            })?;
        let doc = self.get_document(caller, id.clone()).await?;
        // The latest signed revision when there is one (an enveloped signature's flow), or the
        // one asked for (0: as submitted).
        let content = match revision {
            None => doc.current_content().clone(),
            Some(0) => doc.content.clone(),
            Some(n) => doc.revisions.get(n as usize - 1).cloned().ok_or_else(|| {
                crate::domain::DomainError::invalid(
                    "revision",
                    format!(
                        "document '{id}' has {} signed revision(s)",
                        doc.revisions.len()
                    ),
                )
            })?,
        };
        let key = format!("blob/{}/{}", caller.tenant, content.sha256);
        let read = key.clone();
        let reader = self
            .blocking(move |s| Ok(s.value_reader(&read)?))
            .await?
            .ok_or_else(|| ServiceError::Internal(format!("content of {id} is missing")))?;
        if reader.len() != content.size {
            // Damaged (see `Download::next`): named, never served.
            tracing::error!(document = %id, "a document's content does not have its recorded size");
            return Err(StoreError::Damaged { key }.into());
        }
        let download = Download {
            reader: Some(reader),
            piece: self.limits.download_chunk_bytes,
            expected: content.sha256.clone(),
            hash: Sha256::new(),
            id: id.to_string(),
            key,
            _slot: slot,
        };
        Ok((doc, download))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_beyond_the_tenant_share_and_the_whole_and_is_given_back() {
        let budget = Budget::new(100, 60);
        let a = TenantId::parse("ville-a").expect("tenant");
        let b = TenantId::parse("ville-b").expect("tenant");
        let hold = |t: &TenantId| Reservation {
            budget: budget.clone(),
            tenant: t.clone(),
            bytes: 0,
        };
        let mut first = hold(&a);
        first.grow(50).expect("within both");
        let e = first.grow(20).expect_err("beyond the tenant's share");
        assert!(e.to_string().contains("upload_tenant_budget_bytes"), "{e}");
        let mut other = hold(&b);
        other.grow(50).expect("another tenant's share");
        let e = other.grow(10).expect_err("beyond the whole");
        assert!(e.to_string().contains("upload_budget_bytes ("), "{e}");
        assert_eq!(budget.in_use(), 100);
        drop(first);
        assert_eq!(budget.in_use(), 50);
        other.grow(10).expect("room again");
        drop(other);
        assert_eq!(budget.in_use(), 0);
    }
}
