//! The tenants' audit logs in the store: every change appends its canonical event to the
//! tenant's RFC 6962 Merkle tree in the same transaction as the change itself, and each group
//! of transactions the store commits together ends by signing a checkpoint of each log it grew
//! (the store's commit hook). Serves checkpoints, inclusion
//! and consistency proofs, event listings and evidence bundles to the tenant's admins and
//! auditors.
//!
//! Owns the storage of the log (event bytes, tree nodes, sizes, per-document chains,
//! checkpoints). The hashing, proofs, checkpoint format and bundle format are `crate::audit`'s;
//! this module must not re-implement them.

use super::{Caller, Paraph, Result, ServiceError};
use crate::audit::bundle::{
    BundleEvent, BundleRevision, BundleSignature, EvidenceBundle, B64, BUNDLE_FORMAT,
};
use crate::audit::merkle::{self, Appender};
use crate::audit::{
    AuditError, AuditEvent, AuditKey, Checkpoint, DocumentFacts, Hash, NodeSource, SignedCheckpoint,
};
use crate::domain::{Document, DocumentId, DomainError, Event, EventKind, TenantId, Timestamp};
use crate::store::{Store, Tx};
use serde::{Deserialize, Serialize};

/// The mark a transaction leaves when it grows a tenant's log.
const MARK: &str = "audit/";

/// The origin line of a tenant's log in its checkpoints.
pub fn origin(tenant: &TenantId) -> String {
    format!("paraph/{tenant}")
}

fn node_key(t: &TenantId, level: u8, index: u64) -> String {
    format!("mt/{t}/{level:02}/{index:020}")
}
fn head_key(t: &TenantId) -> String {
    format!("mthead/{t}")
}

/// The head of a tenant's log, kept in one record so that an append and a checkpoint read one
/// key instead of the O(log n) nodes of the tree's right edge: the size, the root, and the
/// perfect subtrees ("peaks") making up the tree, one per set bit of the size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct LogHead {
    size: u64,
    root: Hash,
    /// `(level, index, hash)`, largest subtree first.
    peaks: Vec<(u8, u64, Hash)>,
}

impl LogHead {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(40 + self.peaks.len() * 41);
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.root);
        for (l, i, h) in &self.peaks {
            out.push(*l);
            out.extend_from_slice(&i.to_be_bytes());
            out.extend_from_slice(h);
        }
        out
    }

    fn decode(b: &[u8]) -> Result<LogHead> {
        let bad = || ServiceError::Internal("corrupt audit log head".into());
        if b.len() < 40 || (b.len() - 40) % 41 != 0 {
            return Err(bad());
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&b[0..8]);
        let size = u64::from_be_bytes(size);
        let root = hash_of(&b[8..40])?;
        let mut peaks = Vec::new();
        for c in b[40..].chunks(41) {
            let mut i = [0u8; 8];
            i.copy_from_slice(&c[1..9]);
            peaks.push((c[0], u64::from_be_bytes(i), hash_of(&c[9..41])?));
        }
        if peaks.len() != size.count_ones() as usize {
            return Err(bad());
        }
        Ok(LogHead { size, root, peaks })
    }

    fn empty() -> LogHead {
        LogHead {
            size: 0,
            root: merkle::EMPTY_ROOT,
            peaks: Vec::new(),
        }
    }
}

fn read_head_tx(tx: &Tx<'_>, t: &TenantId) -> Result<LogHead> {
    match tx.get_raw(&head_key(t))? {
        Some(b) => LogHead::decode(&b),
        None => Ok(LogHead::empty()),
    }
}

fn read_head(s: &Store, t: &TenantId) -> Result<LogHead> {
    match s.get_raw(&head_key(t))? {
        Some(b) => LogHead::decode(&b),
        None => Ok(LogHead::empty()),
    }
}

/// The peaks of the head first, then the stored nodes.
struct HeadNodes<'a, S> {
    head: &'a LogHead,
    inner: S,
}

impl<S: NodeSource<Error = ServiceError>> NodeSource for HeadNodes<'_, S> {
    type Error = ServiceError;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>> {
        if let Some((_, _, h)) = self
            .head
            .peaks
            .iter()
            .find(|(l, i, _)| *l == level && *i == index)
        {
            return Ok(Some(*h));
        }
        self.inner.node(level, index)
    }
}
/// `ev/{t}/{index:020}`: one event alone, as logs were written before event batches.
fn event_key(t: &TenantId, index: u64) -> String {
    format!("ev/{t}/{index:020}")
}
fn event_batch_prefix(t: &TenantId) -> String {
    format!("evs/{t}/")
}
/// `evs/{t}/{first:020}`: consecutive events from index `first` on, appended by one
/// transaction or by several of one group (see [`put_events`]).
fn event_batch_key(t: &TenantId, first: u64) -> String {
    format!("evs/{t}/{first:020}")
}

/// Events as one batch record, each as a 4-byte big-endian length then its canonical bytes, so
/// that two batches one after the other are the batch of all their events.
fn encode_event_batch(events: &[Vec<u8>]) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(events.iter().map(|e| e.len() + 4).sum());
    for e in events {
        let len = u32::try_from(e.len())
            .map_err(|_| ServiceError::Internal("an audit event over 4 GiB".into()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// The index of the first event of the batch stored under `key`.
fn batch_first(prefix: &str, key: &[u8]) -> Result<u64> {
    super::key_number(prefix, key)
        .ok_or_else(|| ServiceError::Internal("corrupt audit event batch key".into()))
}

/// How many events a batch holds; a batch that does not parse is an error.
fn events_in_batch(mut batch: &[u8]) -> Result<u64> {
    let mut n = 0u64;
    while !batch.is_empty() {
        batch = next_in_batch(batch)?.1;
        n += 1;
    }
    Ok(n)
}

/// The first event of a non-empty batch, and the rest of the batch.
fn next_in_batch(batch: &[u8]) -> Result<(&[u8], &[u8])> {
    let bad = || ServiceError::Internal("corrupt audit event batch".into());
    let (len, tail) = batch.split_first_chunk::<4>().ok_or_else(bad)?;
    let len = u32::from_be_bytes(*len) as usize;
    if tail.len() < len {
        return Err(bad());
    }
    Ok(tail.split_at(len))
}

/// The `nth` event of a batch; `None` if the batch holds fewer. A batch that does not parse is
/// an error, never a shorter batch.
fn event_in_batch(mut batch: &[u8], nth: u64) -> Result<Option<&[u8]>> {
    let mut n = 0u64;
    while !batch.is_empty() {
        let (event, tail) = next_in_batch(batch)?;
        if n == nth {
            return Ok(Some(event));
        }
        batch = tail;
        n += 1;
    }
    Ok(None)
}

/// The records of a tenant's log as a transaction or a plain read sees them.
trait LogRecords {
    fn get(&self, key: &str) -> Result<Option<sled::IVec>>;
    /// The record under `prefix` with the greatest key at or before `key`, with its key.
    fn floor(&self, prefix: &str, key: &str) -> Result<Option<(sled::IVec, sled::IVec)>>;
}

impl LogRecords for Tx<'_> {
    fn get(&self, key: &str) -> Result<Option<sled::IVec>> {
        Ok(self.get_raw(key)?)
    }
    fn floor(&self, prefix: &str, key: &str) -> Result<Option<(sled::IVec, sled::IVec)>> {
        Ok(self.floor_raw(prefix, key)?)
    }
}

impl LogRecords for Store {
    fn get(&self, key: &str) -> Result<Option<sled::IVec>> {
        Ok(self.get_raw(key)?)
    }
    fn floor(&self, prefix: &str, key: &str) -> Result<Option<(sled::IVec, sled::IVec)>> {
        Ok(self.floor_raw(prefix, key)?)
    }
}

/// The canonical bytes of event `index` of a tenant's log: from the batch holding it, else
/// (logs written before batches) from its own record.
fn read_event(log: &dyn LogRecords, tenant: &TenantId, index: u64) -> Result<Option<Vec<u8>>> {
    let prefix = event_batch_prefix(tenant);
    if let Some((key, batch)) = log.floor(&prefix, &event_batch_key(tenant, index))? {
        let first = batch_first(&prefix, &key)?;
        let nth = index
            .checked_sub(first)
            .ok_or_else(|| ServiceError::Internal("corrupt audit event batch key".into()))?;
        if let Some(event) = event_in_batch(&batch, nth)? {
            return Ok(Some(event.to_vec()));
        }
    }
    Ok(log.get(&event_key(tenant, index))?.map(|e| e.to_vec()))
}

/// [`read_event`], where a missing event is an error naming it.
fn stored_event(log: &dyn LogRecords, tenant: &TenantId, index: u64) -> Result<Vec<u8>> {
    read_event(log, tenant, index)?
        .ok_or_else(|| ServiceError::Internal(format!("event {index} is missing")))
}
fn doc_log_key(t: &TenantId, doc: &DocumentId) -> String {
    format!("evdoc/{t}/{doc}")
}
fn checkpoint_key(t: &TenantId) -> String {
    format!("ckpt/{t}")
}

/// A document's place in the log.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct DocLog {
    indexes: Vec<u64>,
    /// Hex leaf hash of the last event.
    last: String,
}

impl From<AuditError> for ServiceError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::IndexOutOfRange { .. } | AuditError::SizesOutOfOrder { .. } => {
                DomainError::invalid("index", e.to_string()).into()
            }
            other => ServiceError::Internal(format!("audit log: {other}")),
        }
    }
}

fn hash_of(bytes: &[u8]) -> Result<Hash> {
    Ok(merkle::hash_from_slice(bytes)?)
}

/// Only every `NODE_STRIDE`-th level of a log's tree is stored (levels 4, 8, …): a leaf is
/// the hash of its stored event and a node of another level is recomputed from its children,
/// at most 2^(NODE_STRIDE-1) reads away from a stored level. An append then writes one node
/// per 16 events instead of one per event, and a proof reads at most 15 records per band of 4
/// levels. Logs written when every level was stored read the same: their extra nodes are
/// simply not consulted.
const NODE_STRIDE: u8 = 4;

/// Reads (or recomputes) the node at `level`, `index` of a tenant's log.
fn node_through(
    log: &dyn LogRecords,
    tenant: &TenantId,
    level: u8,
    index: u64,
) -> Result<Option<Hash>> {
    if level == 0 {
        return Ok(read_event(log, tenant, index)?.map(|e| merkle::leaf_hash(&e)));
    }
    if level % NODE_STRIDE == 0 {
        return match log.get(&node_key(tenant, level, index))? {
            Some(v) => Ok(Some(hash_of(&v)?)),
            None => Ok(None),
        };
    }
    let Some(left) = node_through(log, tenant, level - 1, 2 * index)? else {
        return Ok(None);
    };
    let Some(right) = node_through(log, tenant, level - 1, 2 * index + 1)? else {
        return Ok(None);
    };
    Ok(Some(merkle::node_hash(&left, &right)))
}

/// The log's nodes as seen inside a transaction.
struct TxNodes<'a, 'b> {
    tx: &'a Tx<'b>,
    tenant: &'a TenantId,
}

impl NodeSource for TxNodes<'_, '_> {
    type Error = ServiceError;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>> {
        node_through(self.tx, self.tenant, level, index)
    }
}

/// The log's nodes read from the store outside a transaction. Nodes are written once and never
/// change, so reads for a size already committed are consistent.
struct StoreNodes<'a> {
    store: &'a Store,
    tenant: &'a TenantId,
}

impl NodeSource for StoreNodes<'_> {
    type Error = ServiceError;
    fn node(&self, level: u8, index: u64) -> Result<Option<Hash>> {
        node_through(self.store, self.tenant, level, index)
    }
}

/// Appends `event` (its index is assigned here) to its tenant's log inside the transaction.
pub(super) fn append(tx: &mut Tx<'_>, tenant: &TenantId, event: AuditEvent) -> Result<()> {
    append_all(tx, tenant, vec![event], |_, _| {})?;
    Ok(())
}

/// Appends `events` in order to the tenant's log inside the transaction (their indexes are
/// assigned here), reading and writing the log's head once. `link` sees each event, with the
/// leaf hash of the one appended before it in this call, before the event is sealed. Returns
/// the index of the first event and the leaf hash of the last.
fn append_all(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    events: Vec<AuditEvent>,
    mut link: impl FnMut(&mut AuditEvent, Option<&Hash>),
) -> Result<(u64, Option<Hash>)> {
    let head = read_head_tx(tx, tenant)?;
    let first = head.size;
    let mut sealed = Vec::with_capacity(events.len());
    let mut last: Option<Hash> = None;
    for (n, mut event) in (first..).zip(events) {
        event.index = n;
        event.tenant = tenant.to_string();
        event.v = crate::audit::event::EVENT_FORMAT;
        link(&mut event, last.as_ref());
        let bytes = event.canonical()?;
        last = Some(merkle::leaf_hash(&bytes));
        sealed.push(bytes);
    }
    let (writes, next) = {
        let src = HeadNodes {
            head: &head,
            inner: TxNodes { tx, tenant },
        };
        let mut appender = Appender::new(&src, first)?;
        for bytes in &sealed {
            appender.append(bytes)?;
        }
        let new_size = appender.size();
        // The new peaks are new nodes or old peaks: both are visible through the appender.
        let mut peaks = Vec::with_capacity(new_size.count_ones() as usize);
        for level in (0..64u8).rev() {
            if (new_size >> level) & 1 == 1 {
                let index = (new_size >> level) - 1;
                let h = appender
                    .node(level, index)?
                    .ok_or(AuditError::MissingNode { level, index })?;
                peaks.push((level, index, h));
            }
        }
        let next = LogHead {
            size: new_size,
            root: appender.root(),
            peaks,
        };
        (appender.writes(), next)
    };
    // Leaves are not stored as nodes (a leaf hash is the hash of the stored event), nor are
    // the levels between the stored ones.
    for w in writes
        .iter()
        .filter(|w| w.level % NODE_STRIDE == 0 && w.level > 0)
    {
        tx.put_raw(&node_key(tenant, w.level, w.index), &w.hash)?;
    }
    tx.put_raw(&head_key(tenant), &next.encode())?;
    if !sealed.is_empty() {
        put_events(tx, tenant, first, &sealed)?;
    }
    tx.mark(format!("{MARK}{tenant}"));
    Ok((first, last))
}

/// A batch record grows over the appends of one group until it holds this many bytes.
const BATCH_BYTES: usize = 32 * 1024;

/// Stores `sealed`, the events from index `first` on: appended to the batch record an earlier
/// append of the same group wrote, if it ends right before `first` and is not full, else as a
/// new batch. A group of concurrent documents then leaves one record per 32 KiB of events
/// instead of one per transition: fewer keys in the index, and fewer to apply.
fn put_events(tx: &mut Tx<'_>, tenant: &TenantId, first: u64, sealed: &[Vec<u8>]) -> Result<()> {
    let events = encode_event_batch(sealed)?;
    let prefix = event_batch_prefix(tenant);
    if let Some((key, batch)) = tx.floor_in_group(&prefix, &event_batch_key(tenant, first)) {
        let start = batch_first(&prefix, &key)?;
        if batch.len() < BATCH_BYTES && start + events_in_batch(&batch)? == first {
            let mut grown = Vec::with_capacity(batch.len() + events.len());
            grown.extend_from_slice(&batch);
            grown.extend_from_slice(&events);
            tx.put_raw(&event_batch_key(tenant, start), &grown)?;
            return Ok(());
        }
    }
    tx.put_raw(&event_batch_key(tenant, first), &events)?;
    Ok(())
}

/// Appends events of a document's history (with their details), chained to the document's
/// previous one and to each other, reading and writing the document's place in the log once.
pub(super) fn append_document_events<'e>(
    tx: &mut Tx<'_>,
    doc: &Document,
    events: impl IntoIterator<Item = (&'e Event, String)>,
) -> Result<()> {
    let key = doc_log_key(&doc.tenant, &doc.id);
    let mut log: DocLog = tx.get(&key)?.unwrap_or_default();
    let mut audit_events = Vec::new();
    let record_sha256 = crate::audit::commit::record_sha256(doc)?;
    for (ev, detail) in events {
        let (signature_sha256, signature_description_sha256) = match ev.signature {
            Some(i) => (
                Some(super::signatures::cms_sha256(tx, &doc.tenant, &doc.id, i)?),
                Some(super::signatures::description_sha256(
                    tx,
                    &doc.tenant,
                    &doc.id,
                    i,
                )?),
            ),
            None => (None, None),
        };
        let description_sha256 = match ev.kind {
            EventKind::Submitted => Some(crate::audit::commit::description_sha256(doc)?),
            _ => None,
        };
        // A format that signs inside the content makes one revision per signature, in order:
        // signature #i created revision i + 1.
        let (revision, revision_sha256) = match ev.signature {
            Some(i) if doc.format.signs_inside() => match doc.revisions.get(i as usize) {
                Some(r) => (Some(i + 1), Some(r.sha256.clone())),
                None => (None, None),
            },
            _ => (None, None),
        };
        audit_events.push(AuditEvent {
            v: 0,
            tenant: String::new(),
            index: 0,
            at: ev.at.0,
            actor: ev
                .actor
                .as_ref()
                .map(|a| a.to_string())
                .unwrap_or_else(|| "_system".into()),
            on_behalf_of: ev.on_behalf_of.as_ref().map(|u| u.to_string()),
            subject: format!("document/{}", doc.id),
            kind: ev.kind.as_str().to_owned(),
            detail,
            document: Some(DocumentFacts {
                id: doc.id.to_string(),
                seq: ev.seq,
                step: ev.step,
                state: ev.kind.state_after().as_str().to_owned(),
                content_sha256: doc.content.sha256.clone(),
                signature: ev.signature,
                signature_sha256,
                prev: String::new(),
                description_sha256,
                record_sha256: Some(record_sha256.clone()),
                signature_description_sha256,
                revision,
                revision_sha256,
            }),
        });
    }
    let count = audit_events.len() as u64;
    if count == 0 {
        return Ok(());
    }
    let before = log.last.clone();
    let (first, last) = append_all(tx, &doc.tenant, audit_events, |event, prev| {
        if let Some(facts) = event.document.as_mut() {
            facts.prev = prev.map_or_else(|| before.clone(), hex::encode);
        }
    })?;
    log.indexes.extend(first..first + count);
    if let Some(leaf) = last {
        log.last = hex::encode(leaf);
    }
    tx.put(&key, &log)?;
    Ok(())
}

/// The log size a request names in `field`: 0 means the current size; beyond it is refused.
fn requested_size(
    s: &Store,
    tenant: &TenantId,
    requested: u64,
    field: &'static str,
) -> Result<u64> {
    let current = read_head(s, tenant)?.size;
    match requested {
        0 => Ok(current),
        n if n > current => {
            Err(DomainError::invalid(field, format!("the log has {current} events")).into())
        }
        n => Ok(n),
    }
}

/// Signs a checkpoint of every log the group of mutations grew (the store's commit hook, at
/// the end of each group: one signature per tenant and group, not per mutation).
pub(super) fn checkpoint_marked(
    tx: &mut Tx<'_>,
    marks: &[String],
    key: &AuditKey,
    now: Timestamp,
) -> Result<()> {
    for m in marks {
        let Some(t) = m.strip_prefix(MARK) else {
            continue;
        };
        sign_checkpoint(tx, &TenantId::parse(t)?, key, now)?;
    }
    Ok(())
}

/// Signs and stores a checkpoint of the tenant's log as it is in this transaction.
fn sign_checkpoint(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    key: &AuditKey,
    now: Timestamp,
) -> Result<SignedCheckpoint> {
    let head = read_head_tx(tx, tenant)?;
    let signed = key.sign(&Checkpoint {
        origin: origin(tenant),
        size: head.size,
        root: head.root,
        time: now.0.max(0),
    })?;
    tx.put_raw(&checkpoint_key(tenant), signed.encode().as_bytes())?;
    Ok(signed)
}

/// The stored checkpoint when it covers the whole log, else a new one signed now.
fn covering_checkpoint(
    tx: &mut Tx<'_>,
    tenant: &TenantId,
    key: &AuditKey,
    now: Timestamp,
) -> Result<SignedCheckpoint> {
    let size = read_head_tx(tx, tenant)?.size;
    if let Some(raw) = tx.get_raw(&checkpoint_key(tenant))? {
        let c = SignedCheckpoint::decode(&raw)?;
        if c.checkpoint.size == size {
            return Ok(c);
        }
    }
    sign_checkpoint(tx, tenant, key, now)
}

/// How ListEvents selects events.
#[derive(Debug, Clone)]
pub enum EventFilter {
    Document(DocumentId),
    Range { start: u64, count: u64 },
}

/// One stored event.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub index: u64,
    pub bytes: Vec<u8>,
}

/// Most events returned by one ListEvents call.
pub const MAX_EVENTS_PER_CALL: u64 = 1000;

impl Paraph {
    fn require_audit(&self, caller: &Caller) -> Result<std::sync::Arc<AuditKey>> {
        if !caller.oversees() {
            return Err(DomainError::Forbidden(
                "the audit log is for the tenant's auditors and admins".into(),
            )
            .into());
        }
        self.audit_key
            .clone()
            .ok_or_else(|| ServiceError::Internal("no audit key is configured".into()))
    }

    /// A tenant whose stored checkpoint this server's audit key did not sign, if any (the
    /// first tenant holding one is looked at: one key signs every tenant's log). Replicas
    /// must all sign with the same key: one started with another would sign the same logs
    /// with a key their verifiers do not know.
    pub fn checkpoints_signed_by_another_key(&self) -> Result<Option<TenantId>> {
        let Some(key) = &self.audit_key else {
            return Ok(None);
        };
        for t in self.store.scan_keys("tenant/", None, usize::MAX)? {
            let tenant = TenantId::parse(&t)
                .map_err(|_| ServiceError::Internal(format!("bad tenant key {t}")))?;
            if let Some(raw) = self.store.get_raw(&checkpoint_key(&tenant))? {
                let signed = SignedCheckpoint::decode(&raw)?;
                return Ok(signed
                    .verify(key.public_key(), &origin(&tenant))
                    .is_err()
                    .then_some(tenant));
            }
        }
        Ok(None)
    }

    /// The log's public key (PEM), to verify checkpoints offline.
    pub fn audit_public_key_pem(&self) -> Result<Vec<u8>> {
        let key = self
            .audit_key
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no audit key is configured".into()))?;
        Ok(key.public_key().to_pem()?)
    }

    /// The latest checkpoint of the caller's tenant log, signed now if the stored one is
    /// older than the log.
    pub async fn checkpoint(&self, caller: &Caller) -> Result<SignedCheckpoint> {
        let key = self.require_audit(caller)?;
        let tenant = caller.tenant.clone();
        let now = self.clock.now();
        self.store
            .transact(move |tx| covering_checkpoint(tx, &tenant, &key, now))
            .await
    }

    /// An inclusion proof of leaf `index` in the tree of `size` leaves (0: the current size),
    /// with the leaf's event bytes.
    pub async fn inclusion_proof(
        &self,
        caller: &Caller,
        index: u64,
        size: u64,
    ) -> Result<(StoredEvent, u64, Vec<Hash>)> {
        self.require_audit(caller)?;
        let tenant = caller.tenant.clone();
        self.blocking(move |s| {
            let size = requested_size(s, &tenant, size, "tree_size")?;
            let proof = merkle::inclusion_proof(
                &StoreNodes {
                    store: s,
                    tenant: &tenant,
                },
                index,
                size,
            )?;
            let bytes = stored_event(s, &tenant, index)?;
            Ok((StoredEvent { index, bytes }, size, proof))
        })
        .await
    }

    /// A consistency proof between two sizes of the caller's tenant log (`new` 0: current).
    pub async fn consistency_proof(
        &self,
        caller: &Caller,
        old: u64,
        new: u64,
    ) -> Result<(u64, Vec<Hash>)> {
        self.require_audit(caller)?;
        let tenant = caller.tenant.clone();
        self.blocking(move |s| {
            let new = requested_size(s, &tenant, new, "new_size")?;
            let proof = merkle::consistency_proof(
                &StoreNodes {
                    store: s,
                    tenant: &tenant,
                },
                old,
                new,
            )?;
            Ok((new, proof))
        })
        .await
    }

    /// Events of a document, or of an index range (at most [`MAX_EVENTS_PER_CALL`]).
    pub async fn list_events(
        &self,
        caller: &Caller,
        filter: EventFilter,
    ) -> Result<Vec<StoredEvent>> {
        self.require_audit(caller)?;
        let tenant = caller.tenant.clone();
        self.blocking(move |s| {
            let indexes: Vec<u64> = match filter {
                EventFilter::Document(id) => {
                    if s.get_raw(&format!("doc/{tenant}/{id}"))?.is_none() {
                        return Err(DomainError::NotFound(format!("document '{id}'")).into());
                    }
                    s.get::<DocLog>(&doc_log_key(&tenant, &id))?
                        .unwrap_or_default()
                        .indexes
                }
                EventFilter::Range { start, count } => {
                    let size = read_head(s, &tenant)?.size;
                    let end = start
                        .saturating_add(count.clamp(1, MAX_EVENTS_PER_CALL))
                        .min(size);
                    (start..end).collect()
                }
            };
            indexes
                .into_iter()
                .map(|i| {
                    Ok(StoredEvent {
                        index: i,
                        bytes: stored_event(s, &tenant, i)?,
                    })
                })
                .collect()
        })
        .await
    }

    /// The evidence bundle of a document, assembled in one transaction so that the record, its
    /// events, the proofs and the checkpoint agree.
    pub async fn export_evidence(&self, caller: &Caller, id: DocumentId) -> Result<EvidenceBundle> {
        let key = self.require_audit(caller)?;
        let tenant = caller.tenant.clone();
        let now = self.clock.now();
        self.store
            .transact(move |tx| {
                let doc: Document = tx
                    .get(&format!("doc/{tenant}/{id}"))?
                    .ok_or_else(|| DomainError::NotFound(format!("document '{id}'")))?;
                let content = tx
                    .get_raw(&format!("blob/{tenant}/{}", doc.content.sha256))?
                    .ok_or_else(|| ServiceError::Internal(format!("content of {id} is missing")))?;
                let count = super::signatures::signature_count(tx, &tenant, &id)?;
                let mut signatures = Vec::new();
                // Each certificate and CRL once, by hash, however many signatures use it.
                let mut material = std::collections::BTreeMap::new();
                let mut by_hash = |ders: &[crate::validation::Der]| -> Vec<String> {
                    ders.iter()
                        .map(|d| {
                            let h = super::sha256_hex(&d.0);
                            material
                                .entry(h.clone())
                                .or_insert_with(|| B64(d.0.clone()));
                            h
                        })
                        .collect()
                };
                for i in 0..count {
                    let r = super::signatures::signature_at(tx, &tenant, &id, i)?
                        .with_material(&tenant, &|k| Ok(tx.get_raw(k)?))?;
                    let chain_refs = by_hash(&r.chain);
                    // The CMS without its CRLs, when putting them back gives the one the log
                    // recorded (always for records stored now; records stored before are
                    // checked, and kept whole otherwise).
                    let whole = r.whole_cms()?;
                    let bare = if r.crls.is_empty() {
                        None
                    } else if r.crls_detached {
                        Some(r.cms.0.clone())
                    } else {
                        let crls: Vec<Vec<u8>> = r.crls.iter().map(|d| d.0.clone()).collect();
                        crate::crypto::with_crls(&r.cms.0, &[]).ok().filter(|b| {
                            crate::crypto::with_crls(b, &crls).ok().as_deref()
                                == Some(whole.as_slice())
                        })
                    };
                    let (cms, crls, crl_refs) = match bare {
                        Some(b) => (b, Vec::new(), by_hash(&r.crls)),
                        None => (
                            whole,
                            r.crls.iter().map(|c| B64(c.0.clone())).collect(),
                            Vec::new(),
                        ),
                    };
                    signatures.push(BundleSignature {
                        index: r.index,
                        step: r.step,
                        signer: r.signer.to_string(),
                        on_behalf_of: r.on_behalf_of.as_ref().map(|u| u.to_string()),
                        absence: r.absence.as_ref().map(|a| a.to_string()),
                        route: r.route.map(|k| k.as_str().to_owned()),
                        seal: r.seal,
                        level: r.level,
                        signing_time: r.signing_time.0,
                        subject: r.subject.clone(),
                        cms: B64(cms),
                        chain: Vec::new(),
                        crls,
                        chain_refs,
                        crl_refs,
                    });
                }
                let checkpoint = covering_checkpoint(tx, &tenant, &key, now)?;
                let size = checkpoint.checkpoint.size;
                let log: DocLog = tx.get(&doc_log_key(&tenant, &id))?.unwrap_or_default();
                let src = TxNodes {
                    tx,
                    tenant: &tenant,
                };
                let mut events = Vec::new();
                let mut decoded = Vec::new();
                for i in &log.indexes {
                    let bytes = stored_event(tx, &tenant, *i)?;
                    decoded.push(AuditEvent::parse(&bytes)?);
                    let proof = merkle::inclusion_proof(&src, *i, size)?;
                    events.push(BundleEvent {
                        index: *i,
                        event: B64(bytes),
                        proof: proof.iter().map(hex::encode).collect(),
                    });
                }
                // Every signed revision (PES, PAdES): each signature is checked in the one it
                // created.
                let mut revisions = Vec::with_capacity(doc.revisions.len());
                for (i, r) in doc.revisions.iter().enumerate() {
                    let bytes = tx
                        .get_raw(&format!("blob/{tenant}/{}", r.sha256))?
                        .ok_or_else(|| {
                            ServiceError::Internal(format!("revision {} of {id} is missing", i + 1))
                        })?;
                    revisions.push(BundleRevision {
                        revision: i as u32 + 1,
                        content: B64(bytes.to_vec()),
                    });
                }
                let summary = crate::audit::bundle::summary(&doc, &decoded);
                Ok(EvidenceBundle {
                    format: BUNDLE_FORMAT.to_owned(),
                    tenant: tenant.to_string(),
                    origin: origin(&tenant),
                    document: doc,
                    content: B64(content.to_vec()),
                    signatures,
                    events,
                    checkpoint: checkpoint.encode(),
                    summary,
                    material,
                    revisions,
                })
            })
            .await
    }
}

/// Verifies the stored log of `tenant` for `paraph admin check`: every event of its head's size
/// is there and parses, the root recomputed from them is the head's, and its last signed
/// checkpoint (signed by `key`, when given) has the root of its first `size` events. Returns
/// each problem found, naming the record.
pub(super) fn check_log(
    store: &Store,
    tenant: &TenantId,
    key: Option<&crate::audit::AuditPublicKey>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let head = match read_head(store, tenant) {
        Ok(h) => h,
        Err(e) => return vec![format!("{}: {e}", head_key(tenant))],
    };
    // Every perfect subtree, from the leaves up, recomputed from the events alone.
    let mut nodes = merkle::MemNodes::new();
    let mut level: Vec<Hash> = Vec::with_capacity(head.size as usize);
    for i in 0..head.size {
        match stored_event(store, tenant, i) {
            Ok(bytes) => {
                if let Err(e) = AuditEvent::parse(&bytes) {
                    problems.push(format!("audit event {i} of tenant {tenant}: {e}"));
                }
                level.push(merkle::leaf_hash(&bytes));
            }
            Err(e) => {
                problems.push(format!("audit event {i} of tenant {tenant}: {e}"));
                return problems;
            }
        }
    }
    let mut depth = 0u8;
    while !level.is_empty() {
        for (i, h) in level.iter().enumerate() {
            nodes.put(depth, i as u64, *h);
        }
        level = level
            .chunks_exact(2)
            .map(|p| merkle::node_hash(&p[0], &p[1]))
            .collect();
        depth += 1;
    }
    let root_of = |size: u64| merkle::root(&nodes, size);
    match root_of(head.size) {
        Ok(r) if r == head.root => {}
        Ok(_) => problems.push(format!(
            "{}: the root of the tenant's {} events is not the head's",
            head_key(tenant),
            head.size
        )),
        Err(e) => problems.push(format!("{}: {e}", head_key(tenant))),
    }
    let raw = match store.get_raw(&checkpoint_key(tenant)) {
        Ok(raw) => raw,
        Err(e) => {
            problems.push(format!("{}: {e}", checkpoint_key(tenant)));
            return problems;
        }
    };
    let Some(raw) = raw else {
        if head.size > 0 {
            problems.push(format!(
                "{}: missing, while the log holds {} events",
                checkpoint_key(tenant),
                head.size
            ));
        }
        return problems;
    };
    let signed = match SignedCheckpoint::decode(&raw) {
        Ok(s) => s,
        Err(e) => {
            problems.push(format!("{}: {e}", checkpoint_key(tenant)));
            return problems;
        }
    };
    let checkpoint = match key {
        Some(k) => match signed.verify(k, &origin(tenant)) {
            Ok(c) => c.clone(),
            Err(e) => {
                problems.push(format!("{}: {e}", checkpoint_key(tenant)));
                return problems;
            }
        },
        None => signed.checkpoint.clone(),
    };
    if checkpoint.size > head.size {
        problems.push(format!(
            "{}: signs {} events, the log holds {}",
            checkpoint_key(tenant),
            checkpoint.size,
            head.size
        ));
        return problems;
    }
    match root_of(checkpoint.size) {
        Ok(r) if r == checkpoint.root => {}
        Ok(_) => problems.push(format!(
            "{}: the root of the tenant's first {} events is not the signed one",
            checkpoint_key(tenant),
            checkpoint.size
        )),
        Err(e) => problems.push(format!("{}: {e}", checkpoint_key(tenant))),
    }
    problems
}

#[cfg(test)]
mod event_batch_tests {
    use super::*;

    #[test]
    fn events_read_back_from_batches_and_from_the_older_one_record_layout() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("open");
        let t = TenantId::parse("t1").expect("tenant");
        let ev = |i: u64| format!("{{\"event\":{i}}}").into_bytes();
        let (tt, big) = (t.clone(), vec![b'x'; 400]);
        store
            .transact_blocking(move |tx| {
                // Events 0 and 1 as older logs stored them, 2..5 in two batches.
                tx.put_raw(&event_key(&tt, 0), &ev(0))?;
                tx.put_raw(&event_key(&tt, 1), &ev(1))?;
                tx.put_raw(
                    &event_batch_key(&tt, 2),
                    &encode_event_batch(&[ev(2), ev(3)])?,
                )?;
                tx.put_raw(
                    &event_batch_key(&tt, 4),
                    &encode_event_batch(&[big, ev(5)])?,
                )?;
                // Read back inside the transaction, before anything is applied.
                assert_eq!(read_event(tx, &tt, 3)?, Some(ev(3)));
                Ok::<_, ServiceError>(())
            })
            .expect("commit");
        for i in [0, 1, 2, 3, 5] {
            assert_eq!(
                read_event(&store, &t, i).expect("read"),
                Some(ev(i)),
                "event {i}"
            );
        }
        assert_eq!(
            read_event(&store, &t, 4).expect("read"),
            Some(vec![b'x'; 400])
        );
        assert_eq!(read_event(&store, &t, 6).expect("read"), None);
        let other = TenantId::parse("t2").expect("tenant");
        assert_eq!(
            read_event(&store, &other, 3).expect("read"),
            None,
            "another tenant's log"
        );
        // A batch key that is not an index is an error, not a missing event.
        let bad = TenantId::parse("t3").expect("tenant");
        let bb = bad.clone();
        store
            .transact_blocking(move |tx| {
                tx.put_raw(
                    &format!("{}00000000000000000002x", event_batch_prefix(&bb)),
                    &encode_event_batch(&[ev(2)])?,
                )?;
                Ok::<_, ServiceError>(())
            })
            .expect("commit");
        let err = read_event(&store, &bad, 3).expect_err("a corrupt batch key");
        assert!(err.to_string().contains("batch key"), "{err}");
        // A batch cut short is an error, not a shorter batch.
        let batch = encode_event_batch(&[ev(7), ev(8)]).expect("encode");
        assert_eq!(event_in_batch(&batch, 1).expect("parse"), Some(&ev(8)[..]));
        assert!(event_in_batch(&batch[..batch.len() - 1], 1).is_err());
        assert!(event_in_batch(&batch[..2], 0).is_err());
        assert_eq!(events_in_batch(&batch).expect("parse"), 2);
        assert!(events_in_batch(&batch[..batch.len() - 1]).is_err());
    }

    #[test]
    fn appends_of_one_group_share_one_batch_record_until_it_is_full() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(dir.path()).expect("open");
        let t = TenantId::parse("t1").expect("tenant");
        let event = |detail: usize| AuditEvent {
            v: 0,
            tenant: String::new(),
            index: 0,
            at: 1,
            actor: "alice".into(),
            on_behalf_of: None,
            subject: "user/alice".into(),
            kind: "test".into(),
            detail: "d".repeat(detail),
            document: None,
        };
        let tt = t.clone();
        store
            .transact_blocking(move |tx| {
                append_all(tx, &tt, vec![event(10), event(10)], |_, _| {})?;
                append_all(tx, &tt, vec![event(10)], |_, _| {})?;
                Ok::<_, ServiceError>(())
            })
            .expect("commit");
        let batches = || {
            store
                .scan_keys(&event_batch_prefix(&t), None, 10)
                .expect("scan")
        };
        assert_eq!(batches(), [format!("{:020}", 0)], "two appends, one record");
        // A later group starts its own record, which grows until it holds 32 KiB.
        let tt = t.clone();
        store
            .transact_blocking(move |tx| {
                for _ in 0..3 {
                    append_all(tx, &tt, vec![event(20_000)], |_, _| {})?;
                }
                Ok::<_, ServiceError>(())
            })
            .expect("commit");
        let keys: Vec<String> = [0, 3, 5].iter().map(|i| format!("{i:020}")).collect();
        assert_eq!(batches(), keys);
        for i in 0..6 {
            let bytes = stored_event(&store, &t, i).expect("read");
            let e = AuditEvent::parse(&bytes).expect("parse");
            assert_eq!(e.index, i);
            assert_eq!(e.detail.len(), if i < 3 { 10 } else { 20_000 });
        }
        assert_eq!(read_event(&store, &t, 6).expect("read"), None);
        let nodes = StoreNodes {
            store: &store,
            tenant: &t,
        };
        let head = read_head(&store, &t).expect("head");
        assert_eq!(head.size, 6);
        assert_eq!(merkle::root(&nodes, 6).expect("root"), head.root);
    }
}
