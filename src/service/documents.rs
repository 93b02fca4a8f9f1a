//! Documents: submission, reading, the inbox index, visas, rejection and withdrawal.

use super::{ordered_id16, Caller, Idem, Notice, Paraph, Result, ServiceError};
use crate::domain::{
    CircuitName, ContentRef, Document, DocumentId, DocumentType, DomainError, NewDocument, Role,
    TenantId, Transition, User, UserName,
};
use crate::store::{Reads, Store, Tx};
use std::collections::BTreeMap;

/// A submission as received at the edge: its content received whole (see
/// [`super::transfers`]), measured and hashed, still counted in the upload budget.
#[derive(Debug)]
pub struct Submission {
    pub doc_type: DocumentType,
    pub title: String,
    pub circuit: CircuitName,
    pub metadata: BTreeMap<String, String>,
    pub file_name: Option<String>,
    /// As requested (`Auto` is resolved from the content).
    pub format: crate::domain::SignatureFormat,
    pub content: super::transfers::Received,
}

/// What a document's content holds, read by the server (see [`Paraph::content_summary`]).
#[derive(Debug, Clone)]
pub struct ContentSummary {
    pub format: crate::domain::SignatureFormat,
    /// The revision summarised.
    pub sha256: String,
    /// A PES flow's bordereaux, in document order; empty for the other formats.
    pub bordereaux: Vec<crate::formats::xades_pes::BordereauStatus>,
}

/// Beneficiaries named per bordereau in a summary.
const SUMMARY_NAMES: usize = 3;

/// One line of an inbox.
#[derive(Debug, Clone)]
pub struct InboxItem {
    pub document: Document,
    pub step: usize,
    /// The actors whose shares reached the caller through a delegation or escalation.
    pub on_behalf_of: Vec<UserName>,
    pub route: Option<crate::domain::RouteKind>,
}

fn doc_key(tenant: &TenantId, id: &DocumentId) -> String {
    format!("doc/{tenant}/{id}")
}

fn inbox_key(doc: &Document, user: &UserName) -> Option<String> {
    let step = doc.active_step()?;
    let since = doc.steps[step].activated_at?.0;
    Some(format!(
        "inbox/{}/{}/{since:020}/{}",
        doc.tenant, user, doc.id
    ))
}

/// `submitted/{t}/{user}/{created:020}/{id}`: the submitter's index of his documents.
pub(super) fn submitted_key(doc: &Document) -> String {
    format!(
        "submitted/{}/{}/{:020}/{}",
        doc.tenant,
        doc.submitter,
        doc.created_at.0.max(0),
        doc.id
    )
}

/// Marks that every document stored before the `submitted/` keys existed has its key.
const SUBMITTED_INDEX_DONE: &str = "meta/submitted-index";

/// Stores a transition: the document, its inbox entries, its log entries; returns notices.
pub(super) fn record(
    tx: &mut Tx<'_>,
    before: Option<&Document>,
    t: &Transition,
) -> Result<Vec<Notice>> {
    let doc = &t.document;
    if before.is_none() {
        tx.put_raw(&submitted_key(doc), b"")?;
    }
    if let Some(b) = before {
        for u in b.waiting_for() {
            if let Some(k) = inbox_key(b, &u) {
                tx.remove(&k)?;
            }
        }
        if let Some(k) = super::delegation::due_key(b) {
            tx.remove(&k)?;
        }
    }
    for u in doc.waiting_for() {
        if let Some(k) = inbox_key(doc, &u) {
            tx.put_raw(&k, b"")?;
        }
    }
    if let Some(k) = super::delegation::due_key(doc) {
        tx.put_raw(&k, b"")?;
    }
    tx.put(&doc_key(&doc.tenant, &doc.id), doc)?;
    super::audit::append_document_events(
        tx,
        doc,
        t.events
            .iter()
            .map(|ev| (ev, crate::audit::commit::logged_detail(ev))),
    )?;
    let concerned = doc.concerned();
    let mut notices = Vec::with_capacity(t.events.len());
    for ev in &t.events {
        notices.push(Notice {
            tenant: doc.tenant.clone(),
            concerned: concerned.clone(),
            document: doc.id.clone(),
            title: doc.title.clone(),
            state: doc.state,
            event: ev.clone(),
        });
    }
    Ok(notices)
}

/// What follows every transition in the same storage transaction: the server applies seal
/// steps it reached, then the active step is routed to delegates if its actors are absent.
pub(super) fn settle(
    tx: &mut Tx<'_>,
    seal: Option<&std::sync::Arc<super::signatures::SealKey>>,
    t: Transition,
    now: crate::domain::Timestamp,
) -> Result<Transition> {
    let t = super::signatures::settle_seals(tx, seal, t, now)?;
    super::delegation::reroute_in(tx, t, now)
}

/// Loads a document of the caller's tenant; another tenant's is simply not found.
fn load(tx_or_store: Either<'_, '_>, tenant: &TenantId, id: &DocumentId) -> Result<Document> {
    let key = doc_key(tenant, id);
    // An acknowledged document has an audit chain: one missing while its chain is there was
    // lost by the store (a damaged index), which is not "not found".
    let witness = format!("evdoc/{tenant}/{id}");
    let (doc, witnessed) = match tx_or_store {
        Either::Tx(tx) => match tx.get(&key)? {
            Some(d) => (Some(d), true),
            None => (None, tx.exists(&witness)?),
        },
        Either::Store(s) => match s.get(&key)? {
            Some(d) => (Some(d), true),
            None => (None, s.get_raw(&witness)?.is_some()),
        },
    };
    match doc {
        Some(d) => Ok(d),
        None if witnessed => Err(crate::store::StoreError::Missing { key, witness }.into()),
        None => Err(DomainError::NotFound(format!("document '{id}'")).into()),
    }
}

enum Either<'a, 'b> {
    Tx(&'a Tx<'b>),
    Store(&'a Store),
}

/// Readers of a document: people it concerns, admins and auditors.
fn may_read(caller: &Caller, doc: &Document) -> Result<()> {
    if caller.oversees() || doc.concerned().contains(&caller.name) {
        Ok(())
    } else if let Some(early) = doc.not_yet_active_for(&caller.name) {
        // An actor of a later step knows the document exists: he is told he is early.
        Err(early.into())
    } else {
        Err(DomainError::Forbidden(format!(
            "'{}' is not concerned by this document",
            caller.name
        ))
        .into())
    }
}

impl Paraph {
    pub async fn submit(
        &self,
        caller: &Caller,
        sub: Submission,
        idem: Option<Idem>,
    ) -> Result<Document> {
        caller.require(Role::Submitter)?;
        if sub.content.len() as u64 > self.limits.max_document_bytes {
            return Err(ServiceError::TooLarge(super::transfers::too_large(
                self.limits.max_document_bytes,
            )));
        }
        if sub.content.is_empty() {
            return Err(DomainError::invalid("content", "the document is empty").into());
        }
        if let Some(f) = &sub.file_name {
            if f.len() > 255 || f.chars().any(|c| c.is_control() || c == '/' || c == '\\') {
                return Err(DomainError::invalid(
                    "file_name",
                    "at most 255 bytes, no path separators or control characters",
                )
                .into());
            }
        }
        let (format, pdf) = check_format(
            sub.format,
            &sub.content.bytes,
            self.limits.pes.max_bordereaux,
        )?;
        let now = self.clock.now();
        let id = DocumentId::from_random(ordered_id16()?);
        let trail = format!("evdoc/{}/{id}", caller.tenant);
        let sha = sub.content.sha256.clone();
        let tenant = caller.tenant.clone();
        let submitter = caller.name.clone();
        // The reservation in the upload budget is held until the store has the content.
        let received = sub.content;
        let content = sled::IVec::from(received.bytes.as_slice());
        drop(received.bytes);
        let held = received.held;
        let new = NewDocument {
            id,
            tenant: tenant.clone(),
            doc_type: sub.doc_type,
            title: sub.title,
            metadata: sub.metadata,
            content: ContentRef {
                sha256: sha.clone(),
                size: content.len() as u64,
                file_name: sub.file_name.filter(|f| !f.is_empty()),
            },
            submitter: submitter.clone(),
        };
        let circuit_name = sub.circuit;
        let seal = self.seals.get(&tenant).cloned();
        // The content (stored once per tenant), the new document's audit trail (none yet) and
        // what routing its first step reads.
        let reads = super::delegation::routing_reads(
            Reads::new().key(format!("blob/{tenant}/{sha}")).key(trail),
            &tenant,
            now,
        );
        let stored = self
            .mutate_reading(
                format!("{tenant}/{submitter}"),
                "SubmitDocument",
                idem,
                reads,
                move |tx| {
                    let circuit = {
                        // Circuits are immutable once written: reading outside the transaction is safe.
                        let latest: Option<u32> =
                            tx.get(&format!("circuitlatest/{tenant}/{circuit_name}"))?;
                        let version = latest.ok_or_else(|| {
                            DomainError::NotFound(format!("circuit '{circuit_name}'"))
                        })?;
                        tx.get::<crate::domain::Circuit>(&format!(
                            "circuit/{tenant}/{circuit_name}/{version:010}"
                        ))?
                        .ok_or_else(|| DomainError::NotFound(format!("circuit '{circuit_name}'")))?
                    };
                    if let Some(pdf) = &pdf {
                        pdf.fits(&circuit.steps).map_err(|(field, reason)| {
                            DomainError::invalid("content", format!("{field}: {reason}"))
                        })?;
                    }
                    let officers = officers_by_role(tx, &tenant)?;
                    let members = |r: Role| officers.get(&r).cloned().unwrap_or_default();
                    let t = Document::submit_as(new.clone(), format, &circuit, &members, now)?;
                    let t = settle(tx, seal.as_ref(), t, now)?;
                    let blob = format!("blob/{tenant}/{sha}");
                    if !tx.exists(&blob)? {
                        tx.put_shared(&blob, content)?;
                    }
                    let notices = record(tx, None, &t)?;
                    Ok((t.document, notices))
                },
            )
            .await;
        drop(held);
        stored
    }

    pub async fn get_document(&self, caller: &Caller, id: DocumentId) -> Result<Document> {
        let c = caller.clone();
        self.blocking(move |s| {
            let doc = load(Either::Store(s), &c.tenant, &id)?;
            may_read(&c, &doc)?;
            Ok(doc)
        })
        .await
    }

    /// Documents waiting for the caller, oldest first; `after` is the previous page's token.
    pub async fn inbox(
        &self,
        caller: &Caller,
        page_size: usize,
        after: Option<String>,
    ) -> Result<(Vec<InboxItem>, Option<String>)> {
        let c = caller.clone();
        if let Some(a) = &after {
            let ok = a.len() == 53
                && a.as_bytes()[20] == b'/'
                && a[..20].bytes().all(|b| b.is_ascii_digit())
                && DocumentId::parse(&a[21..]).is_ok();
            if !ok {
                return Err(DomainError::invalid(
                    "page_token",
                    "not a token returned by ListInbox",
                )
                .into());
            }
        }
        self.blocking(move |s| {
            let prefix = format!("inbox/{}/{}/", c.tenant, c.name);
            let keys = s.scan_keys(&prefix, after.as_deref(), page_size + 1)?;
            let more = keys.len() > page_size;
            let mut items = Vec::new();
            for k in keys.iter().take(page_size) {
                let Some(id) = k.rsplit('/').next() else {
                    continue;
                };
                let id = DocumentId::parse(id)
                    .map_err(|_| ServiceError::Internal(format!("bad inbox key {k}")))?;
                let doc = load(Either::Store(s), &c.tenant, &id)?;
                if let Some(step) = doc.active_step() {
                    let st = &doc.steps[step];
                    let own = st.open_shares().contains(&c.name);
                    let (on_behalf_of, route) = if own {
                        (Vec::new(), None)
                    } else {
                        let shares = st.routed_to(&c.name);
                        let route = shares
                            .first()
                            .and_then(|a| st.routes.get(a))
                            .map(|r| r.kind);
                        (shares, route)
                    };
                    items.push(InboxItem {
                        document: doc,
                        step,
                        on_behalf_of,
                        route,
                    });
                }
            }
            let next = if more {
                keys.get(page_size - 1).cloned()
            } else {
                None
            };
            Ok((items, next))
        })
        .await
    }

    /// The documents the caller submitted (read whole: their steps make the progress), newest
    /// first, those in `state` only when given;
    /// `before` is the previous page's token. A page holds at most `page_size` documents and
    /// looks at no more than [`SUBMITTED_SCAN`] keys, so that a filter matching few documents
    /// still answers quickly: a short page with a token means more may follow.
    pub async fn submitted(
        &self,
        caller: &Caller,
        page_size: usize,
        before: Option<String>,
        state: Option<crate::domain::DocState>,
    ) -> Result<(Vec<Document>, Option<String>)> {
        caller.require(Role::Submitter)?;
        // A page of none would hand back the token it was given, forever.
        let page_size = page_size.max(1);
        if let Some(b) = &before {
            let ok = b.len() == 53
                && b.as_bytes()[20] == b'/'
                && b[..20].bytes().all(|c| c.is_ascii_digit())
                && DocumentId::parse(&b[21..]).is_ok();
            if !ok {
                return Err(DomainError::invalid(
                    "page_token",
                    "not a token returned by ListSubmitted",
                )
                .into());
            }
        }
        let c = caller.clone();
        self.blocking(move |s| {
            let prefix = format!("submitted/{}/{}/", c.tenant, c.name);
            let mut out = Vec::new();
            let mut cursor = before;
            let mut looked = 0;
            loop {
                let want = (page_size - out.len() + 1).min(SUBMITTED_SCAN - looked);
                let keys = s.scan_keys_rev(&prefix, cursor.as_deref(), want)?;
                let exhausted = keys.len() < want;
                for k in &keys {
                    looked += 1;
                    let id = k
                        .rsplit('/')
                        .next()
                        .and_then(|id| DocumentId::parse(id).ok())
                        .ok_or_else(|| ServiceError::Internal(format!("bad submitted key {k}")))?;
                    if out.len() == page_size {
                        // One more exists: the page ends at the last one taken.
                        return Ok((out, cursor));
                    }
                    cursor = Some(k.clone());
                    let doc = load(Either::Store(s), &c.tenant, &id)?;
                    if state.is_none_or(|st| doc.state == st) {
                        out.push(doc);
                    }
                }
                if exhausted {
                    return Ok((out, None));
                }
                if looked >= SUBMITTED_SCAN {
                    return Ok((out, cursor));
                }
            }
        })
        .await
    }

    /// The summary of a document's content (the latest revision, or `revision`): for a PES
    /// flow, its bordereaux with their signatures. Same readers as the document; the content
    /// is read like a download (its slot, its digest checked) and parsed on the validation pool.
    pub async fn content_summary(
        &self,
        caller: &Caller,
        id: DocumentId,
        revision: Option<u32>,
    ) -> Result<ContentSummary> {
        let (doc, mut download) = self.open_content(caller, id, revision).await?;
        let sha256 = match revision {
            None => doc.current_content().sha256.clone(),
            Some(0) => doc.content.sha256.clone(),
            Some(n) => doc
                .revisions
                .get(n as usize - 1)
                .map(|c| c.sha256.clone())
                .unwrap_or_default(),
        };
        let format = doc.format;
        if format != crate::domain::SignatureFormat::XadesPes {
            return Ok(ContentSummary {
                format,
                sha256,
                bordereaux: Vec::new(),
            });
        }
        let mut content = Vec::with_capacity(usize::try_from(download.len()).unwrap_or(0));
        while let Some(piece) = download.next().await? {
            content.extend_from_slice(&piece);
        }
        drop(download);
        let bordereaux = self
            .heavy
            .run(move || {
                crate::formats::xades_pes::bordereaux(&content, SUMMARY_NAMES).map_err(|e| {
                    ServiceError::Internal(format!("the stored PES flow does not parse: {e}"))
                })
            })
            .await?;
        Ok(ContentSummary {
            format,
            sha256,
            bordereaux,
        })
    }

    /// Gives every document stored before the `submitted/` index existed its key, a batch of
    /// documents per transaction; run when the store is opened, before any request, and only
    /// until it has completed once (`meta/submitted-index`).
    pub fn backfill_submitted_blocking(&self) -> Result<usize> {
        if self.store.get_raw(SUBMITTED_INDEX_DONE)?.is_some() {
            return Ok(0);
        }
        const BATCH: usize = 256;
        let mut after: Option<String> = None;
        let mut added = 0;
        loop {
            let docs: Vec<(String, Document)> = self.store.scan("doc/", after.as_deref(), BATCH)?;
            let Some((last, _)) = docs.last() else {
                break;
            };
            after = last.strip_prefix("doc/").map(str::to_owned);
            let keys: Vec<String> = docs.iter().map(|(_, d)| submitted_key(d)).collect();
            added += self.store.transact_blocking(move |tx| {
                let mut n = 0;
                for k in &keys {
                    if !tx.exists(k)? {
                        tx.put_raw(k, b"")?;
                        n += 1;
                    }
                }
                Ok::<_, ServiceError>(n)
            })?;
            if docs.len() < BATCH {
                break;
            }
        }
        let now = self.clock.now();
        self.store.transact_blocking(move |tx| {
            tx.put(SUBMITTED_INDEX_DONE, &now)?;
            Ok::<_, ServiceError>(())
        })?;
        if added > 0 {
            tracing::info!(
                documents = added,
                "indexed the documents stored by an older version under their submitters"
            );
        }
        Ok(added)
    }

    async fn transition(
        &self,
        caller: &Caller,
        method: &'static str,
        id: DocumentId,
        idem: Option<Idem>,
        f: impl Fn(
                Document,
                &UserName,
                crate::domain::Timestamp,
            ) -> std::result::Result<Transition, DomainError>
            + Send
            + 'static,
    ) -> Result<Document> {
        let now = self.clock.now();
        let c = caller.clone();
        let seal = self.seals.get(&caller.tenant).cloned();
        let reads = super::delegation::routing_reads(
            Reads::new().key(doc_key(&caller.tenant, &id)),
            &caller.tenant,
            now,
        );
        self.mutate_reading(
            format!("{}/{}", caller.tenant, caller.name),
            method,
            idem,
            reads,
            move |tx| {
                let before = load(Either::Tx(&*tx), &c.tenant, &id)?;
                let t = f(before.clone(), &c.name, now)?;
                let t = settle(tx, seal.as_ref(), t, now)?;
                let notices = record(tx, Some(&before), &t)?;
                Ok((t.document, notices))
            },
        )
        .await
    }

    pub async fn approve(
        &self,
        caller: &Caller,
        id: DocumentId,
        step: Option<u32>,
        comment: Option<String>,
        idem: Option<Idem>,
    ) -> Result<Document> {
        caller.require(Role::Officer)?;
        self.transition(caller, "Approve", id, idem, move |d, who, now| {
            d.approve(who, step, comment.clone(), now)
        })
        .await
    }

    pub async fn reject(
        &self,
        caller: &Caller,
        id: DocumentId,
        step: Option<u32>,
        reason: String,
        idem: Option<Idem>,
    ) -> Result<Document> {
        caller.require(Role::Officer)?;
        self.transition(caller, "Reject", id, idem, move |d, who, now| {
            d.reject(who, step, &reason, now)
        })
        .await
    }

    pub async fn withdraw(
        &self,
        caller: &Caller,
        id: DocumentId,
        reason: String,
        idem: Option<Idem>,
    ) -> Result<Document> {
        caller.require(Role::Submitter)?;
        self.transition(caller, "Withdraw", id, idem, move |d, who, now| {
            d.withdraw(who, &reason, now)
        })
        .await
    }
}

/// The most `submitted/` keys one page of [`Paraph::submitted`] looks at.
const SUBMITTED_SCAN: usize = 2000;

/// The format a submission is signed in: `auto` resolved from the content, and a PES flow
/// checked (well-formed, root `PES_Aller`, references for every signature) before it is kept;
/// for a PDF, what the circuit's PDF options are checked against.
fn check_format(
    requested: crate::domain::SignatureFormat,
    content: &[u8],
    max_bordereaux: usize,
) -> Result<(
    crate::domain::SignatureFormat,
    Option<crate::formats::pades::PdfFacts>,
)> {
    use crate::domain::SignatureFormat as F;
    match crate::formats::resolve(requested, content) {
        F::Pades => {
            let facts = crate::formats::pades::check(content).map_err(|e| {
                ServiceError::from(DomainError::invalid(
                    "content",
                    format!("PDF (signature format pades): {e}"),
                ))
            })?;
            Ok((F::Pades, Some(facts)))
        }
        F::XadesPes => {
            let targets = crate::formats::xades_pes::targets(content).map_err(|e| {
                ServiceError::from(DomainError::invalid("content", format!("PES flow: {e}")))
            })?;
            if targets.len() > max_bordereaux {
                return Err(ServiceError::TooLarge(format!(
                    "the PES flow has {} bordereaux to sign, more than pes.max_bordereaux ({max_bordereaux})",
                    targets.len()
                )));
            }
            Ok((F::XadesPes, None))
        }
        other => Ok((other, None)),
    }
}

/// Officers of the tenant grouped by each role they hold (for `role:NAME` actors).
fn officers_by_role(tx: &Tx<'_>, tenant: &TenantId) -> Result<BTreeMap<Role, Vec<UserName>>> {
    // Transactions cannot scan; the user list is kept under one key for this purpose.
    let users: Vec<User> = tx.get(&format!("userlist/{tenant}"))?.unwrap_or_default();
    let mut out: BTreeMap<Role, Vec<UserName>> = BTreeMap::new();
    for u in users.into_iter().filter(|u| u.has(Role::Officer)) {
        for r in &u.roles {
            out.entry(*r).or_default().push(u.name.clone());
        }
    }
    Ok(out)
}
