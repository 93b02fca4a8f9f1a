//! What a document's events commit to besides their own fields: the document's description
//! (type, title, submitter, circuit, metadata, content), the whole document record as a
//! transition left it, and each stored signature's description. The server puts these digests
//! in the events it logs ([`super::DocumentFacts`]); a verifier recomputes them from what an
//! evidence bundle shows and compares, so that nothing the bundle shows can be changed without
//! the log's say.
//!
//! Each digest is the lowercase hex SHA-256 of a domain-separation tag, a newline, and compact
//! JSON of the fields in the order declared below. Pure: no storage, no clock.

use crate::domain::{Document, Event};
use serde::Serialize;
use sha2::Digest as _;

/// Tag of the description digest.
const DESCRIPTION_TAG: &str = "paraph-document-description/1";
/// Tag of the record digest.
const RECORD_TAG: &str = "paraph-document-record/1";
/// Tag of the signature description digest.
const SIGNATURE_TAG: &str = "paraph-signature-description/1";

fn digest<T: Serialize + ?Sized>(tag: &str, value: &T) -> Result<String, super::AuditError> {
    let json =
        serde_json::to_vec(value).map_err(|e| super::AuditError::MalformedEvent(e.to_string()))?;
    let mut h = sha2::Sha256::new();
    h.update(tag.as_bytes());
    h.update(b"\n");
    h.update(&json);
    Ok(hex::encode(h.finalize()))
}

/// The facts a submission fixes for good.
#[derive(Serialize)]
struct Description<'a> {
    id: &'a str,
    tenant: &'a str,
    doc_type: &'a str,
    title: &'a str,
    submitter: &'a str,
    circuit: &'a str,
    circuit_version: u32,
    /// Sorted by key (a `BTreeMap`), as pairs.
    metadata: Vec<(&'a str, &'a str)>,
    file_name: Option<&'a str>,
    size: u64,
    content_sha256: &'a str,
}

/// The digest of the document's description, which its `submitted` event commits: id, tenant,
/// type, title, submitter, circuit name and version, metadata (sorted by key), file name,
/// content size and SHA-256.
pub fn description_sha256(doc: &Document) -> Result<String, super::AuditError> {
    digest(
        DESCRIPTION_TAG,
        &Description {
            id: doc.id.as_str(),
            tenant: doc.tenant.as_str(),
            doc_type: doc.doc_type.as_str(),
            title: &doc.title,
            submitter: doc.submitter.as_str(),
            circuit: doc.circuit.0.as_str(),
            circuit_version: doc.circuit.1,
            metadata: doc
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect(),
            file_name: doc.content.file_name.as_deref(),
            size: doc.content.size,
            content_sha256: &doc.content.sha256,
        },
    )
}

/// The digest of the whole document record (its JSON form: every field, steps with their
/// actions and routes, history, dates), which every event of a transition commits for the
/// record the transition left. New fields of [`Document`] must be left out of its JSON when
/// they hold their default, or older digests no longer match.
pub fn record_sha256(doc: &Document) -> Result<String, super::AuditError> {
    digest(RECORD_TAG, doc)
}

/// What a document's history entry says in the log's `detail`: the entry's detail, prefixed
/// with its step.
pub fn logged_detail(ev: &Event) -> String {
    match ev.step {
        Some(s) => format!("step {s}: {}", ev.detail),
        None => ev.detail.clone(),
    }
}

/// How a stored signature describes itself (an evidence bundle shows these fields beside the
/// CMS, whose SHA-256 the event records apart).
#[derive(Clone, Debug, Serialize)]
pub struct SignatureDescription<'a> {
    pub index: u32,
    pub step: u32,
    pub signer: &'a str,
    pub on_behalf_of: Option<&'a str>,
    pub absence: Option<&'a str>,
    pub route: Option<&'a str>,
    pub seal: bool,
    pub level: u8,
    pub signing_time: i64,
    pub subject: &'a str,
}

impl SignatureDescription<'_> {
    /// The digest the `signed` or `sealed` event commits.
    pub fn sha256(&self) -> Result<String, super::AuditError> {
        digest(SIGNATURE_TAG, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_tagged_and_change_with_any_field() {
        let s = SignatureDescription {
            index: 0,
            step: 1,
            signer: "carol",
            on_behalf_of: None,
            absence: None,
            route: None,
            seal: false,
            level: 2,
            signing_time: 1_767_225_600,
            subject: "CN=Carol",
        };
        let base = s.sha256().unwrap();
        assert_eq!(base.len(), 64);
        let raised = SignatureDescription {
            level: 3,
            ..s.clone()
        };
        assert_ne!(raised.sha256().unwrap(), base);
        let other = SignatureDescription {
            on_behalf_of: Some("alice"),
            ..s.clone()
        };
        assert_ne!(other.sha256().unwrap(), base);
        // Same JSON under another tag: another digest.
        assert_ne!(digest(RECORD_TAG, &s).unwrap(), base);
    }
}
