//! `paraph verify-bundle`: checks an evidence bundle offline, with no server and no token.
//!
//! The structural and log checks are [`crate::audit::bundle::verify`]'s; this module supplies
//! the cryptographic validation of each signature ([`signature_checker`]: a detached CMS over
//! the bundle's content, a PAdES or PES signature in the revision it created, with its chain
//! and CRLs at the time the log recorded it, its RGS level
//! recomputed under the auditor's policy map, or shown as a claim without one), and prints the
//! result.

use super::commands::print_json;
use super::error::CliError;
use super::validation::{parse_policy_level, policy_map, read_file};
use crate::audit::bundle::{
    self, BundleSignature, EvidenceBundle, SignatureChecked, Signed, VerifiedBundle,
};
use crate::audit::AuditPublicKey;
use crate::domain::SignatureFormat;
use crate::pki::format_rfc3339;
use crate::validation::{
    validate_cms, validate_pades_cms, validate_xades, Der, Indication, ProofOfExistence,
    TrustSettings,
};
use clap::Args;
use serde_json::{json, Value};
use std::collections::BTreeMap;
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
    /// Accepted certificate policy and its RGS level, e.g. 1.2.250.1.96.1.1=2 (repeatable):
    /// each signature's level is recomputed from its signer certificate's policy and must be
    /// the recorded one. Without it, the recorded level is shown as claimed, not verified.
    #[arg(long = "policy-level", value_name = "OID=LEVEL", value_parser = parse_policy_level)]
    pub policy_level: Vec<(String, u8)>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// What the note says when no trust anchor is given.
pub const SELF_ANCHORED_NOTE: &str = "no --trust given: each signature chain was checked \
     against the bundle's own root certificate, not an independent trust anchor";

/// What the text says of a level taken as given.
pub const CLAIMED_LEVEL: &str = "claimed, not verified: no --policy-level given";

/// The cryptographic check of one bundle signature, for [`bundle::verify`], at the time the
/// log recorded the signature, with the signature's chain and CRLs: a detached CAdES CMS by
/// `validate_cms` over the content; a PAdES signature by finding, in the revision it created,
/// the signature that covers that revision whole, whose CMS must be the logged one, then its
/// CMS over its byte range; a PES signature by `validate_xades` on every bordereau of the
/// revision it created, each signed with the recorded certificate at the recorded time. With
/// a policy map (OID → level), the signer's level is the one its certificate policy has in it
/// and must be the recorded one; without (an empty map), every certificate policy of the
/// signer is accepted at the recorded level and that level is a claim. The validated signer
/// must be the recorded subject. `anchors` are trust anchors (DER); empty means the last
/// certificate of each signature's own chain. Passes only on TOTAL_PASSED.
pub fn signature_checker(
    anchors: Vec<Vec<u8>>,
    policy_levels: BTreeMap<String, u8>,
) -> impl Fn(&BundleSignature, &Signed<'_>, i64) -> Result<SignatureChecked, String> {
    move |s, signed, logged_at| check_signature(&anchors, &policy_levels, s, signed, logged_at)
}

/// The trust a signature is checked under, whether its level is verified, and whether its
/// chain is anchored in its own root.
fn trust_for(
    anchors: &[Vec<u8>],
    policy_levels: &BTreeMap<String, u8>,
    s: &BundleSignature,
) -> Result<(TrustSettings, bool, bool), String> {
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
    let level_verified = !policy_levels.is_empty();
    let policy_levels = if level_verified {
        policy_levels.clone()
    } else {
        let policies = crate::pki::policy_oids(&leaf.0);
        if policies.is_empty() {
            return Err("the signer certificate has no certificate policy".into());
        }
        policies.into_iter().map(|p| (p, s.level)).collect()
    };
    let trust = TrustSettings {
        anchors,
        intermediates: intermediates.iter().map(|c| Der(c.0.clone())).collect(),
        crls: s.crls.iter().map(|c| Der(c.0.clone())).collect(),
        policy_levels,
        ..TrustSettings::default()
    };
    Ok((trust, level_verified, own_root))
}

fn check_signature(
    anchors: &[Vec<u8>],
    policy_levels: &BTreeMap<String, u8>,
    s: &BundleSignature,
    signed: &Signed<'_>,
    logged_at: i64,
) -> Result<SignatureChecked, String> {
    let (trust, level_verified, own_root) = trust_for(anchors, policy_levels, s)?;
    // The audit log proves the signature existed when the server recorded it (a detached CMS
    // by its digest, a signature inside the content by the digest of the revision it created):
    // it is judged at that time (not at the signing time it claims), with the revocation
    // information the bundle carries, which was current then (a later revocation cannot undo a
    // signature proven earlier; fresher CRLs are not part of a bundle).
    let poe = |values: Vec<Vec<u8>>| -> Vec<ProofOfExistence> {
        values
            .into_iter()
            .map(|signature_value| ProofOfExistence {
                signature_value,
                at: logged_at,
            })
            .collect()
    };
    let cms_values = |cms: &[u8]| -> Vec<Vec<u8>> {
        crate::crypto::parse(cms)
            .map(|p| p.signers.into_iter().map(|si| si.signature).collect())
            .unwrap_or_default()
    };
    let (report, what) = match signed.format {
        SignatureFormat::XadesPes => {
            let revision = signed.revision.unwrap_or_default();
            let checks = crate::formats::xades_pes::check_signatures(signed.content)
                .map_err(|e| format!("revision {revision}: {e}"))?;
            let leaf = s.chain.first().map(|c| c.0.as_slice());
            for c in &checks {
                if c.cert_der.as_deref() != leaf {
                    return Err(format!(
                        "the signature of '{}' in revision {revision} is not made with the \
                         recorded signer certificate",
                        c.reference
                    ));
                }
                let time = c
                    .signing_time
                    .as_deref()
                    .and_then(|t| crate::pki::time::parse_rfc3339(t.trim()).ok());
                if time != Some(s.signing_time) {
                    return Err(format!(
                        "the SigningTime of '{}' in revision {revision} is not the recorded {}",
                        c.reference,
                        format_rfc3339(s.signing_time)
                    ));
                }
            }
            let proofs = poe(checks.into_iter().map(|c| c.signature_value).collect());
            // The policy hash is the tenant's setting, not known offline: not compared.
            let pes = crate::formats::xades_pes::PesSettings {
                policy_hash: String::new(),
                ..Default::default()
            };
            let report = validate_xades(&trust, &pes, signed.content, logged_at, &proofs, None);
            (
                report,
                format!("XAdES in revision {revision}, every bordereau"),
            )
        }
        SignatureFormat::Pades => {
            let revision = signed.revision.unwrap_or_default();
            let found = crate::formats::pades::signatures(signed.content)
                .map_err(|e| format!("revision {revision}: {e}"))?;
            // The signature that made this revision covers it whole, with nothing after.
            let Some(f) = found
                .iter()
                .find(|f| f.covers_whole_revision && f.later_bytes == 0)
            else {
                return Err(format!(
                    "revision {revision} holds no signature that covers it whole"
                ));
            };
            let crls: Vec<Vec<u8>> = s.crls.iter().map(|c| c.0.clone()).collect();
            let embedded = crate::crypto::with_crls(&f.cms, &crls)
                .map_err(|e| format!("revision {revision}: the CMS of field {}: {e}", f.field))?;
            if embedded != s.cms.0 {
                return Err(format!(
                    "the CMS in field {} of revision {revision} is not the logged one",
                    f.field
                ));
            }
            if f.time != Some(s.signing_time) {
                return Err(format!(
                    "the /M of field {} in revision {revision} is not the recorded signing time {}",
                    f.field,
                    format_rfc3339(s.signing_time)
                ));
            }
            let proofs = poe(cms_values(&s.cms.0));
            let report = validate_pades_cms(&trust, &f.covered, &s.cms.0, logged_at, &proofs, None);
            (
                report,
                format!("PAdES field {} covering revision {revision}", f.field),
            )
        }
        _ => {
            let proofs = poe(cms_values(&s.cms.0));
            (
                validate_cms(&trust, signed.content, &s.cms.0, logged_at, &proofs, None),
                String::new(),
            )
        }
    };
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
    for r in &report.signers {
        if r.signer != s.subject {
            return Err(format!(
                "its recorded subject {:?} is not its certificate's {:?}",
                s.subject, r.signer
            ));
        }
        if r.level != s.level {
            return Err(format!(
                "its recorded RGS level {} is not the level {} its certificate policy has under \
                 the given --policy-level map",
                s.level, r.level
            ));
        }
    }
    let mut signers: Vec<String> = report.signers.iter().map(|r| r.signer.clone()).collect();
    signers.dedup();
    let level = if level_verified {
        format!("RGS level {}", s.level)
    } else {
        format!("RGS level {} ({CLAIMED_LEVEL})", s.level)
    };
    let what = if what.is_empty() {
        what
    } else {
        format!(" ({what})")
    };
    Ok(SignatureChecked {
        report: format!(
            "{}{what} by {}, {level}, validated at {} (logged){}",
            Indication::TotalPassed.as_str(),
            signers.join(", "),
            format_rfc3339(logged_at),
            if own_root {
                " (chain checked against the bundle's own root, not an independent trust anchor)"
            } else {
                ", chain checked against the given trust anchor"
            }
        ),
        level_verified,
    })
}

fn read_anchors(files: &[PathBuf]) -> Result<Vec<Vec<u8>>, CliError> {
    let mut out = Vec::new();
    for f in files {
        let bytes = super::validation::read_kind(
            "trust anchor",
            f,
            crate::pki::kind::FileKind::Certificate,
        )?;
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
    let key_pem =
        super::validation::read_kind("log key", &a.log_key, crate::pki::kind::FileKind::PublicKey)?;
    let key = AuditPublicKey::from_pem(&key_pem)
        .map_err(|e| CliError::Usage(format!("{}: {e}", a.log_key.display())))?;
    let anchors = read_anchors(&a.trust)?;
    let policies = policy_map(&a.policy_level)?;
    let self_anchored = anchors.is_empty();
    let raw = read_file("bundle", &a.file)?;
    let result = verify_bytes(&raw, &key, anchors, policies);
    match result {
        Ok(v) => {
            if a.json {
                print_json(&verified_json(&v, self_anchored));
            } else {
                print_text!("{}", verified_text(&v, self_anchored));
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
                    "unverified": Value::Null,
                    "summary": Value::Null,
                }));
            }
            Err(CliError::NotPassed(format!("bundle refused: {e}")))
        }
    }
}

/// What `verify-bundle` checks, from the file's bytes: the bundle parsed, then
/// [`bundle::verify`] with [`signature_checker`].
pub fn verify_bytes(
    raw: &[u8],
    key: &AuditPublicKey,
    anchors: Vec<Vec<u8>>,
    policy_levels: BTreeMap<String, u8>,
) -> Result<VerifiedBundle, bundle::BundleError> {
    EvidenceBundle::from_json(raw)
        .and_then(|b| bundle::verify(&b, key, &signature_checker(anchors, policy_levels)))
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
            "revisions_sha256": v.revisions,
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
        "unverified": v.unverified,
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
    for (i, r) in v.revisions.iter().enumerate() {
        out.push_str(&format!("revision {} SHA-256 {r}\n", i + 1));
    }
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
    for u in &v.unverified {
        out.push_str(&format!("UNVERIFIED: {u}\n"));
    }
    out.push_str("summary:\n");
    for line in &v.summary {
        out.push_str(&format!("  {line}\n"));
    }
    out
}
