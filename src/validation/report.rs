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
    /// XAdES: the `Id` of the signed element (the bordereau).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// XAdES: the claimed role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_role: Option<String>,
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
            reference: None,
            claimed_role: None,
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
    validate_cms_as(trust, data, cms, now, proofs, required_level, false)
}

/// [`validate_cms`] for the CMS of a PAdES signature over the bytes its `/ByteRange` covers
/// (signing-time forbidden: the time is the dictionary's /M).
pub fn validate_pades_cms(
    trust: &TrustSettings,
    covered: &[u8],
    cms: &[u8],
    now: i64,
    proofs: &[ProofOfExistence],
    required_level: Option<u8>,
) -> Report {
    validate_cms_as(trust, covered, cms, now, proofs, required_level, true)
}

/// [`validate_cms`] for CAdES (`pades` false: signing-time required) or for the CMS of a PAdES
/// signature (`pades` true: signing-time forbidden, the time is the dictionary's /M).
fn validate_cms_as(
    trust: &TrustSettings,
    data: &[u8],
    cms: &[u8],
    now: i64,
    proofs: &[ProofOfExistence],
    required_level: Option<u8>,
    pades: bool,
) -> Report {
    let der = pem_to_der(cms);
    let parsed = match crate::crypto::parse(&der) {
        Ok(mut p) if pades => {
            use crate::crypto::cades::AttributeCheck;
            for signer in &mut p.signers {
                let mut problems: Vec<String> = match &signer.attributes {
                    AttributeCheck::Ok => Vec::new(),
                    AttributeCheck::Format(f) => f.split("; ").map(str::to_owned).collect(),
                };
                problems.retain(|x| x != "missing signing-time");
                if signer.signing_time.is_some() {
                    problems.push("a PAdES signature must not carry signing-time".into());
                }
                signer.attributes = if problems.is_empty() {
                    AttributeCheck::Ok
                } else {
                    AttributeCheck::Format(problems.join("; "))
                };
            }
            p
        }
        Ok(p) => p,
        Err(e) => return format_failure(now, e.to_string()),
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
                reference: None,
                claimed_role: None,
            }),
            Err(r) => signers.push(f.report(&r.code, r.message)),
        }
    }
    Report::of(signers)
}

/// Validates every signature inside a PDF (PAdES): each CMS over the bytes its `/ByteRange`
/// covers, by the same validator as a detached CAdES signature; each report names its field,
/// its revision and whether it covers that revision whole; one whose revision later updates
/// changed beyond signing additions fails `MODIFIED_AFTER_SIGNING`, the change named. A PDF
/// without signatures, or whose signatures cannot be read, is a FORMAT_FAILURE.
pub fn validate_pades(
    trust: &TrustSettings,
    data: &[u8],
    now: i64,
    proofs: &[ProofOfExistence],
    required_level: Option<u8>,
) -> Report {
    let found = match crate::formats::pades::signatures(data) {
        Ok(f) if f.is_empty() => Err("the PDF holds no signature".to_string()),
        Ok(f) => Ok(f),
        Err(e) => Err(e.to_string()),
    };
    let found = match found {
        Ok(f) => f,
        Err(m) => return format_failure(now, m),
    };
    let mut signers = Vec::new();
    for f in found {
        let r = validate_cms_as(trust, &f.covered, &f.cms, now, proofs, required_level, true);
        let revision = match f.revision {
            Some(n) => format!("revision {n} of {}", f.revisions),
            None => "no revision end".to_string(),
        };
        let coverage = if !f.covers_whole_revision {
            "does NOT cover a whole revision".to_string()
        } else if f.later_bytes == 0 {
            "covers the whole document".to_string()
        } else {
            format!(
                "covers its whole revision; {} bytes of later incremental updates",
                f.later_bytes
            )
        };
        for mut s in r.signers {
            s.reference = Some(f.field.clone());
            s.message = format!("{}: {} ({revision}, {coverage})", f.field, s.message);
            if s.signing_time.is_none() {
                s.signing_time = f.time;
            }
            if !f.covers_whole_revision && s.indication == Indication::TotalPassed {
                s.indication = Indication::Indeterminate;
                s.sub_indication = "FORMAT_FAILURE".into();
            }
            if let Some(change) = &f.modified_after {
                s.message = format!("{}; modified after signing: {change}", s.message);
                if s.indication != Indication::TotalFailed {
                    s.indication = Indication::TotalFailed;
                    s.sub_indication = "MODIFIED_AFTER_SIGNING".into();
                }
            }
            signers.push(s);
        }
    }
    Report::of(signers)
}

/// Validates every enveloped XAdES signature of a PES flow, one report per signature (its
/// `reference` names the bordereau): the references and digests, the value, the
/// SigningCertificate, a UTC SigningTime and a claimed role (see
/// [`crate::formats::xades_pes::check_signatures`]), the policy hash against `pes` when it is
/// configured, then the certificate path as for CMS signatures.
pub fn validate_xades(
    trust: &TrustSettings,
    pes: &crate::formats::xades_pes::PesSettings,
    data: &[u8],
    now: i64,
    proofs: &[ProofOfExistence],
    required_level: Option<u8>,
) -> Report {
    let checks = match crate::formats::xades_pes::check_signatures(data) {
        Ok(c) if c.is_empty() => Err("the flow holds no signature".to_string()),
        Ok(c) => Ok(c),
        Err(e) => Err(e.to_string()),
    };
    let checks = match checks {
        Ok(c) => c,
        Err(m) => return format_failure(now, m),
    };
    let mut signers = Vec::new();
    for c in checks {
        let poe = proofs
            .iter()
            .filter(|p| p.signature_value == c.signature_value)
            .map(|p| p.at)
            .min();
        let time = ValidationTime { now, poe };
        let signing_time = c
            .signing_time
            .as_deref()
            .and_then(|t| crate::pki::time::parse_rfc3339(t.trim()).ok());
        let mut f = Failure {
            signer: String::new(),
            signing_time,
            time: &time,
        };
        if let Some(cert) = &c.cert_der {
            f.signer = super::material::certificate(cert)
                .map(|x| crate::crypto::certs::name_string(x.subject_name()))
                .unwrap_or_default();
        }
        let with_xades = |mut r: SignerReport| {
            r.reference = Some(c.reference.clone());
            r.claimed_role = c.claimed_role.clone();
            r.policy_oid = c.policy_oid.clone();
            r
        };
        if let Some((code, msg)) = &c.defect {
            signers.push(with_xades(f.report(code, msg.clone())));
            continue;
        }
        let Some(cert) = &c.cert_der else {
            signers.push(with_xades(
                f.report("NO_SIGNING_CERTIFICATE_FOUND", "no certificate".into()),
            ));
            continue;
        };
        if !pes.policy_hash.is_empty() && c.policy_hash.as_deref() != Some(pes.policy_hash.as_str())
        {
            signers.push(with_xades(f.report(
                "POLICY_PROCESSING_ERROR",
                format!(
                    "the signature policy hash of '{}' does not match the configured one",
                    c.reference
                ),
            )));
            continue;
        }
        match validate_chain_at(trust, cert, &[], &[], time, required_level) {
            Ok(ok) => signers.push(with_xades(SignerReport {
                indication: Indication::TotalPassed,
                sub_indication: String::new(),
                message: "valid".into(),
                signer: ok.subject.clone(),
                level: ok.level,
                signing_time,
                chain: ok.chain_subjects.clone(),
                policy_oid: None,
                validation_time: time.judged_at(),
                proof_of_existence: time.poe,
                reference: None,
                claimed_role: None,
            })),
            Err(r) => signers.push(with_xades(f.report(&r.code, r.message))),
        }
    }
    Report::of(signers)
}

/// The report of data whose signatures cannot be read at all (FORMAT_FAILURE), judged at `now`.
fn format_failure(now: i64, message: String) -> Report {
    let time = ValidationTime::at(now);
    let r = Failure {
        signer: String::new(),
        signing_time: None,
        time: &time,
    }
    .report("FORMAT_FAILURE", message);
    Report {
        indication: r.indication,
        sub_indication: r.sub_indication.clone(),
        signers: vec![r],
    }
}

impl Report {
    /// The report of several signatures: the worst indication among them (TOTAL_FAILED over
    /// INDETERMINATE over TOTAL_PASSED) with its sub-indication; none at all is a
    /// FORMAT_FAILURE.
    fn of(signers: Vec<SignerReport>) -> Report {
        let (indication, sub_indication) = signers
            .iter()
            .max_by_key(|r| r.indication)
            .map(|r| (r.indication, r.sub_indication.clone()))
            .unwrap_or((Indication::TotalFailed, "FORMAT_FAILURE".into()));
        Report {
            indication,
            sub_indication,
            signers,
        }
    }
}

/// How many SignerInfos `cms` (DER or PEM) holds, read without any cryptographic work; `None`
/// when it does not parse (validation then reports the format failure).
pub fn signer_count(cms: &[u8]) -> Option<usize> {
    crate::crypto::parse(&pem_to_der(cms))
        .ok()
        .map(|p| p.signers.len())
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
