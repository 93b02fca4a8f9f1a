//! `paraph verify-bundle`: checks an evidence bundle offline, with no server and no token.
//!
//! The structural and log checks are [`crate::audit::bundle::verify`]'s; this module supplies
//! the cryptographic validation of each signature ([`signature_checker`]: the CMS over the
//! bundle's content, its chain and CRLs at the signature's recorded signing time and level),
//! and prints the result.

use super::commands::print_json;
use super::error::CliError;
use super::validation::read_file;
use crate::audit::bundle::{self, BundleSignature, EvidenceBundle, VerifiedBundle};
use crate::audit::AuditPublicKey;
use crate::pki::format_rfc3339;
use crate::validation::{validate_cms, Der, Indication, ProofOfExistence, TrustSettings};
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Args)]
pub struct VerifyBundleArgs {
    /// The evidence bundle (JSON), as exported by the server.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The audit log's public key (PEM), obtained independently of the bundle.
    #[arg(long, value_name = "KEY.pem")]
    pub log_key: PathBuf,
    /// Trust anchor for the signatures' certificate chains (PEM or DER; repeat for several).
    /// Without it, each chain is checked against the root certificate the bundle itself
    /// carries, which proves the chain is consistent but not that the root is trustworthy.
    #[arg(long, value_name = "ROOT.pem")]
    pub trust: Vec<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What the note says when no trust anchor is given.
pub const SELF_ANCHORED_NOTE: &str = "no --trust given: each signature chain was checked \
     against the bundle's own root certificate, not an independent trust anchor";

/// The cryptographic check of one bundle signature, for [`bundle::verify`]: `validate_cms`
/// over the content at the signature's signing time, with the signature's chain and CRLs,
/// every certificate policy of the signer accepted at the recorded level (the level the server
/// enforced) and that level required. `anchors` are trust anchors (DER); empty means the last
/// certificate of each signature's own chain. Passes only on TOTAL_PASSED.
pub fn signature_checker(
    anchors: Vec<Vec<u8>>,
) -> impl Fn(&BundleSignature, &[u8]) -> Result<String, String> {
    move |s, content| check_signature(&anchors, s, content)
}

fn check_signature(
    anchors: &[Vec<u8>],
    s: &BundleSignature,
    content: &[u8],
) -> Result<String, String> {
    let Some((leaf, rest)) = s.chain.split_first() else {
        return Err("the bundle gives no certificate chain".into());
    };
    if !(1..=3).contains(&s.level) {
        return Err(format!("recorded RGS level {} is not 1, 2 or 3", s.level));
    }
    let (anchors, intermediates, own_root) = if anchors.is_empty() {
        // The root the chain ends with, the certificates between as intermediates.
        let root = rest.last().unwrap_or(leaf);
        let between = rest.split_last().map(|(_, b)| b).unwrap_or_default();
        (vec![Der(root.0.clone())], between, true)
    } else {
        (anchors.iter().cloned().map(Der).collect(), rest, false)
    };
    let policies = crate::pki::policy_oids(&leaf.0);
    if policies.is_empty() {
        return Err("the signer certificate has no certificate policy".into());
    }
    let trust = TrustSettings {
        anchors,
        intermediates: intermediates.iter().map(|c| Der(c.0.clone())).collect(),
        crls: s.crls.iter().map(|c| Der(c.0.clone())).collect(),
        policy_levels: policies.into_iter().map(|p| (p, s.level)).collect(),
        ..TrustSettings::default()
    };
    // The audit log proves the signature existed when the server recorded it; the CMS is
    // judged at that time, with the revocation information the bundle carries, as of now.
    let proofs: Vec<ProofOfExistence> = crate::crypto::parse(&s.cms.0)
        .map(|p| {
            p.signers
                .into_iter()
                .map(|signer| ProofOfExistence {
                    signature_value: signer.signature,
                    at: s.signing_time,
                })
                .collect()
        })
        .unwrap_or_default();
    let now = {
        use crate::clock::Clock;
        crate::clock::SystemClock.now().0
    };
    let report = validate_cms(&trust, content, &s.cms.0, now, &proofs, Some(s.level));
    if report.indication != Indication::TotalPassed {
        let why = report
            .signers
            .iter()
            .find(|r| r.indication != Indication::TotalPassed)
            .map(|r| format!(": {}", r.message))
            .unwrap_or_default();
        return Err(format!(
            "{} / {}{why}",
            report.indication.as_str(),
            report.sub_indication
        ));
    }
    let signers: Vec<String> = report.signers.iter().map(|r| r.signer.clone()).collect();
    Ok(format!(
        "{} by {}, RGS level {} at {}{}",
        Indication::TotalPassed.as_str(),
        signers.join(", "),
        s.level,
        format_rfc3339(s.signing_time),
        if own_root {
            " (chain checked against the bundle's own root, not an independent trust anchor)"
        } else {
            ", chain checked against the given trust anchor"
        }
    ))
}

fn read_anchors(files: &[PathBuf]) -> Result<Vec<Vec<u8>>, CliError> {
    let mut out = Vec::new();
    for f in files {
        let bytes = read_file("trust anchor", f)?;
        let certs = crate::crypto::certs::certs_from(&bytes)
            .map_err(|e| CliError::Usage(format!("{}: {e}", f.display())))?;
        for c in certs {
            out.push(
                c.to_der()
                    .map_err(|e| CliError::Usage(format!("{}: {e}", f.display())))?,
            );
        }
    }
    Ok(out)
}

/// `paraph verify-bundle FILE --log-key KEY.pem [--trust ROOT.pem]…`: prints `bundle verified`
/// and the details, or fails with `bundle refused: <first failure>` (exit 6). Unreadable
/// input files exit 2.
pub fn verify_bundle(a: VerifyBundleArgs) -> Result<(), CliError> {
    let key_pem = read_file("log key", &a.log_key)?;
    let key = AuditPublicKey::from_pem(&key_pem)
        .map_err(|e| CliError::Usage(format!("{}: {e}", a.log_key.display())))?;
    let anchors = read_anchors(&a.trust)?;
    let self_anchored = anchors.is_empty();
    let raw = read_file("bundle", &a.file)?;
    let result = EvidenceBundle::from_json(&raw)
        .and_then(|b| bundle::verify(&b, &key, &signature_checker(anchors)));
    match result {
        Ok(v) => {
            if a.json {
                print_json(&verified_json(&v, self_anchored));
            } else {
                print!("{}", verified_text(&v, self_anchored));
            }
            Ok(())
        }
        Err(e) => {
            if a.json {
                print_json(&json!({
                    "verified": false,
                    "error": e.to_string(),
                    "document": Value::Null,
                    "checkpoint": Value::Null,
                    "events": Value::Null,
                    "signatures": Value::Null,
                    "summary": Value::Null,
                }));
            }
            Err(CliError::NotPassed(format!("bundle refused: {e}")))
        }
    }
}

fn verified_json(v: &VerifiedBundle, self_anchored: bool) -> Value {
    json!({
        "verified": true,
        "error": Value::Null,
        "document": {
            "tenant": v.tenant,
            "id": v.document_id,
            "title": v.title,
            "state": v.state,
            "content_sha256": v.content_sha256,
        },
        "checkpoint": {
            "origin": v.checkpoint.origin,
            "size": v.checkpoint.size,
            "time": v.checkpoint.time,
            "root": v.checkpoint.root,
        },
        "events": v.events,
        "signatures": v.signatures,
        "trust": if self_anchored { "bundle_roots" } else { "given_anchors" },
        "summary": v.summary,
    })
}

fn verified_text(v: &VerifiedBundle, self_anchored: bool) -> String {
    let mut out = String::from("bundle verified\n");
    out.push_str(&format!(
        "document {} \"{}\" (tenant {}), state {}\n",
        v.document_id, v.title, v.tenant, v.state
    ));
    out.push_str(&format!("content SHA-256 {}\n", v.content_sha256));
    out.push_str(&format!(
        "checkpoint {} size {} at {} (root {})\n",
        v.checkpoint.origin,
        v.checkpoint.size,
        format_rfc3339(v.checkpoint.time),
        v.checkpoint.root
    ));
    out.push_str(&format!(
        "events: {}, each proven in the checkpoint and chained to the previous one\n",
        v.events
    ));
    out.push_str(&format!("signatures: {}\n", v.signatures.len()));
    for s in &v.signatures {
        let who = if s.seal {
            "seal".to_owned()
        } else {
            match &s.on_behalf_of {
                Some(o) => format!("{} on behalf of {o}", s.signer),
                None => s.signer.clone(),
            }
        };
        out.push_str(&format!(
            "  #{} step {} {who}: {}\n",
            s.index, s.step, s.check
        ));
    }
    if self_anchored && !v.signatures.is_empty() {
        out.push_str(&format!("note: {SELF_ANCHORED_NOTE}\n"));
    }
    out.push_str("summary:\n");
    for line in &v.summary {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
