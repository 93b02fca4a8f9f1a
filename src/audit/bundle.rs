//! Evidence bundles: everything an auditor needs to check, offline and without trusting the
//! server, what happened to one document — the document record and content, its signatures with
//! the chains and CRLs used at signing time, its events with inclusion proofs, a signed
//! checkpoint, and a human-readable summary.
//!
//! This module owns the bundle format (one JSON file; binary members in base64) and the summary.
//! Verification (checkpoint, proofs, event chain, agreement with the document, signature
//! hashes) takes the cryptographic validation of each CMS signature from the caller, so this
//! layer needs no certificate policy of its own.

use super::checkpoint::{AuditPublicKey, SignedCheckpoint};
use super::event::{AuditEvent, DocumentFacts};
use super::merkle::{self, Hash};
use super::AuditError;
use crate::domain::{Action, ActionKind, DocState, Document, Event, EventKind};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use std::collections::{BTreeMap, BTreeSet};

/// Version tag of the bundle format written now: version 3 is version 2 with the document's
/// signed content revisions ([`EvidenceBundle::revisions`]), so that signatures made inside the
/// content (PES, PAdES) are verified too.
pub const BUNDLE_FORMAT: &str = "paraph-evidence/3";

/// Version 2, still read: each certificate and CRL once, in [`EvidenceBundle::material`],
/// signatures naming them by hash; no revisions.
pub const BUNDLE_FORMAT_V2: &str = "paraph-evidence/2";

/// The version before, still read: each signature holds its chain and CRLs itself.
pub const BUNDLE_FORMAT_V1: &str = "paraph-evidence/1";

/// Bytes written as standard base64 in JSON.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct B64(pub Vec<u8>);

impl Serialize for B64 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for B64 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<B64, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s.as_bytes())
            .map(B64)
            .map_err(serde::de::Error::custom)
    }
}

/// The whole bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceBundle {
    pub format: String,
    pub tenant: String,
    /// The log's origin line, as in the checkpoint.
    pub origin: String,
    /// The document record as the server holds it (state, steps, actions, history).
    pub document: Document,
    /// The document content.
    pub content: B64,
    pub signatures: Vec<BundleSignature>,
    /// The document's events, in order, each with its inclusion proof at the checkpoint.
    pub events: Vec<BundleEvent>,
    /// The signed checkpoint (`SignedCheckpoint::encode`).
    pub checkpoint: String,
    /// Who did what, when and on behalf of whom: derived from the events (see [`summary`]).
    pub summary: String,
    /// The certificates and CRLs the signatures name by hash (lowercase hex SHA-256 of the DER
    /// → DER), each once however many signatures rely on it. Every entry must be named by a
    /// signature and match its hash.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub material: BTreeMap<String, B64>,
    /// The signed content revisions of a document whose signatures go inside its content (PES,
    /// PAdES), each with its number (1, 2, …: revision `i + 1` was created by signature `#i`);
    /// `content` stays the submitted content (revision 0). Each must match the SHA-256 the
    /// document record and the event that created it name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<BundleRevision>,
}

/// One signed content revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRevision {
    pub revision: u32,
    pub content: B64,
}

/// One signature with the validation material used when it was made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSignature {
    pub index: u32,
    pub step: u32,
    pub signer: String,
    pub on_behalf_of: Option<String>,
    pub absence: Option<String>,
    pub route: Option<String>,
    pub seal: bool,
    pub level: u8,
    pub signing_time: i64,
    pub subject: String,
    /// Detached CMS SignedData (DER). With `crl_refs`, without the CRLs: the CMS whose hash the
    /// log recorded is this one with those CRLs put back (see [`crate::crypto::with_crls`]).
    pub cms: B64,
    /// The validated chain, signer first (DER); empty when given by `chain_refs`.
    pub chain: Vec<B64>,
    /// The CRLs used (DER); empty when given by `crl_refs`.
    pub crls: Vec<B64>,
    /// The chain by hash (keys of [`EvidenceBundle::material`]), signer first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub chain_refs: Vec<String>,
    /// The CRLs used by hash (keys of [`EvidenceBundle::material`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crl_refs: Vec<String>,
}

/// One event of the document with its proof.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEvent {
    /// Leaf index in the tenant log.
    pub index: u64,
    /// The canonical event bytes (the Merkle leaf).
    pub event: B64,
    /// Inclusion proof at the checkpoint's size, lowercase hex hashes.
    pub proof: Vec<String>,
}

/// The human-readable summary of a document's events: one line per event, in order, saying
/// who did what, when, and on behalf of whom. Deterministic, so a verifier recomputes it.
pub fn summary(document: &Document, events: &[crate::audit::AuditEvent]) -> String {
    let mut out = format!(
        "Document {} \"{}\" ({}), circuit {} v{}, submitted by {}; state {}.\n",
        document.id,
        document.title,
        document.doc_type.as_str(),
        document.circuit.0,
        document.circuit.1,
        document.submitter,
        document.state.as_str()
    );
    for e in events {
        let when = crate::pki::format_rfc3339(e.at);
        let step = e
            .document
            .as_ref()
            .and_then(|d| d.step)
            .map(|s| format!(" step {s}"))
            .unwrap_or_default();
        let mut line = format!("{when}  {}{step}  by {}", e.kind, e.actor);
        if let Some(o) = &e.on_behalf_of {
            line.push_str(&format!(" on behalf of {o}"));
        }
        if !e.detail.is_empty() {
            line.push_str(&format!(" — {}", e.detail));
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The cryptographic check of one signature that [`verify`] delegates to its caller: given the
/// signature, what it signed and the time the log recorded the signature (Unix seconds, the
/// time of its `signed` or `sealed` event: the validation time), what passed or why not.
pub type SignatureCheck<'a> =
    dyn Fn(&BundleSignature, &Signed<'_>, i64) -> Result<SignatureChecked, String> + 'a;

/// What a signature signed, as [`verify`] hands it to the [`SignatureCheck`].
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    /// The document's format: how to find and check the signature.
    pub format: crate::domain::SignatureFormat,
    /// A detached signature's content (the submitted one), or the revision a signature made
    /// inside the content created (checked against its logged SHA-256), which holds it.
    pub content: &'a [u8],
    /// The number of that revision (`None` for a detached signature).
    pub revision: Option<u32>,
}

/// What a [`SignatureCheck`] established of one signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignatureChecked {
    /// Shown to the auditor (e.g. signer and level).
    pub report: String,
    /// Whether the check recomputed the signature's RGS level from its chain and found the
    /// recorded one; `false` when it took the recorded level as given (a claim).
    pub level_verified: bool,
}

/// The first thing that does not hold in an evidence bundle. Each kind of failure has its own
/// variant and message, so that an auditor reads exactly what was altered, dropped or forged.
/// Events are numbered by their position in the bundle (`event #k`, from 0) and signatures by
/// their index in the document (`signature #i`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// The file is not a bundle at all (not JSON, missing or unknown members, bad base64).
    #[error("not an evidence bundle: {0}")]
    Unreadable(String),
    /// The format tag is not [`BUNDLE_FORMAT`] (or [`BUNDLE_FORMAT_V1`]).
    #[error("format {found:?} is not {BUNDLE_FORMAT:?}: unknown or altered bundle format")]
    Format { found: String },
    /// A certificate or CRL of the bundle's material that does not match its hash, is missing,
    /// or that no signature names.
    #[error("validation material {sha256}: {what}")]
    Material { sha256: String, what: String },
    /// The bundle's tenant, origin, document and checkpoint do not name the same log.
    #[error("tenant/origin mismatch: {0}")]
    OriginMismatch(String),
    /// The checkpoint text does not follow the signed-note format.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// The checkpoint signature does not verify with the log key.
    #[error("checkpoint signature does not verify with the log key (forged or altered)")]
    ForgedCheckpoint,
    /// The bundle has no event: nothing ties the document to the log.
    #[error("the bundle has no events: nothing ties the document to the log")]
    NoEvents,
    /// An event lies beyond the checkpoint's tree: the checkpoint is older than the events.
    #[error(
        "stale checkpoint: size {size} does not cover event index {index} (event #{position})"
    )]
    StaleCheckpoint {
        size: u64,
        position: usize,
        index: u64,
    },
    /// An event's bytes are not a canonical audit event.
    #[error("event #{position} (log index {index}): malformed event: {reason}")]
    MalformedEvent {
        position: usize,
        index: u64,
        reason: String,
    },
    /// The event's own index is not the log index the bundle gives it.
    #[error(
        "event #{position}: the event says log index {found}, the bundle places it at {index}"
    )]
    IndexMismatch {
        position: usize,
        index: u64,
        found: u64,
    },
    /// A proof element is not a 32-byte lowercase hex hash.
    #[error("event #{position} (log index {index}): malformed inclusion proof: {reason}")]
    MalformedProof {
        position: usize,
        index: u64,
        reason: String,
    },
    /// The event is not in the log the checkpoint commits to (event or proof altered).
    #[error(
        "event #{position} (log index {index}): inclusion proof does not lead to the checkpoint \
         root{detail}"
    )]
    NotInLog {
        position: usize,
        index: u64,
        /// Empty, or ` (…)` with the proof's defect.
        detail: String,
    },
    /// The event is in the log but is not an event of this document.
    #[error("event #{position} (log index {index}) is not an event of this document: {what}")]
    ForeignEvent {
        position: usize,
        index: u64,
        what: String,
    },
    /// Events are not in the order of the document's history.
    #[error("events reordered: {0}")]
    Reordered(String),
    /// The same event (seq) appears twice.
    #[error("event #{position}: seq {seq} appears a second time: an event was duplicated")]
    Duplicated { position: usize, seq: u64 },
    /// A gap in the seqs.
    #[error(
        "event #{position}: seq {found} found where {expected} was expected: an event was dropped"
    )]
    Dropped {
        position: usize,
        found: u64,
        expected: u64,
    },
    /// The event's `prev` is not the leaf hash of the document's previous event.
    #[error(
        "event #{position}: previous-event link broken (prev {found:?}, expected {expected:?})"
    )]
    BrokenLink {
        position: usize,
        found: String,
        expected: String,
    },
    /// The bundle has more or fewer events than the document's history.
    #[error("the bundle has {events} events but the document history has {history}: {what}")]
    CountMismatch {
        events: usize,
        history: usize,
        what: &'static str,
    },
    /// An event says something else than the document's history entry at its seq.
    #[error("event #{position} disagrees with the document history: {what}")]
    HistoryMismatch { position: usize, what: String },
    /// The content is not the one the document record names.
    #[error("document content does not match its recorded SHA-256{detail}")]
    ContentMismatch {
        /// Empty, or ` (…)` with what differs.
        detail: String,
    },
    /// An event names another content than the document's.
    #[error(
        "event #{position}: its content SHA-256 {found} is not the document's {expected} \
         (content replaced)"
    )]
    EventContentMismatch {
        position: usize,
        found: String,
        expected: String,
    },
    /// An event's recorded state does not follow from its kind.
    #[error(
        "event #{position} ({kind}) records state {found}, but that kind of event leaves the \
         document {expected}"
    )]
    EventStateInconsistent {
        position: usize,
        kind: String,
        found: String,
        expected: String,
    },
    /// The document record's state is not the one its last event left.
    #[error("the document's state {document} disagrees with its last event ({last})")]
    StateMismatch { document: String, last: String },
    /// A `signed` or `sealed` event that does not say which signature it stored.
    #[error("event #{position} ({kind}) does not record the signature it stored and its hash")]
    EventWithoutSignature { position: usize, kind: String },
    /// The same signature index twice in the bundle.
    #[error("signature #{index} appears more than once in the bundle")]
    DuplicateSignature { index: u32 },
    /// A bundle signature that no event of the document records.
    #[error("signature #{index}: no signed or sealed event of the document records it (added)")]
    UnrecordedSignature { index: u32 },
    /// The signature's CMS is not the one the log recorded.
    #[error(
        "signature #{index}: its CMS hash is not the one recorded in the document's events \
         (swapped or altered)"
    )]
    SignatureHashMismatch { index: u32 },
    /// The signature's description (step, signer, seal, on behalf of, level) disagrees with its
    /// event or its step.
    #[error("signature #{index} disagrees with its event #{position}: {what}")]
    SignatureRecordMismatch {
        index: u32,
        position: usize,
        what: String,
    },
    /// An event records a signature that the bundle does not carry.
    #[error(
        "event #{position} ({kind}) records signature #{index}, which is missing from the bundle"
    )]
    MissingSignature {
        position: usize,
        kind: String,
        index: u32,
    },
    /// The recorded CMS does not parse.
    #[error("signature #{index}: its CMS does not parse: {reason}")]
    MalformedSignature { index: u32, reason: String },
    /// The chain, CRLs or signing time given with a signature are not those of its (logged) CMS.
    #[error("signature #{index}: {what} is not the one embedded in its CMS (altered)")]
    SignatureMaterialMismatch { index: u32, what: String },
    /// The caller's cryptographic validation refused the signature.
    #[error("signature #{index}: {reason}")]
    SignatureInvalid { index: u32, reason: String },
    /// A content revision the bundle carries is not the one the document record and the log
    /// name (altered, or another revision's content), or is not a revision of the document.
    #[error("revision {revision}: {what}")]
    RevisionMismatch { revision: u32, what: String },
    /// A revision a signature was made in (and is checked in) is not in the bundle.
    #[error("revision {revision} (created by signature #{index}) is missing from the bundle")]
    MissingRevision { revision: u32, index: u32 },
    /// The event that created a revision does not record it, or records another.
    #[error("event #{position} ({kind}) {what}")]
    EventRevisionMismatch {
        position: usize,
        kind: String,
        what: String,
    },
    /// The document's description is not the one its `submitted` event committed.
    #[error(
        "the document's description (type, title, submitter, circuit, metadata, file name or \
         size) is not the one its submitted event committed (altered)"
    )]
    DescriptionMismatch,
    /// An action of a step disagrees with the event that logged it, or has none.
    #[error("step {step}, action #{action}: {what}")]
    ActionMismatch {
        step: usize,
        action: usize,
        what: String,
    },
    /// The document record is not the one the log committed with its last event.
    #[error("the document record is not the one the log committed with event #{position}: {what}")]
    RecordMismatch { position: usize, what: String },
    /// The signature's description is not the one its event committed.
    #[error(
        "signature #{index}: its description (signer, level, subject, delegation, signing time) \
         is not the one its event #{position} committed (altered)"
    )]
    SignatureDescriptionMismatch { index: u32, position: usize },
    /// The summary is not the one the document record and its events give.
    #[error(
        "summary does not match the events: line {line} reads {found:?}, the document record \
         and its events give {recomputed:?}"
    )]
    SummaryMismatch {
        line: usize,
        recomputed: String,
        found: String,
    },
}

/// What a verified bundle establishes, for the auditor's report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedBundle {
    pub tenant: String,
    pub document_id: String,
    pub title: String,
    pub state: String,
    /// Lowercase hex SHA-256 of the content (checked).
    pub content_sha256: String,
    /// Lowercase hex SHA-256 of each signed revision, 1 first (checked against the record and
    /// the events that created them); the last is the document's final content.
    pub revisions: Vec<String>,
    pub checkpoint: VerifiedCheckpoint,
    /// Number of events, each proven in the checkpoint's tree.
    pub events: usize,
    /// The summary, one line per entry (header first).
    pub summary: Vec<String>,
    pub signatures: Vec<VerifiedSignature>,
    /// What the bundle shows that nothing bound: each entry names the fields and why (events
    /// logged before the log committed them). Empty for a bundle whose log commits everything.
    pub unverified: Vec<String>,
}

/// The checkpoint every event was proven against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedCheckpoint {
    pub origin: String,
    pub size: u64,
    /// Unix seconds.
    pub time: i64,
    /// Lowercase hex root hash.
    pub root: String,
}

/// One signature that passed, with what its check established.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifiedSignature {
    pub index: u32,
    pub step: u32,
    pub signer: String,
    pub on_behalf_of: Option<String>,
    pub seal: bool,
    pub level: u8,
    /// Whether the level was recomputed from the chain (else it is the recorded claim).
    pub level_verified: bool,
    pub signing_time: i64,
    /// When the log recorded the signature (its event's time, the validation time).
    pub logged_at: i64,
    pub subject: String,
    /// What the caller's check reported (e.g. signer and level).
    pub check: String,
}

impl EvidenceBundle {
    /// Reads a bundle from its JSON file.
    pub fn from_json(bytes: &[u8]) -> Result<EvidenceBundle, BundleError> {
        serde_json::from_slice(bytes).map_err(|e| BundleError::Unreadable(e.to_string()))
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

/// The state a document is left in by an event of kind `kind` (the domain's rule; a kind this
/// version does not know leaves it in progress).
fn state_after(kind: &str) -> &'static str {
    use serde::de::IntoDeserializer;
    let kind: Result<EventKind, serde::de::value::Error> =
        serde::Deserialize::deserialize(kind.into_deserializer());
    kind.map_or(DocState::InProgress, EventKind::state_after)
        .as_str()
}

fn decode_proof(proof: &[String]) -> Result<Vec<Hash>, String> {
    proof
        .iter()
        .enumerate()
        .map(|(j, h)| {
            if h.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(format!("hash #{j} is not lowercase hex"));
            }
            let bytes = hex::decode(h).map_err(|e| format!("hash #{j} is not hex: {e}"))?;
            merkle::hash_from_slice(&bytes).map_err(|e| format!("hash #{j}: {e}"))
        })
        .collect()
}

/// One event of the bundle once decoded and proven.
struct Proven {
    event: AuditEvent,
    leaf: Hash,
    index: u64,
}

/// Verifies an evidence bundle offline against the log's public key, and fails on the first
/// thing that does not hold, in this order:
///
/// 1. the format tag; the origin is `paraph/{tenant}` and the document is the tenant's;
/// 2. the checkpoint parses and its signature verifies with `log_key` for that origin;
/// 3. the checkpoint covers every event's log index (else it is stale);
/// 4. every event is canonical, carries the log index the bundle gives it, and its inclusion
///    proof leads to the checkpoint root;
/// 5. every event is one of this document's (tenant, subject, document id);
/// 6. the events are in history order (reordering), without duplicates or gaps (dropped), each
///    linked to the leaf hash of the previous one, as many as the history entries;
/// 7. each event agrees with the history entry at its seq (kind, time, actor, step, on behalf
///    of, signature index, detail);
/// 8. the content matches the document's SHA-256 (and size), which every event names;
/// 9. each event's state follows from its kind, and the document's state is its last event's;
/// 10. each step's actions are the events that logged them (kind, actor, time, on behalf of);
/// 11. the document's description is the one its `submitted` event committed, it was created
///     when that event and last updated when its last event were logged;
/// 12. every bundle signature is recorded by a `signed`/`sealed` event with the SHA-256 of its
///     CMS and agrees with it and with the step action it logged (step, signer, seal, on behalf
///     of, absence, route, signing time no later than the event), its chain (in issuing order)
///     and CRLs are those of its CMS and its signing time that CMS's, its description is the
///     one the event committed, and every such event's signature is in the bundle;
/// 13. the document record is the one the log committed with its last event (every field);
/// 14. `check_signature(signature, content, logged_at)` passes for each signature, at the time
///     its event was logged (the caller's cryptographic validation: CMS over the content,
///     chain, revocation, level);
/// 15. the summary is the one [`summary`] gives.
///
/// Events logged before the log committed descriptions and records (older versions) are
/// accepted: what they leave unbound is listed in [`VerifiedBundle::unverified`].
///
/// Pure: no clock, no I/O. `check_signature` returns what passed (shown to the auditor) or why
/// not.
pub fn verify(
    bundle: &EvidenceBundle,
    log_key: &AuditPublicKey,
    check_signature: &SignatureCheck<'_>,
) -> Result<VerifiedBundle, BundleError> {
    let document = &bundle.document;

    // 1. Format, tenant and origin.
    if bundle.format != BUNDLE_FORMAT
        && bundle.format != BUNDLE_FORMAT_V2
        && bundle.format != BUNDLE_FORMAT_V1
    {
        return Err(BundleError::Format {
            found: bundle.format.clone(),
        });
    }
    if bundle.format == BUNDLE_FORMAT_V1 && !bundle.material.is_empty() {
        return Err(BundleError::Format {
            found: format!("{} with material", bundle.format),
        });
    }
    if bundle.format != BUNDLE_FORMAT && !bundle.revisions.is_empty() {
        return Err(BundleError::Format {
            found: format!("{} with revisions", bundle.format),
        });
    }
    // Each signature with its chain and CRLs, and the CMS the log recorded (CRLs put back).
    let resolved = resolve_material(bundle)?;
    let origin = format!("paraph/{}", bundle.tenant);
    if bundle.origin != origin {
        return Err(BundleError::OriginMismatch(format!(
            "the bundle names log {:?}, but the log of tenant {:?} is {origin:?}",
            bundle.origin, bundle.tenant
        )));
    }
    if document.tenant.as_str() != bundle.tenant {
        return Err(BundleError::OriginMismatch(format!(
            "the document belongs to tenant {:?}, the bundle to {:?}",
            document.tenant.as_str(),
            bundle.tenant
        )));
    }

    // 2. Checkpoint.
    let signed = SignedCheckpoint::decode(bundle.checkpoint.as_bytes()).map_err(|e| {
        BundleError::MalformedCheckpoint(match e {
            AuditError::MalformedCheckpoint(r) => r,
            other => other.to_string(),
        })
    })?;
    let checkpoint = match signed.verify(log_key, &origin) {
        Ok(c) => c.clone(),
        Err(AuditError::WrongOrigin { expected, found }) => {
            return Err(BundleError::OriginMismatch(format!(
                "the checkpoint is for log {found:?}, not {expected:?}"
            )))
        }
        Err(AuditError::ForgedCheckpoint) => return Err(BundleError::ForgedCheckpoint),
        Err(e) => return Err(BundleError::MalformedCheckpoint(e.to_string())),
    };

    // 3. Coverage.
    if bundle.events.is_empty() {
        return Err(BundleError::NoEvents);
    }
    if let Some((position, e)) = bundle
        .events
        .iter()
        .enumerate()
        .find(|(_, e)| e.index >= checkpoint.size)
    {
        return Err(BundleError::StaleCheckpoint {
            size: checkpoint.size,
            position,
            index: e.index,
        });
    }

    // 4. Each event: canonical, at its index, in the log.
    let mut proven = Vec::with_capacity(bundle.events.len());
    for (position, be) in bundle.events.iter().enumerate() {
        let index = be.index;
        let event = AuditEvent::parse(&be.event.0).map_err(|e| BundleError::MalformedEvent {
            position,
            index,
            reason: match e {
                AuditError::MalformedEvent(r) => r,
                other => other.to_string(),
            },
        })?;
        if event.index != index {
            return Err(BundleError::IndexMismatch {
                position,
                index,
                found: event.index,
            });
        }
        let proof = decode_proof(&be.proof).map_err(|reason| BundleError::MalformedProof {
            position,
            index,
            reason,
        })?;
        let leaf = merkle::leaf_hash(&be.event.0);
        checkpoint
            .verify_inclusion(&leaf, index, &proof)
            .map_err(|e| BundleError::NotInLog {
                position,
                index,
                detail: match e {
                    AuditError::InclusionRootMismatch { .. } => String::new(),
                    other => format!(" ({other})"),
                },
            })?;
        proven.push(Proven { event, leaf, index });
    }

    // 5. This document's events.
    let subject = format!("document/{}", document.id);
    let mut facts: Vec<&DocumentFacts> = Vec::with_capacity(proven.len());
    for (position, p) in proven.iter().enumerate() {
        let foreign = |what: String| BundleError::ForeignEvent {
            position,
            index: p.index,
            what,
        };
        if p.event.tenant != bundle.tenant {
            return Err(foreign(format!(
                "it is in the log of tenant {:?}",
                p.event.tenant
            )));
        }
        let Some(doc_facts) = &p.event.document else {
            return Err(foreign(format!(
                "it is a {} event about {:?}, not a document event",
                p.event.kind, p.event.subject
            )));
        };
        if doc_facts.id != document.id.as_str() || p.event.subject != subject {
            return Err(foreign(format!(
                "it is about document {:?} ({:?})",
                doc_facts.id, p.event.subject
            )));
        }
        facts.push(doc_facts);
    }

    // 6. Order, duplicates, gaps, links, count.
    for k in 1..proven.len() {
        let (s0, s1) = (facts[k - 1].seq, facts[k].seq);
        if s1 < s0 {
            return Err(BundleError::Reordered(format!(
                "event #{k} has seq {s1} after event #{} with seq {s0}",
                k - 1
            )));
        }
        if s1 == s0 {
            return Err(BundleError::Duplicated {
                position: k,
                seq: s1,
            });
        }
        let (i0, i1) = (proven[k - 1].index, proven[k].index);
        if i1 <= i0 {
            return Err(BundleError::Reordered(format!(
                "event #{k} (seq {s1}) is at log index {i1}, not after event #{} (seq {s0}) at \
                 log index {i0}",
                k - 1
            )));
        }
    }
    for (k, f) in facts.iter().enumerate() {
        let expected = k as u64;
        if f.seq != expected {
            return Err(BundleError::Dropped {
                position: k,
                found: f.seq,
                expected,
            });
        }
    }
    for (k, f) in facts.iter().enumerate() {
        let expected = match k {
            0 => String::new(),
            _ => hex::encode(proven[k - 1].leaf),
        };
        if f.prev != expected {
            return Err(BundleError::BrokenLink {
                position: k,
                found: f.prev.clone(),
                expected,
            });
        }
    }
    if proven.len() != document.history.len() {
        return Err(BundleError::CountMismatch {
            events: proven.len(),
            history: document.history.len(),
            what: if proven.len() < document.history.len() {
                "events were dropped"
            } else {
                "the history was cut short or events were added"
            },
        });
    }

    // 7. Agreement with the history.
    for (k, (p, h)) in proven.iter().zip(&document.history).enumerate() {
        history_agrees(k, &p.event, facts[k], h)?;
    }

    // 8. Content.
    let content_sha256 = sha256_hex(&bundle.content.0);
    if content_sha256 != document.content.sha256 {
        return Err(BundleError::ContentMismatch {
            detail: format!(
                " (content SHA-256 {content_sha256}, recorded {})",
                document.content.sha256
            ),
        });
    }
    if bundle.content.0.len() as u64 != document.content.size {
        return Err(BundleError::ContentMismatch {
            detail: format!(
                " (content has {} bytes, recorded size {})",
                bundle.content.0.len(),
                document.content.size
            ),
        });
    }
    for (k, f) in facts.iter().enumerate() {
        if f.content_sha256 != content_sha256 {
            return Err(BundleError::EventContentMismatch {
                position: k,
                found: f.content_sha256.clone(),
                expected: content_sha256,
            });
        }
    }

    // 8b. The content revisions: each carried one is the one the record and the log name (a
    // signature made inside the content is checked in the revision it created, step 14).
    let revisions = revisions_agree(bundle, &facts, &proven)?;

    // 9. States.
    for (k, (p, f)) in proven.iter().zip(&facts).enumerate() {
        let expected = state_after(&p.event.kind);
        if f.state != expected {
            return Err(BundleError::EventStateInconsistent {
                position: k,
                kind: p.event.kind.clone(),
                found: f.state.clone(),
                expected: expected.to_owned(),
            });
        }
    }
    let last_position = facts.len() - 1;
    let last = facts[last_position];
    if last.state != document.state.as_str() {
        return Err(BundleError::StateMismatch {
            document: document.state.as_str().to_owned(),
            last: last.state.clone(),
        });
    }

    // 10. Each step's actions are the events that logged them.
    let acted = actions_agree(document)?;

    // 11. The description and the dates.
    let mut unverified = Vec::new();
    let committed = |r: Result<String, AuditError>| {
        r.map_err(|e| BundleError::RecordMismatch {
            position: last_position,
            what: format!("it cannot be encoded: {e}"),
        })
    };
    match &facts[0].description_sha256 {
        Some(h) => {
            let recomputed = committed(super::commit::description_sha256(document))?;
            if *h != recomputed {
                return Err(BundleError::DescriptionMismatch);
            }
        }
        None if last.record_sha256.is_none() => unverified.push(
            "the document's description (type, title, submitter, circuit, metadata, file \
             name): its submitted event was logged before the log committed it"
                .to_owned(),
        ),
        None => {}
    }
    let (first_at, last_at) = (proven[0].event.at, proven[last_position].event.at);
    if document.created_at.0 != first_at {
        return Err(BundleError::RecordMismatch {
            position: 0,
            what: format!(
                "it was created at {}, the submitted event is dated {}",
                crate::pki::format_rfc3339(document.created_at.0),
                crate::pki::format_rfc3339(first_at)
            ),
        });
    }
    if document.updated_at.0 != last_at {
        return Err(BundleError::RecordMismatch {
            position: last_position,
            what: format!(
                "it was last updated at {}, its last event is dated {}",
                crate::pki::format_rfc3339(document.updated_at.0),
                crate::pki::format_rfc3339(last_at)
            ),
        });
    }

    // 12. Signatures against the events that recorded them.
    let mut recorded: BTreeMap<u32, (usize, &AuditEvent, &DocumentFacts, &str)> = BTreeMap::new();
    for (k, (p, f)) in proven.iter().zip(&facts).enumerate() {
        if !matches!(p.event.kind.as_str(), "signed" | "sealed") {
            continue;
        }
        let (Some(i), Some(h)) = (f.signature, f.signature_sha256.as_deref()) else {
            return Err(BundleError::EventWithoutSignature {
                position: k,
                kind: p.event.kind.clone(),
            });
        };
        recorded.insert(i, (k, &p.event, f, h));
    }
    let mut seen = BTreeSet::new();
    for s in &resolved {
        if !seen.insert(s.index) {
            return Err(BundleError::DuplicateSignature { index: s.index });
        }
        let Some(&(position, event, f, hash)) = recorded.get(&s.index) else {
            return Err(BundleError::UnrecordedSignature { index: s.index });
        };
        if sha256_hex(&s.cms.0) != hash {
            return Err(BundleError::SignatureHashMismatch { index: s.index });
        }
        signature_agrees(s, position, event, f, document)?;
        signature_material(s, document.format)?;
        signature_acted(s, position, event, acted.get(&f.seq).copied())?;
        match &f.signature_description_sha256 {
            Some(h) => {
                let description = describe(s).sha256().map_err(|_| {
                    BundleError::SignatureDescriptionMismatch {
                        index: s.index,
                        position,
                    }
                })?;
                if description != *h {
                    return Err(BundleError::SignatureDescriptionMismatch {
                        index: s.index,
                        position,
                    });
                }
            }
            None => unverified.push(format!(
                "signature #{}: its description (level, subject, delegation): its event was \
                 logged before the log committed it",
                s.index
            )),
        }
    }
    for (&index, &(position, event, _, _)) in &recorded {
        if !seen.contains(&index) {
            return Err(BundleError::MissingSignature {
                position,
                kind: event.kind.clone(),
                index,
            });
        }
    }

    // 13. The record the log committed with the last event: whatever the checks above do not
    // compare one by one (step definitions, actors, routes, deadlines, comments).
    match &last.record_sha256 {
        Some(h) => {
            let recomputed = committed(super::commit::record_sha256(document))?;
            if *h != recomputed {
                return Err(BundleError::RecordMismatch {
                    position: last_position,
                    what: "a field the checks before do not name (a step's definition, actors, \
                           status, routes or deadlines, an action's comment) was altered"
                        .to_owned(),
                });
            }
        }
        None => unverified.push(
            "the document's steps (definitions, actors, status, routes, deadlines) and the \
             actions' comments: its last event was logged before the log committed the record"
                .to_owned(),
        ),
    }

    // 14. The caller's cryptographic validation, at the time the log recorded each signature.
    let mut signatures = Vec::with_capacity(resolved.len());
    for s in &resolved {
        let logged_at = recorded
            .get(&s.index)
            .map_or(checkpoint.time, |(_, e, _, _)| e.at);
        let signed = if document.format.signs_inside() {
            let revision = s.index + 1;
            let content =
                revisions
                    .get(&revision)
                    .copied()
                    .ok_or(BundleError::MissingRevision {
                        revision,
                        index: s.index,
                    })?;
            Signed {
                format: document.format,
                content,
                revision: Some(revision),
            }
        } else {
            Signed {
                format: document.format,
                content: &bundle.content.0,
                revision: None,
            }
        };
        let checked = check_signature(s, &signed, logged_at).map_err(|reason| {
            BundleError::SignatureInvalid {
                index: s.index,
                reason,
            }
        })?;
        signatures.push(VerifiedSignature {
            index: s.index,
            step: s.step,
            signer: s.signer.clone(),
            on_behalf_of: s.on_behalf_of.clone(),
            seal: s.seal,
            level: s.level,
            level_verified: checked.level_verified,
            signing_time: s.signing_time,
            logged_at,
            subject: s.subject.clone(),
            check: checked.report,
        });
    }

    // 15. Summary.
    let events: Vec<AuditEvent> = proven.into_iter().map(|p| p.event).collect();
    let expected = summary(document, &events);
    if expected != bundle.summary {
        let mut exp = expected.lines();
        let mut got = bundle.summary.lines();
        let mut line = 1;
        loop {
            let (e, g) = (exp.next(), got.next());
            if e.is_none() && g.is_none() {
                return Err(BundleError::SummaryMismatch {
                    line,
                    recomputed: "(end)".to_owned(),
                    found: "(other line endings or trailing text)".to_owned(),
                });
            }
            if e != g {
                return Err(BundleError::SummaryMismatch {
                    line,
                    recomputed: e.unwrap_or("(end)").to_owned(),
                    found: g.unwrap_or("(end)").to_owned(),
                });
            }
            line += 1;
        }
    }

    Ok(VerifiedBundle {
        tenant: bundle.tenant.clone(),
        document_id: document.id.to_string(),
        title: document.title.clone(),
        state: document.state.as_str().to_owned(),
        content_sha256,
        revisions: document
            .revisions
            .iter()
            .map(|r| r.sha256.clone())
            .collect(),
        checkpoint: VerifiedCheckpoint {
            origin: checkpoint.origin.clone(),
            size: checkpoint.size,
            time: checkpoint.time,
            root: hex::encode(checkpoint.root),
        },
        events: events.len(),
        summary: expected.lines().map(str::to_owned).collect(),
        signatures,
        unverified,
    })
}

/// Event `k` says what history entry `k` says.
fn history_agrees(
    k: usize,
    e: &AuditEvent,
    f: &DocumentFacts,
    h: &Event,
) -> Result<(), BundleError> {
    let differ = |what: String| Err(BundleError::HistoryMismatch { position: k, what });
    if h.seq != k as u64 {
        return differ(format!("history entry {k} has seq {}", h.seq));
    }
    if e.kind != h.kind.as_str() {
        return differ(format!(
            "the event is {}, the history says {}",
            e.kind,
            h.kind.as_str()
        ));
    }
    if e.at != h.at.0 {
        return differ(format!(
            "the event is dated {}, the history {}",
            crate::pki::format_rfc3339(e.at),
            crate::pki::format_rfc3339(h.at.0)
        ));
    }
    let actor = h.actor.as_ref().map_or(SYSTEM_ACTOR, |a| a.as_str());
    if e.actor != actor {
        return differ(format!(
            "the event's actor is {}, the history's {actor}",
            e.actor
        ));
    }
    if e.detail != super::commit::logged_detail(h) {
        return differ(format!(
            "the event's detail is {:?}, the history's {:?}",
            e.detail, h.detail
        ));
    }
    if f.step != h.step {
        return differ(format!(
            "the event is on step {}, the history on step {}",
            opt(f.step),
            opt(h.step)
        ));
    }
    let obo = h.on_behalf_of.as_ref().map(|u| u.as_str().to_owned());
    if e.on_behalf_of != obo {
        return differ(format!(
            "the event is on behalf of {}, the history on behalf of {}",
            opt(e.on_behalf_of.as_ref()),
            opt(obo.as_ref())
        ));
    }
    if f.signature != h.signature {
        return differ(format!(
            "the event records signature {}, the history signature {}",
            opt(f.signature),
            opt(h.signature)
        ));
    }
    Ok(())
}

/// The actor the log names for a history entry without one (the server's own changes).
const SYSTEM_ACTOR: &str = "_system";

/// The kinds of history entries that record a step's action, and the action's kind.
fn action_kind(kind: EventKind) -> Option<ActionKind> {
    match kind {
        EventKind::Approved => Some(ActionKind::Approved),
        EventKind::Rejected => Some(ActionKind::Rejected),
        EventKind::Signed => Some(ActionKind::Signed),
        EventKind::Sealed => Some(ActionKind::Sealed),
        _ => None,
    }
}

/// Each step's actions are, in order, the history entries (already checked against the events)
/// that logged an action on that step: same kind, actor, time, and on behalf of the same user.
/// Returns the action each such entry logged, by seq.
fn actions_agree(document: &Document) -> Result<BTreeMap<u64, &Action>, BundleError> {
    let mut acted = BTreeMap::new();
    for (i, st) in document.steps.iter().enumerate() {
        let logged: Vec<(&Event, ActionKind)> = document
            .history
            .iter()
            .filter(|h| h.step.and_then(|s| usize::try_from(s).ok()) == Some(i))
            .filter_map(|h| action_kind(h.kind).map(|k| (h, k)))
            .collect();
        for (j, a) in st.actions.iter().enumerate() {
            let differ = |what: String| {
                Err(BundleError::ActionMismatch {
                    step: i,
                    action: j,
                    what,
                })
            };
            let Some(&(h, kind)) = logged.get(j) else {
                return differ(format!(
                    "no event logs it (the events log {} action(s) on this step)",
                    logged.len()
                ));
            };
            if a.kind != kind {
                return differ(format!(
                    "it is {:?}, event seq {} is {}",
                    a.kind,
                    h.seq,
                    h.kind.as_str()
                ));
            }
            let actor = h
                .actor
                .clone()
                .unwrap_or_else(crate::domain::UserName::seal);
            if a.actor != actor {
                return differ(format!(
                    "its actor is {}, the event's (seq {}) {actor}",
                    a.actor, h.seq
                ));
            }
            if a.at != h.at {
                return differ(format!(
                    "it is dated {}, its event (seq {}) {}",
                    crate::pki::format_rfc3339(a.at.0),
                    h.seq,
                    crate::pki::format_rfc3339(h.at.0)
                ));
            }
            if a.on_behalf_of != h.on_behalf_of {
                return differ(format!(
                    "it is on behalf of {}, its event (seq {}) on behalf of {}",
                    opt(a.on_behalf_of.as_ref()),
                    h.seq,
                    opt(h.on_behalf_of.as_ref())
                ));
            }
            acted.insert(h.seq, a);
        }
        if logged.len() > st.actions.len() {
            return Err(BundleError::ActionMismatch {
                step: i,
                action: st.actions.len(),
                what: format!(
                    "missing: the events log {} action(s) on this step, the step has {}",
                    logged.len(),
                    st.actions.len()
                ),
            });
        }
    }
    Ok(acted)
}

/// What the log commits of a bundle signature beside its CMS.
fn describe(s: &BundleSignature) -> super::commit::SignatureDescription<'_> {
    super::commit::SignatureDescription {
        index: s.index,
        step: s.step,
        signer: &s.signer,
        on_behalf_of: s.on_behalf_of.as_deref(),
        absence: s.absence.as_deref(),
        route: s.route.as_deref(),
        seal: s.seal,
        level: s.level,
        signing_time: s.signing_time,
        subject: &s.subject,
    }
}

/// The signature's signer, delegation and signing time agree with the step action its event
/// logged.
fn signature_acted(
    s: &BundleSignature,
    position: usize,
    e: &AuditEvent,
    action: Option<&Action>,
) -> Result<(), BundleError> {
    let differ = |what: String| {
        Err(BundleError::SignatureRecordMismatch {
            index: s.index,
            position,
            what,
        })
    };
    let Some(a) = action else {
        return differ("no step action records it".into());
    };
    if s.signer != a.actor.as_str() {
        return differ(format!(
            "it says signer {}, the step action {}",
            s.signer, a.actor
        ));
    }
    let absence = a.absence.as_ref().map(|x| x.as_str());
    if s.absence.as_deref() != absence {
        return differ(format!(
            "it says absence {}, the step action {}",
            opt(s.absence.as_ref()),
            opt(absence)
        ));
    }
    let route = a.route.map(|r| r.as_str());
    if s.route.as_deref() != route {
        return differ(format!(
            "it says route {}, the step action {}",
            opt(s.route.as_ref()),
            opt(route)
        ));
    }
    if s.signing_time > e.at {
        return differ(format!(
            "its signing time {} is after the log recorded it at {}",
            crate::pki::format_rfc3339(s.signing_time),
            crate::pki::format_rfc3339(e.at)
        ));
    }
    Ok(())
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

/// The signature's description agrees with the event that recorded it and with its step.
fn signature_agrees(
    s: &BundleSignature,
    position: usize,
    e: &AuditEvent,
    f: &DocumentFacts,
    document: &Document,
) -> Result<(), BundleError> {
    let differ = |what: String| {
        Err(BundleError::SignatureRecordMismatch {
            index: s.index,
            position,
            what,
        })
    };
    if f.step != Some(s.step) {
        return differ(format!(
            "it says step {}, the event step {}",
            s.step,
            opt(f.step)
        ));
    }
    let sealed = e.kind == "sealed";
    if s.seal != sealed {
        return differ(format!(
            "it says {}, the event is {}",
            if s.seal { "a seal" } else { "a signature" },
            e.kind
        ));
    }
    if !s.seal && s.signer != e.actor {
        return differ(format!(
            "it says signer {}, the event actor {}",
            s.signer, e.actor
        ));
    }
    if s.on_behalf_of != e.on_behalf_of {
        return differ(format!(
            "it says on behalf of {}, the event on behalf of {}",
            opt(s.on_behalf_of.as_ref()),
            opt(e.on_behalf_of.as_ref())
        ));
    }
    let required = usize::try_from(s.step)
        .ok()
        .and_then(|i| document.steps.get(i))
        .and_then(|st| st.level)
        .map(|l| l.get());
    if let Some(required) = required {
        if s.level < required {
            return differ(format!(
                "its recorded level {} is below the level {required} step {} requires",
                s.level, s.step
            ));
        }
    }
    Ok(())
}

/// The bundle's signatures with their chains and CRLs taken from its material by hash, and
/// each CMS given without its CRLs made whole again (the CMS whose hash the log recorded).
/// Every material entry must match its hash and be named by a signature, so nothing in the
/// bundle is left unbound.
pub fn resolve_material(bundle: &EvidenceBundle) -> Result<Vec<BundleSignature>, BundleError> {
    for (h, der) in &bundle.material {
        if sha256_hex(&der.0) != *h {
            return Err(BundleError::Material {
                sha256: h.clone(),
                what: "its bytes do not match its hash (altered)".into(),
            });
        }
    }
    let mut named = BTreeSet::new();
    let mut out = Vec::with_capacity(bundle.signatures.len());
    for s in &bundle.signatures {
        let take = |refs: &[String], what: &str| -> Result<Vec<B64>, BundleError> {
            refs.iter()
                .map(|h| {
                    bundle
                        .material
                        .get(h)
                        .cloned()
                        .ok_or_else(|| BundleError::Material {
                            sha256: h.clone(),
                            what: format!(
                                "signature #{} names it as a {what}, the bundle lacks it",
                                s.index
                            ),
                        })
                })
                .collect()
        };
        let mut r = s.clone();
        if !s.chain_refs.is_empty() {
            if !s.chain.is_empty() {
                return Err(BundleError::SignatureMaterialMismatch {
                    index: s.index,
                    what: "a chain given both by hash and in full".into(),
                });
            }
            r.chain = take(&s.chain_refs, "certificate")?;
            r.chain_refs = Vec::new();
        }
        if !s.crl_refs.is_empty() {
            if !s.crls.is_empty() {
                return Err(BundleError::SignatureMaterialMismatch {
                    index: s.index,
                    what: "CRLs given both by hash and in full".into(),
                });
            }
            r.crls = take(&s.crl_refs, "CRL")?;
            r.crl_refs = Vec::new();
            // No CMS (an enveloped XAdES signature, which lives in its revision): the log
            // recorded the empty one, nothing to put the CRLs back into.
            if s.cms.0.is_empty() {
                named.extend(s.chain_refs.iter().chain(&s.crl_refs).cloned());
                out.push(r);
                continue;
            }
            let carried = crate::crypto::parse(&s.cms.0)
                .map(|p| p.crls.len())
                .map_err(|e| BundleError::MalformedSignature {
                    index: s.index,
                    reason: e.to_string(),
                })?;
            if carried != 0 {
                return Err(BundleError::SignatureMaterialMismatch {
                    index: s.index,
                    what: "a CMS that names its CRLs by hash but also carries CRLs".into(),
                });
            }
            let crls: Vec<Vec<u8>> = r.crls.iter().map(|c| c.0.clone()).collect();
            r.cms = B64(crate::crypto::with_crls(&s.cms.0, &crls).map_err(|e| {
                BundleError::MalformedSignature {
                    index: s.index,
                    reason: e.to_string(),
                }
            })?);
        }
        named.extend(s.chain_refs.iter().chain(&s.crl_refs).cloned());
        out.push(r);
    }
    if let Some(h) = bundle.material.keys().find(|h| !named.contains(*h)) {
        return Err(BundleError::Material {
            sha256: h.clone(),
            what: "no signature names it (added)".into(),
        });
    }
    Ok(out)
}

/// The chain, CRLs and signing time given with a signature are those of its CMS (whose hash the
/// log recorded), the signer's certificate first. A PES signature has no CMS (its certificate
/// and signing time are checked in its revision); a PAdES CMS has no signing-time (its `/M`
/// is checked in its revision).
fn signature_material(
    s: &BundleSignature,
    format: crate::domain::SignatureFormat,
) -> Result<(), BundleError> {
    if format == crate::domain::SignatureFormat::XadesPes && s.cms.0.is_empty() {
        return match s.chain.first() {
            Some(_) => Ok(()),
            None => Err(BundleError::SignatureMaterialMismatch {
                index: s.index,
                what: "an empty certificate chain".into(),
            }),
        };
    }
    let cms = crate::crypto::parse(&s.cms.0).map_err(|e| BundleError::MalformedSignature {
        index: s.index,
        reason: e.to_string(),
    })?;
    let altered = |what: String| {
        Err(BundleError::SignatureMaterialMismatch {
            index: s.index,
            what,
        })
    };
    let Some(leaf) = s.chain.first() else {
        return altered("an empty certificate chain".into());
    };
    let Some(signer) = cms
        .signers
        .iter()
        .find(|si| si.cert_der.as_deref() == Some(leaf.0.as_slice()))
    else {
        return altered("the signer certificate (chain certificate #0)".into());
    };
    let pades = format == crate::domain::SignatureFormat::Pades;
    if !pades && signer.signing_time != Some(s.signing_time) {
        return altered(format!(
            "the signing time {}",
            crate::pki::format_rfc3339(s.signing_time)
        ));
    }
    for (j, c) in s.chain.iter().enumerate() {
        if !cms.certs.contains(&c.0) || s.chain[..j].contains(c) {
            return altered(format!("chain certificate #{j}"));
        }
    }
    for (j, c) in s.crls.iter().enumerate() {
        if !cms.crls.contains(&c.0) || s.crls[..j].contains(c) {
            return altered(format!("CRL #{j}"));
        }
    }
    if s.crls.len() != cms.crls.len() {
        return altered(format!(
            "the list of CRLs ({} of the CMS's {})",
            s.crls.len(),
            cms.crls.len()
        ));
    }
    if s.chain.len() != cms.certs.len() {
        return altered(format!(
            "the chain ({} of the CMS's {} certificates)",
            s.chain.len(),
            cms.certs.len()
        ));
    }
    // Signer first, each certificate issued by the next one.
    let names = s
        .chain
        .iter()
        .map(|c| {
            crate::crypto::certs::certs_from(&c.0).ok().and_then(|v| {
                v.first()
                    .and_then(|x| crate::crypto::certs::summarize_cert(x).ok())
            })
        })
        .collect::<Vec<_>>();
    for (j, pair) in names.windows(2).enumerate() {
        match (&pair[0], &pair[1]) {
            (Some(a), Some(b)) if a.issuer == b.subject => {}
            _ => {
                return altered(format!(
                    "the order of chain certificates #{j} and #{}",
                    j + 1
                ))
            }
        }
    }
    Ok(())
}

/// Checks the content revisions against the document record and the events that created them,
/// and returns the carried ones by number. Each carried revision must be one the record lists,
/// once, with the record's SHA-256 and size (another revision's content names the swap); each
/// `signed` or `sealed` event of a format that signs inside the content records the revision
/// its signature created, with the record's digest; every revision of the record is carried.
fn revisions_agree<'b>(
    bundle: &'b EvidenceBundle,
    facts: &[&DocumentFacts],
    proven: &[Proven],
) -> Result<BTreeMap<u32, &'b [u8]>, BundleError> {
    let document = &bundle.document;
    let listed = &document.revisions;
    if !document.format.signs_inside() && !listed.is_empty() {
        return Err(BundleError::RevisionMismatch {
            revision: 1,
            what: format!(
                "a {} document has no signed revisions, the record lists {}",
                document.format.as_str(),
                listed.len()
            ),
        });
    }
    // The events: each signature's revision, as the record lists it.
    for (k, (f, p)) in facts.iter().zip(proven).enumerate() {
        let differ = |what: String| {
            Err(BundleError::EventRevisionMismatch {
                position: k,
                kind: p.event.kind.clone(),
                what,
            })
        };
        match (f.signature, f.revision, f.revision_sha256.as_deref()) {
            (_, None, None) => {}
            (Some(i), Some(n), Some(h)) => {
                if !document.format.signs_inside() {
                    return differ(format!("records revision {n} of a detached signature"));
                }
                if n != i + 1 {
                    return differ(format!(
                        "records revision {n} for signature #{i}, which created revision {}",
                        i + 1
                    ));
                }
                match listed.get(i as usize) {
                    Some(r) if r.sha256 == h => {}
                    Some(r) => {
                        return differ(format!(
                            "records revision {n} with SHA-256 {h}, the document record {}",
                            r.sha256
                        ))
                    }
                    None => {
                        return differ(format!(
                            "records revision {n}, the document record lists {}",
                            listed.len()
                        ))
                    }
                }
            }
            _ => return differ("records a revision without its number or digest".into()),
        }
    }
    let mut carried: BTreeMap<u32, &[u8]> = BTreeMap::new();
    for r in &bundle.revisions {
        let n = r.revision;
        let mismatch = |what: String| BundleError::RevisionMismatch { revision: n, what };
        let Some(expected) = (n as usize).checked_sub(1).and_then(|i| listed.get(i)) else {
            return Err(mismatch(format!(
                "the document record lists revisions 1 to {} (added)",
                listed.len()
            )));
        };
        if carried.contains_key(&n) {
            return Err(mismatch("carried twice".into()));
        }
        let found = sha256_hex(&r.content.0);
        if found != expected.sha256 {
            let other = listed
                .iter()
                .position(|o| o.sha256 == found)
                .map(|j| j + 1)
                .or_else(|| (found == document.content.sha256).then_some(0));
            return Err(mismatch(match other {
                Some(m) => {
                    format!("the bundle gives the content of revision {m} in its place (swapped)")
                }
                None => format!(
                    "its content SHA-256 {found} is not the logged {} (altered)",
                    expected.sha256
                ),
            }));
        }
        if r.content.0.len() as u64 != expected.size {
            return Err(mismatch(format!(
                "it has {} bytes, the record {}",
                r.content.0.len(),
                expected.size
            )));
        }
        carried.insert(n, &r.content.0);
    }
    if let Some(n) = (1..=listed.len() as u32).find(|n| !carried.contains_key(n)) {
        return Err(BundleError::MissingRevision {
            revision: n,
            index: n - 1,
        });
    }
    Ok(carried)
}
