//! Validation reports for any CMS signature over any data, in ETSI EN 319 102-1 terms:
//! an indication (TOTAL_PASSED, TOTAL_FAILED, INDETERMINATE) and a sub-indication naming why.
//! Pure function of its inputs (trust settings, data, signature, time, proofs of existence):
//! usable offline.

use super::chain::{validate_chain_at, ValidationTime};
use super::trust::TrustSettings;
use crate::crypto::cades::{check_signer, Content, SignerDefect};

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
    /// The signing-time attribute: the signer's claim, reported as such, never used to judge.
    pub signing_time: Option<i64>,
    pub chain: Vec<String>,
    pub policy_oid: Option<String>,
    /// The time the signer's certificates were judged at: the proof of existence if there is
    /// one, else the validation time.
    pub validation_time: i64,
    /// The proof of existence used, if any (paraph's audit log).
    pub proof_of_existence: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub indication: Indication,
    pub sub_indication: String,
    pub signers: Vec<SignerReport>,
}

/// A proof that a signature value existed at a time (e.g. the audit log's record of a
/// signature completed through paraph).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofOfExistence {
    /// The SignerInfo's signature value it proves.
    pub signature_value: Vec<u8>,
    /// Unix seconds.
    pub at: i64,
}

/// Sub-indications that make a signature definitely invalid; the others leave it undecided.
fn indication_of(code: &str) -> Indication {
    match code {
        "HASH_FAILURE" | "SIG_CRYPTO_FAILURE" | "REVOKED" | "EXPIRED" | "NOT_YET_VALID"
        | "FORMAT_FAILURE" => Indication::TotalFailed,
        _ => Indication::Indeterminate,
    }
}

struct Failure<'a> {
    signer: String,
    signing_time: Option<i64>,
    time: &'a ValidationTime,
}

impl Failure<'_> {
    fn report(&self, code: &str, message: String) -> SignerReport {
        SignerReport {
            indication: indication_of(code),
            sub_indication: code.to_owned(),
            message,
            signer: self.signer.clone(),
            level: 0,
            signing_time: self.signing_time,
            chain: Vec::new(),
            policy_oid: None,
            validation_time: self.time.judged_at(),
            proof_of_existence: self.time.poe,
        }
    }
}

/// Validates every signer of `cms` (DER or PEM) over `data` against `trust`, at `now` (the
/// current time, or the time a user asked for), or at the time of a proof of existence in
/// `proofs` for that signer's signature value. The signers' own signing-time attributes are
/// reported, never used. CRLs carried in the CMS are used only as described in
/// [`super::chain`].
pub fn validate_cms(
    trust: &TrustSettings,
    data: &[u8],
    cms: &[u8],
    now: i64,
    proofs: &[ProofOfExistence],
    required_level: Option<u8>,
) -> Report {
    let der = pem_to_der(cms);
    let parsed = match crate::crypto::parse(&der) {
        Ok(p) => p,
        Err(e) => {
            let time = ValidationTime::at(now);
            let f = Failure {
                signer: String::new(),
                signing_time: None,
                time: &time,
            };
            let r = f.report("FORMAT_FAILURE", e.to_string());
            return Report {
                indication: r.indication,
                sub_indication: r.sub_indication.clone(),
                signers: vec![r],
            };
        }
    };
    let mut signers = Vec::new();
    for s in &parsed.signers {
        let poe = proofs
            .iter()
            .filter(|p| p.signature_value == s.signature)
            .map(|p| p.at)
            .min();
        let time = ValidationTime { now, poe };
        let mut f = Failure {
            signer: String::new(),
            signing_time: s.signing_time,
            time: &time,
        };
        let Some(cert) = &s.cert_der else {
            signers.push(f.report(
                "NO_SIGNING_CERTIFICATE_FOUND",
                "the signer certificate is not in the signature".into(),
            ));
            continue;
        };
        f.signer = super::material::certificate(cert)
            .map(|c| crate::crypto::certs::name_string(c.subject_name()))
            .unwrap_or_default();
        if let Err(d) = check_signer(s, Content::Data(data), cert) {
            let (code, msg) = match d {
                SignerDefect::Format(m) => ("FORMAT_FAILURE", m),
                SignerDefect::HashFailure => (
                    "HASH_FAILURE",
                    "the message digest does not match the data".to_string(),
                ),
                SignerDefect::SigCrypto(m) => ("SIG_CRYPTO_FAILURE", m),
                SignerDefect::WeakAlgorithm(m) => ("WEAK_ALGORITHM", m),
            };
            signers.push(f.report(code, msg));
            continue;
        }
        let others: Vec<Vec<u8>> = parsed
            .certs
            .iter()
            .filter(|c| *c != cert)
            .cloned()
            .collect();
        match validate_chain_at(trust, cert, &others, &parsed.crls, time, required_level) {
            Ok(ok) => signers.push(SignerReport {
                indication: Indication::TotalPassed,
                sub_indication: String::new(),
                message: "valid".into(),
                signer: ok.subject.clone(),
                level: ok.level,
                signing_time: s.signing_time,
                chain: ok.chain_subjects.clone(),
                policy_oid: s.policy_oid.clone(),
                validation_time: time.judged_at(),
                proof_of_existence: time.poe,
            }),
            Err(r) => signers.push(f.report(&r.code, r.message)),
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
/// How many SignerInfos `cms` (DER or PEM) holds, read without any cryptographic work; `None`
/// when it does not parse (validation then reports the format failure).
pub fn signer_count(cms: &[u8]) -> Option<usize> {
    crate::crypto::parse(&pem_to_der(cms))
        .ok()
        .map(|p| p.signers.len())
}

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
