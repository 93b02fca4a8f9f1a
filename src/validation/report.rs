//! Validation reports for any CMS signature over any data, in ETSI EN 319 102-1 terms:
//! an indication (TOTAL_PASSED, TOTAL_FAILED, INDETERMINATE) and a sub-indication naming why.
//! Pure function of its inputs (trust settings, data, signature, time): usable offline.

use super::chain::validate_chain;
use super::trust::TrustSettings;
use crate::crypto::cades::{check_signer, SignerDefect};
use crate::crypto::certs::{certs_from, summarize_cert};
use sha2::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Indication {
    TotalPassed,
    Indeterminate,
    TotalFailed,
}

impl Indication {
    pub fn as_str(self) -> &'static str {
        match self {
            Indication::TotalPassed => "TOTAL_PASSED",
            Indication::Indeterminate => "INDETERMINATE",
            Indication::TotalFailed => "TOTAL_FAILED",
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SignerReport {
    pub indication: Indication,
    pub sub_indication: String,
    pub message: String,
    pub signer: String,
    pub level: u8,
    pub signing_time: Option<i64>,
    pub chain: Vec<String>,
    pub policy_oid: Option<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub indication: Indication,
    pub sub_indication: String,
    pub signers: Vec<SignerReport>,
}

/// Sub-indications that make a signature definitely invalid; the others leave it undecided.
fn indication_of(code: &str) -> Indication {
    match code {
        "HASH_FAILURE" | "SIG_CRYPTO_FAILURE" | "REVOKED" | "EXPIRED" | "NOT_YET_VALID"
        | "FORMAT_FAILURE" => Indication::TotalFailed,
        _ => Indication::Indeterminate,
    }
}

fn failed(code: &str, message: String, signer: String, signing_time: Option<i64>) -> SignerReport {
    SignerReport {
        indication: indication_of(code),
        sub_indication: code.to_owned(),
        message,
        signer,
        level: 0,
        signing_time,
        chain: Vec::new(),
        policy_oid: None,
    }
}

/// Validates every signer of `cms` (DER or PEM) over `data` at `at` (default: each signer's
/// signing time) against `trust`.
pub fn validate_cms(
    trust: &TrustSettings,
    data: &[u8],
    cms: &[u8],
    at: Option<i64>,
    required_level: Option<u8>,
) -> Report {
    let der = pem_to_der(cms);
    let parsed = match crate::crypto::parse(&der) {
        Ok(p) => p,
        Err(e) => {
            let r = failed("FORMAT_FAILURE", e.to_string(), String::new(), None);
            return Report {
                indication: r.indication,
                sub_indication: r.sub_indication.clone(),
                signers: vec![r],
            };
        }
    };
    let digest: [u8; 32] = sha2::Sha256::digest(data).into();
    let mut signers = Vec::new();
    for s in &parsed.signers {
        let Some(cert) = &s.cert_der else {
            signers.push(failed(
                "NO_SIGNING_CERTIFICATE_FOUND",
                "the signer certificate is not in the signature".into(),
                String::new(),
                s.signing_time,
            ));
            continue;
        };
        let subject = certs_from(cert)
            .ok()
            .and_then(|c| c.first().and_then(|c| summarize_cert(c).ok()))
            .map(|s| s.subject)
            .unwrap_or_default();
        if let Err(d) = check_signer(s, &digest, cert) {
            let (code, msg) = match d {
                SignerDefect::Format(m) => ("FORMAT_FAILURE", m),
                SignerDefect::HashFailure => (
                    "HASH_FAILURE",
                    "the message digest does not match the data".to_string(),
                ),
                SignerDefect::SigCrypto => (
                    "SIG_CRYPTO_FAILURE",
                    "the signature value does not verify".to_string(),
                ),
                SignerDefect::WeakAlgorithm(m) => ("WEAK_ALGORITHM", m),
            };
            signers.push(failed(code, msg, subject, s.signing_time));
            continue;
        }
        let Some(when) = at.or(s.signing_time) else {
            signers.push(failed(
                "FORMAT_FAILURE",
                "no signing time and no validation time".into(),
                subject,
                None,
            ));
            continue;
        };
        let others: Vec<Vec<u8>> = parsed
            .certs
            .iter()
            .filter(|c| *c != cert)
            .cloned()
            .collect();
        match validate_chain(trust, cert, &others, &parsed.crls, when, required_level) {
            Ok(ok) => signers.push(SignerReport {
                indication: Indication::TotalPassed,
                sub_indication: String::new(),
                message: "valid".into(),
                signer: ok.subject.clone(),
                level: ok.level,
                signing_time: s.signing_time,
                chain: ok
                    .chain
                    .iter()
                    .filter_map(|c| {
                        certs_from(c)
                            .ok()
                            .and_then(|v| v.first().and_then(|c| summarize_cert(c).ok()))
                    })
                    .map(|s| s.subject)
                    .collect(),
                policy_oid: s.policy_oid.clone(),
            }),
            Err(r) => signers.push(failed(&r.code, r.message, subject, s.signing_time)),
        }
    }
    let worst = signers
        .iter()
        .max_by_key(|r| r.indication)
        .map(|r| (r.indication, r.sub_indication.clone()))
        .unwrap_or((Indication::TotalFailed, "FORMAT_FAILURE".into()));
    Report {
        indication: worst.0,
        sub_indication: worst.1,
        signers,
    }
}

/// Accepts a PEM-armoured CMS (`-----BEGIN CMS-----` or PKCS7) as well as DER.
fn pem_to_der(bytes: &[u8]) -> Vec<u8> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return bytes.to_vec();
    };
    if !text.trim_start().starts_with("-----BEGIN") {
        return bytes.to_vec();
    }
    let body: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("");
    openssl::base64::decode_block(body.trim()).unwrap_or_else(|_| bytes.to_vec())
}
