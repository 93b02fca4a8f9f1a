//! `paraph admin check`: verifies a stopped store end to end and lists what is wrong. Every
//! record is read (its index checksum, its value-log pointer and the value's CRC) and the
//! records whose type is known are decoded, each content against its digest; the indexes must
//! agree with the records they point to (inbox, due, submitted, circuitlatest, evdoc, sig); each
//! tenant's audit log must recompute to the root of its head and of its last signed checkpoint
//! (see [`super::audit::check_log`]).
//!
//! Owns only the checking: it reads, never repairs, and must not write to the store.

use super::signatures::SignatureRecord;
use super::ServiceError;
use crate::audit::AuditPublicKey;
use crate::domain::{Circuit, DocState, Document, TenantId, User};
use crate::store::Store;
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};

/// What a check found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Records read.
    pub records: u64,
    /// Records written by an older version, without an index checksum.
    pub unchecked: u64,
    /// Tenants whose audit log was verified.
    pub tenants: u64,
    /// Each problem, naming the key it concerns.
    pub problems: Vec<String>,
}

impl CheckReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The references an index entry makes, checked once every record is read.
#[derive(Default)]
struct Seen {
    docs: BTreeMap<(String, String), DocState>,
    circuits: BTreeSet<(String, String, u32)>,
    tenants: BTreeSet<String>,
    /// `(key, tenant, document)` of each entry that names a document.
    doc_refs: Vec<(String, String, String, bool)>,
    /// `(key, tenant, circuit, version)`.
    latest: Vec<(String, String, String, u32)>,
}

/// Decodes `value` as a `T`, or notes why not.
fn decodes<T: DeserializeOwned>(key: &str, value: &[u8], problems: &mut Vec<String>) -> Option<T> {
    match serde_json::from_slice(value) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!("{key}: the record does not decode: {e}"));
            None
        }
    }
}

/// Checks the store, which must be opened by the caller alone (a stopped server's).
/// `audit_key` verifies the checkpoints' signatures when given.
pub fn check_store(
    store: &Store,
    audit_key: Option<&AuditPublicKey>,
) -> Result<CheckReport, ServiceError> {
    let mut report = CheckReport::default();
    let mut seen = Seen::default();
    let problems = &mut report.problems;
    let (records, unchecked) = (&mut report.records, &mut report.unchecked);
    store.check_walk(|key, value, summed| {
        *records += 1;
        if !summed {
            *unchecked += 1;
        }
        let key = String::from_utf8_lossy(key).into_owned();
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{key}: {e}"));
                return;
            }
        };
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["tenant", t] => {
                seen.tenants.insert((*t).to_owned());
                decodes::<serde_json::Value>(&key, &value, problems);
            }
            ["user", _, _] => {
                decodes::<User>(&key, &value, problems);
            }
            ["doc", t, id] => {
                if let Some(d) = decodes::<Document>(&key, &value, problems) {
                    if d.id.to_string() != *id || d.tenant.to_string() != *t {
                        problems.push(format!(
                            "{key}: holds document {} of tenant {}",
                            d.id, d.tenant
                        ));
                    }
                    seen.docs
                        .insert(((*t).to_owned(), (*id).to_owned()), d.state);
                }
            }
            ["circuit", t, name, version] => {
                if let Some(c) = decodes::<Circuit>(&key, &value, problems) {
                    let v = version.parse::<u32>().ok();
                    if c.name.to_string() != *name || Some(c.version) != v {
                        problems.push(format!(
                            "{key}: holds circuit {} version {}",
                            c.name, c.version
                        ));
                    }
                    seen.circuits
                        .insert(((*t).to_owned(), (*name).to_owned(), c.version));
                }
            }
            ["circuitlatest", t, name] => {
                if let Some(v) = decodes::<u32>(&key, &value, problems) {
                    seen.latest
                        .push((key.clone(), (*t).to_owned(), (*name).to_owned(), v));
                }
            }
            ["inbox", t, _, _, id] => {
                seen.doc_refs
                    .push((key.clone(), (*t).to_owned(), (*id).to_owned(), true));
            }
            ["submitted", t, _, _, id] => {
                seen.doc_refs
                    .push((key.clone(), (*t).to_owned(), (*id).to_owned(), false));
            }
            ["due", t, _, id] => {
                seen.doc_refs
                    .push((key.clone(), (*t).to_owned(), (*id).to_owned(), true));
            }
            ["evdoc", t, id] => {
                decodes::<serde_json::Value>(&key, &value, problems);
                seen.doc_refs
                    .push((key.clone(), (*t).to_owned(), (*id).to_owned(), false));
            }
            ["sig", t, id, _] => {
                decodes::<SignatureRecord>(&key, &value, problems);
                seen.doc_refs
                    .push((key.clone(), (*t).to_owned(), (*id).to_owned(), false));
            }
            ["idem", ..] => {
                // The request's fingerprint (64 hex characters), a newline and the answer's
                // JSON; older records are one JSON object.
                let answer = match value.get(64) {
                    Some(b'\n') if value[..64].iter().all(u8::is_ascii_hexdigit) => &value[65..],
                    _ => &value[..],
                };
                decodes::<serde_json::Value>(&key, answer, problems);
            }
            ["blob", _, sha256] => {
                // A content is kept under its digest: on PostgreSQL, where no checksum of ours
                // guards the record, this is what finds a changed one.
                use sha2::Digest as _;
                if hex::encode(sha2::Sha256::digest(&value)) != *sha256 {
                    problems.push(format!("{key}: the content does not match its digest"));
                }
            }
            ["token" | "trust" | "absences" | "userlist" | "prep", ..] if !value.is_empty() => {
                decodes::<serde_json::Value>(&key, &value, problems);
            }
            _ => {}
        }
    })?;
    for (key, t, id, active) in &seen.doc_refs {
        match seen.docs.get(&(t.clone(), id.clone())) {
            None => problems.push(format!("{key}: names document {id}, which is missing")),
            Some(state) if *active && *state != DocState::InProgress => problems.push(format!(
                "{key}: names document {id} as waiting, but it is {state:?}"
            )),
            Some(_) => {}
        }
    }
    for (key, t, name, v) in &seen.latest {
        if !seen.circuits.contains(&(t.clone(), name.clone(), *v)) {
            problems.push(format!(
                "{key}: names version {v} of circuit {name}, which is missing"
            ));
        }
    }
    for t in &seen.tenants {
        let Ok(tenant) = TenantId::parse(t) else {
            problems.push(format!("tenant/{t}: not a valid tenant id"));
            continue;
        };
        report.tenants += 1;
        problems.extend(super::audit::check_log(store, &tenant, audit_key));
    }
    Ok(report)
}
