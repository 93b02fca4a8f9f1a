//! The audit events: what one change to a tenant's records looks like in its log, and its
//! canonical encoding (the bytes hashed as a Merkle leaf).
//!
//! Canonical encoding: compact JSON (no whitespace), UTF-8, the fields in the order declared
//! below, absent optional fields written as `null` (except the digests added to
//! [`DocumentFacts`] later, left out when absent), no maps. The same event always encodes to
//! the same bytes, and [`AuditEvent::parse`] accepts only bytes that re-encode identically, so
//! a verifier hashes exactly what the server hashed. Pure: no storage, no clock.

use super::AuditError;
use serde::{Deserialize, Serialize};

/// Version of the event format.
pub const EVENT_FORMAT: u32 = 1;

/// One entry of a tenant's audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEvent {
    pub v: u32,
    pub tenant: String,
    /// Leaf index in the tenant's log.
    pub index: u64,
    /// Unix seconds.
    pub at: i64,
    /// Who made the change (`_system` for the server, `_scheduler`, `_seal`, `_operator`).
    pub actor: String,
    /// The user whose share `actor` acted for (delegation, escalation).
    pub on_behalf_of: Option<String>,
    /// What changed: `document/{id}`, `user/{name}`, `circuit/{name}/{v}`, `absence/{id}`, …
    pub subject: String,
    pub kind: String,
    pub detail: String,
    /// For document events, the facts a verifier checks against the document.
    pub document: Option<DocumentFacts>,
}

/// What a document event says about its document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocumentFacts {
    pub id: String,
    /// Position of the event in the document's history (0, 1, 2, …).
    pub seq: u64,
    pub step: Option<u32>,
    /// The document's state once this event happened.
    pub state: String,
    /// Lowercase hex SHA-256 of the document content.
    pub content_sha256: String,
    /// For `signed` and `sealed`: the signature's index and the SHA-256 of its CMS.
    pub signature: Option<u32>,
    pub signature_sha256: Option<String>,
    /// Lowercase hex leaf hash of the previous event of the same document (empty for the
    /// first): dropping or reordering a document's events breaks this chain.
    pub prev: String,
    /// For `submitted`: the digest of the document's description
    /// ([`super::commit::description_sha256`]). The fields below are absent from events
    /// written before they existed, whose encoding stays what it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description_sha256: Option<String>,
    /// The digest of the document record as the transition that logged this event left it
    /// ([`super::commit::record_sha256`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_sha256: Option<String>,
    /// For `signed` and `sealed`: the digest of the stored signature's description
    /// ([`super::commit::SignatureDescription`]: signer, level, subject, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature_description_sha256: Option<String>,
    /// For `signed` and `sealed` events of a format that signs inside the content (PES,
    /// PAdES): the content revision the signature created (1, 2, …; revision 0 is the
    /// submitted content, whose digest is `content_sha256`) and its lowercase hex SHA-256. The
    /// revision holds the signature: its digest here is the log's proof that the signature
    /// existed when the event was logged, as `signature_sha256` is for a detached CMS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_sha256: Option<String>,
}

impl AuditEvent {
    /// The canonical bytes.
    pub fn canonical(&self) -> Result<Vec<u8>, AuditError> {
        serde_json::to_vec(self).map_err(|e| AuditError::MalformedEvent(e.to_string()))
    }

    /// Parses canonical bytes; anything that does not re-encode to the same bytes is refused.
    pub fn parse(bytes: &[u8]) -> Result<AuditEvent, AuditError> {
        let e: AuditEvent =
            serde_json::from_slice(bytes).map_err(|e| AuditError::MalformedEvent(e.to_string()))?;
        if e.canonical()? != bytes {
            return Err(AuditError::MalformedEvent(
                "not in canonical form (re-encoding differs)".into(),
            ));
        }
        if e.v != EVENT_FORMAT {
            return Err(AuditError::MalformedEvent(format!(
                "unknown event format {}",
                e.v
            )));
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> AuditEvent {
        AuditEvent {
            v: EVENT_FORMAT,
            tenant: "ville".into(),
            index: 7,
            at: 1_767_225_600,
            actor: "bob".into(),
            on_behalf_of: Some("alice".into()),
            subject: "document/00".into(),
            kind: "approved".into(),
            detail: "step 0: ok".into(),
            document: Some(DocumentFacts {
                id: "00".into(),
                seq: 3,
                step: Some(0),
                state: "in_progress".into(),
                content_sha256: "ab".into(),
                signature: None,
                signature_sha256: None,
                prev: "cd".into(),
                description_sha256: None,
                record_sha256: None,
                signature_description_sha256: None,
                revision: None,
                revision_sha256: None,
            }),
        }
    }

    #[test]
    fn canonical_bytes_are_stable_and_strict() {
        let e = sample();
        let b = e.canonical().unwrap();
        assert_eq!(
            String::from_utf8(b.clone()).unwrap(),
            r#"{"v":1,"tenant":"ville","index":7,"at":1767225600,"actor":"bob","on_behalf_of":"alice","subject":"document/00","kind":"approved","detail":"step 0: ok","document":{"id":"00","seq":3,"step":0,"state":"in_progress","content_sha256":"ab","signature":null,"signature_sha256":null,"prev":"cd"}}"#
        );
        assert_eq!(AuditEvent::parse(&b).unwrap(), e);
        // Same content, other spelling: refused.
        let spaced = String::from_utf8(b)
            .unwrap()
            .replace(",\"index\"", ", \"index\"");
        assert!(AuditEvent::parse(spaced.as_bytes()).is_err());
        let extra = r#"{"v":1,"x":1}"#;
        assert!(AuditEvent::parse(extra.as_bytes()).is_err());
    }

    #[test]
    fn the_digests_are_left_out_when_absent_and_written_last_when_present() {
        // Without them, an event encodes as before they existed (the golden bytes above).
        let mut e = sample();
        let old = e.canonical().unwrap();
        assert!(!String::from_utf8(old.clone())
            .unwrap()
            .contains("record_sha256"));
        // Spelled out as null, it is not canonical.
        let nulled = String::from_utf8(old)
            .unwrap()
            .replace(r#""prev":"cd"}"#, r#""prev":"cd","record_sha256":null}"#);
        assert!(AuditEvent::parse(nulled.as_bytes()).is_err());
        if let Some(d) = e.document.as_mut() {
            d.record_sha256 = Some("ef".into());
            d.signature_description_sha256 = Some("01".into());
        }
        let b = e.canonical().unwrap();
        assert!(String::from_utf8(b.clone()).unwrap().ends_with(
            r#""prev":"cd","record_sha256":"ef","signature_description_sha256":"01"}}"#
        ));
        assert_eq!(AuditEvent::parse(&b).unwrap(), e);
    }
}
