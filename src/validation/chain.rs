//! Certificate path validation of a signer against trust settings, RGS profile with
//! revocation: the adapter from [`TrustSettings`] to [`crate::pki`], and the validation-time
//! model (ETSI EN 319 102-1, simplified).
//!
//! # When a signature is judged
//!
//! - At the **validation time**: now (or the time a user asks for), never the `signing-time` the
//!   signer wrote into his own attributes, which is a claim.
//! - Unless a **proof of existence** (POE) shows the signature existed earlier (paraph's audit
//!   log: the time the server recorded the completed signature). Then the certificates'
//!   validity, the path and the policies are judged at the POE, and revocation with the
//!   revocation information current *now*: a certificate revoked after the POE does not
//!   invalidate the signature, one revoked at or before it does (`REVOKED`).
//! - Revoked with no POE: `REVOKED_NO_POE` (INDETERMINATE): the signature may have been made
//!   before the revocation, nothing shows it.
//!
//! # CRLs carried by a signature
//!
//! They are material, never trust: one is used only if its signature verifies with the key of
//! a certificate of the same name among the configured anchors and intermediates or the
//! signature's own certificates (the path validation then checks that this certificate is the
//! path's CA). Of the CRLs of one scope (issuer, distribution point, complete or delta), only
//! the newest issued by the validation time is kept: an older CRL, still inside its
//! nextUpdate, cannot hide a revocation that a newer one lists.
//!
//! # Validating the same chain again
//!
//! A pass judged at the current time is remembered by [`super::verdicts`] with its exact
//! inputs and only for the instants where no date it depends on is crossed; everything else
//! (refusals, judgements at a proof of existence) runs in full every time.

use super::material::{self, CertInfo, CrlInfo};
use super::trust::TrustSettings;
use super::verdicts;
use crate::pki::{self, Crl, Refusal};
use openssl::x509::X509;
use std::collections::BTreeMap;
use x509_parser::prelude::FromDer;

/// When a signature is judged (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationTime {
    /// The current time, or the time a user asked for: the revocation information must be
    /// current then.
    pub now: i64,
    /// Proof of existence: the signature is known to have existed at this time (the audit log's
    /// record of it), earlier than `now`.
    pub poe: Option<i64>,
}

impl ValidationTime {
    /// Judged at `now`, with no proof of existence.
    pub fn at(now: i64) -> ValidationTime {
        ValidationTime { now, poe: None }
    }

    /// The time the certificates are judged at: the POE if there is one before `now`.
    pub fn judged_at(&self) -> i64 {
        match self.poe {
            Some(p) if p < self.now => p,
            _ => self.now,
        }
    }
}

/// A certificate chain that passed validation.
#[derive(Debug, Clone)]
pub struct ChainOk {
    pub level: u8,
    pub subject: String,
    pub policy_oid: Option<String>,
    /// Signer first, up to the anchor.
    pub chain: Vec<Vec<u8>>,
    /// The subjects of `chain`, in the same order.
    pub chain_subjects: Vec<String>,
}

/// Why a certificate is refused: an ETSI-style code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainRefusal {
    pub code: String,
    pub message: String,
}

/// Validates `leaf` (with `extra` untrusted certificates, and `extra_crls` carried by the
/// signature) against the tenant's trust at `at`, with the RGS profile and revocation
/// checking. `at` is the server's or the user's time, never a signer's claim.
pub fn validate_chain(
    trust: &TrustSettings,
    leaf: &[u8],
    extra: &[Vec<u8>],
    extra_crls: &[Vec<u8>],
    at: i64,
    required_level: Option<u8>,
) -> Result<ChainOk, ChainRefusal> {
    // The signature is being made (or was just made) at `at`: that time is its own proof.
    let time = ValidationTime {
        now: at,
        poe: Some(at),
    };
    validate_chain_at(trust, leaf, extra, extra_crls, time, required_level)
}

fn refuse(code: &str, message: String) -> ChainRefusal {
    ChainRefusal {
        code: code.into(),
        message,
    }
}

fn decode_certs<'a>(
    ders: impl Iterator<Item = &'a [u8]>,
    what: &str,
) -> Result<Vec<CertInfo>, ChainRefusal> {
    ders.map(|d| {
        material::certificate_info(d).map_err(|e| refuse("FORMAT_FAILURE", format!("{what}: {e}")))
    })
    .collect()
}

/// Validates like [`validate_chain`] under the validation-time model of this module.
pub fn validate_chain_at(
    trust: &TrustSettings,
    leaf: &[u8],
    extra: &[Vec<u8>],
    extra_crls: &[Vec<u8>],
    time: ValidationTime,
    required_level: Option<u8>,
) -> Result<ChainOk, ChainRefusal> {
    let leaf = material::certificate_info(leaf)
        .map_err(|e| refuse("FORMAT_FAILURE", format!("signer certificate: {e}")))?;
    let anchors = decode_certs(trust.anchors.iter().map(|d| d.0.as_slice()), "trust anchor")?;
    let untrusted = decode_certs(
        trust
            .intermediates
            .iter()
            .map(|d| d.0.as_slice())
            .chain(extra.iter().map(Vec::as_slice)),
        "intermediate certificate",
    )?;
    let configured = trust
        .crls
        .iter()
        .map(|d| material::crl(&d.0).map_err(|e| refuse("FORMAT_FAILURE", format!("CRL: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    // A CRL carried by the signature that cannot be parsed is ignored, like one that does not
    // verify: it is material offered by the signer, not a reason to fail.
    let offered: Vec<CrlInfo> = extra_crls
        .iter()
        .filter_map(|d| material::crl(d).ok())
        .collect();
    let judged_now = time.judged_at() >= time.now;
    let verdict = judged_now.then(|| {
        verdicts::Inputs {
            leaf: &leaf,
            anchors: &anchors,
            untrusted: &untrusted,
            configured: &configured,
            offered: &offered,
            policy_levels: &trust.policy_levels,
            required_level,
            owner: &trust.owner,
        }
        .key()
    });
    if let Some(ok) = verdict.as_ref().and_then(|k| verdicts::get(k, time.now)) {
        return Ok(ok);
    }
    // One that is already configured needs no second look.
    let signers: Vec<&X509> = anchors
        .iter()
        .chain(untrusted.iter())
        .chain(std::iter::once(&leaf))
        .map(|c| &c.cert)
        .collect();
    let carried: Vec<CrlInfo> = offered
        .iter()
        .filter(|c| !configured.iter().any(|k| k.sha256 == c.sha256))
        .filter(|c| signers.iter().any(|ca| signs_crl(ca, &c.crl)))
        .cloned()
        .collect();
    let instants = verdicts::instants(&leaf, &anchors, &untrusted, &configured, &carried);
    let crls = newest_per_scope(configured.into_iter().chain(carried).collect(), time.now);
    let leaf = leaf.cert;
    let anchors: Vec<X509> = anchors.into_iter().map(|c| c.cert).collect();
    let untrusted: Vec<X509> = untrusted.into_iter().map(|c| c.cert).collect();

    let mut opts = pki::VerifyOptions::new(time.judged_at(), pki::Profile::Rgs);
    opts.trust_anchors = anchors;
    opts.untrusted = untrusted;
    opts.policy_levels = trust.policy_levels.clone();
    opts.required_level = required_level;
    if judged_now {
        opts.crls = crls;
        return match pki::verify(&leaf, &opts) {
            Ok(v) => {
                let ok = chain_ok(&v)?;
                if let (Some(key), Some(instants)) = (verdict, instants) {
                    verdicts::put(key, &ok, time.now, &instants);
                }
                Ok(ok)
            }
            Err(r @ Refusal::Revoked { .. }) if time.poe.is_none() => Err(refuse(
                "REVOKED_NO_POE",
                format!(
                    "{r}; no proof of existence shows the signature was made before the \
                     revocation (the signing-time attribute is the signer's claim)"
                ),
            )),
            Err(r) => Err(refuse(r.code(), r.to_string())),
        };
    }

    // Proven earlier: everything but revocation at the POE ...
    opts.check_revocation = false;
    let at_poe = pki::verify(&leaf, &opts).map_err(|r| refuse(r.code(), r.to_string()))?;
    // ... and revocation with the information current now, the certificates' own validity
    // having been judged at the POE.
    let poe = time.judged_at();
    let mut now_opts = opts.clone();
    now_opts.at = time.now;
    now_opts.check_revocation = true;
    now_opts.crls = crls.clone();
    if let Err(all) = pki::verify_all(&leaf, &now_opts) {
        for r in all {
            match &r {
                Refusal::Expired { .. } | Refusal::NotYetValid { .. } => continue,
                Refusal::Revoked { cert, .. } => {
                    let revoked_at = revocation_time(at_poe.chain(), cert.depth as usize, &crls);
                    match revoked_at {
                        Some(t) if t > poe => continue,
                        Some(t) => {
                            return Err(refuse(
                                "REVOKED",
                                format!(
                                    "{r}: revoked at {}, not after the signature's proof of \
                                     existence at {}",
                                    pki::format_rfc3339(t),
                                    pki::format_rfc3339(poe)
                                ),
                            ))
                        }
                        None => return Err(refuse(r.code(), r.to_string())),
                    }
                }
                _ => return Err(refuse(r.code(), r.to_string())),
            }
        }
    }
    chain_ok(&at_poe)
}

fn chain_ok(v: &pki::ValidatedChain) -> Result<ChainOk, ChainRefusal> {
    Ok(ChainOk {
        chain_subjects: v
            .chain()
            .iter()
            .map(|c| crate::crypto::certs::name_string(c.subject_name()))
            .collect(),
        level: v.level().unwrap_or(0),
        subject: v.subject().to_owned(),
        policy_oid: v.policy().map(str::to_owned),
        chain: v
            .chain()
            .iter()
            .map(|c| {
                c.to_der()
                    .map_err(|e| refuse("FORMAT_FAILURE", e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?,
    })
}

/// Whether `ca` (same name as the CRL's issuer) signed `crl`.
pub(crate) fn signs_crl(ca: &X509, crl: &Crl) -> bool {
    let same_name = match (
        ca.subject_name().to_der(),
        crl.as_openssl().issuer_name().to_der(),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    same_name
        && ca
            .public_key()
            .ok()
            .and_then(|k| crl.as_openssl().verify(&k).ok())
            .unwrap_or(false)
}

/// Of the CRLs of one scope (issuer, issuing distribution point, delta or complete), the
/// newest issued at or before `at` (all of them when none was issued by then, so that path
/// validation names the problem).
fn newest_per_scope(crls: Vec<CrlInfo>, at: i64) -> Vec<Crl> {
    type Scope = (Vec<u8>, Vec<u8>, bool);
    let mut scopes: BTreeMap<Scope, Vec<CrlInfo>> = BTreeMap::new();
    for c in crls {
        let scope = (c.issuer.clone(), c.idp.clone(), c.delta);
        let list = scopes.entry(scope).or_default();
        if !list.iter().any(|k| k.sha256 == c.sha256) {
            list.push(c);
        }
    }
    let mut out = Vec::new();
    for (_, mut list) in scopes {
        let newest = list
            .iter()
            .map(|c| c.this_update)
            .filter(|t| *t <= at)
            .max();
        if let Some(n) = newest {
            list.retain(|c| c.this_update == n);
        }
        out.extend(list.into_iter().map(|c| c.crl));
    }
    out
}

/// When the certificate at `depth` of `chain` was revoked, by the earliest entry for it in a
/// CRL its issuer (the next certificate of the chain) signed.
fn revocation_time(chain: &[X509], depth: usize, crls: &[Crl]) -> Option<i64> {
    let cert = chain.get(depth)?;
    let issuer = chain.get(depth + 1)?;
    let cert_der = cert.to_der().ok()?;
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der).ok()?;
    crls.iter()
        .filter(|c| signs_crl(issuer, c))
        .filter_map(|c| {
            let (_, crl) =
                x509_parser::revocation_list::CertificateRevocationList::from_der(c.der()).ok()?;
            crl.iter_revoked_certificates()
                .filter(|e| e.raw_serial() == parsed.raw_serial())
                .map(|e| e.revocation_date.timestamp())
                .min()
        })
        .min()
}
