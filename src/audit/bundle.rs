//! Evidence bundles: everything an auditor needs to check, offline and without trusting the
//! server, what happened to one document — the document record and content, its signatures with
//! the chains and CRLs used at signing time, its events with inclusion proofs, a signed
//! checkpoint, and a human-readable summary.
//!
//! This module owns the bundle format (one JSON file; binary members in base64) and the summary.
//! Verification (checkpoint, proofs, event chain, agreement with the document, signature
//! hashes) takes the cryptographic validation of each CMS signature from the caller, so this
//! layer needs no certificate policy of its own.

use crate::domain::Document;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Version tag of the bundle format.
pub const BUNDLE_FORMAT: &str = "paraph-evidence/1";

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
    /// Detached CMS SignedData (DER).
    pub cms: B64,
    /// The validated chain, signer first (DER).
    pub chain: Vec<B64>,
    /// The CRLs used (DER).
    pub crls: Vec<B64>,
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
