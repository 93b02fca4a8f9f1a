//! Why a certificate path is refused: one variant per reason, each with a human message
//! ([`std::fmt::Display`]) and a stable code ([`Refusal::code`]).

use std::fmt;

/// Which certificate of the path a refusal is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPos {
    /// 0 = the leaf, 1 = its issuer, ... (OpenSSL's error depth).
    pub depth: u32,
    /// Subject distinguished name, e.g. `C=FR, O=Commune de Testville, CN=TEST Officer Name`.
    pub subject: String,
}

impl fmt::Display for CertPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.depth == 0 {
            write!(f, "leaf certificate [{}]", self.subject)
        } else {
            write!(f, "certificate at depth {} [{}]", self.depth, self.subject)
        }
    }
}

/// ETSI EN 319 102-1 main indication a refusal leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indication {
    /// The certificate is definitely not acceptable (bad signature, revoked, outside validity).
    TotalFailed,
    /// The certificate could not be shown acceptable (no path, constraints, revocation unknown).
    Indeterminate,
}

impl Indication {
    pub fn as_str(self) -> &'static str {
        match self {
            Indication::TotalFailed => "TOTAL_FAILED",
            Indication::Indeterminate => "INDETERMINATE",
        }
    }
}

/// A reason to refuse a certificate path. `code()` is stable and usable as an ETSI-style
/// sub-indication; the `Display` message is for humans and may change.
///
/// # Precedence
///
/// Path validation collects *every* defect it finds (OpenSSL's errors for the whole path plus
/// paraph's own checks) and reports the first by this order (then the one nearest the leaf, as
/// OpenSSL itself would stop), which is the declaration order of the variants:
///
/// 1. integrity and anchoring: `SIG_CRYPTO_FAILURE`, `CHAIN_NOT_TRUSTED` — without them nothing
///    else said about the path can be relied on;
/// 2. static structure of the certificates: `MALFORMED_CERTIFICATE`,
///    `UNKNOWN_CRITICAL_EXTENSION`, `CA_NOT_CA`, `CA_KEY_USAGE`, `PATH_LENGTH`,
///    `NAME_CONSTRAINTS`, `WEAK_ALGORITHM` — defects that hold at any time;
/// 3. definitive status: `REVOKED`, then the validity period `EXPIRED`, `NOT_YET_VALID`;
/// 4. fitness for signing: `KEY_USAGE` (nonRepudiation), `NO_POLICY`, `LEVEL_TOO_LOW`;
/// 5. revocation information problems: `CRL_INVALID`, `CRL_EXPIRED`, `CRL_NOT_YET_VALID`,
///    `CRL_NOT_FOUND` — an unknown revocation status is the least informative answer, so any
///    definite defect above is reported first;
/// 6. `INVALID_OPTIONS` (never mixed with others: options are checked first) and `OTHER`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// A certificate's signature does not verify with its issuer's public key.
    #[error("the signature on the {cert} does not verify with its issuer's key ({detail})")]
    SigCryptoFailure { cert: CertPos, detail: String },
    /// No path to a configured trust anchor.
    #[error("no path from the {cert} to a configured trust anchor: {detail}")]
    ChainNotTrusted { cert: CertPos, detail: String },
    /// Not a well-formed certificate, or breaks the RFC 5280 profile (strict mode).
    #[error("the {cert} is malformed or breaks the RFC 5280 profile: {detail}")]
    Malformed { cert: CertPos, detail: String },
    /// A critical extension the validator does not process.
    #[error("the {cert} has a critical extension this validator does not process: {detail}")]
    UnknownCriticalExtension { cert: CertPos, detail: String },
    /// Used as an issuer but basicConstraints cA is absent, false (or not critical under RGS).
    #[error("the {cert} issues certificates but is not a CA: {detail}")]
    CaNotCa { cert: CertPos, detail: String },
    /// A CA whose keyUsage lacks keyCertSign (or, under RGS, cRLSign).
    #[error("the {cert} is a CA whose keyUsage does not allow its use: {detail}")]
    CaKeyUsage { cert: CertPos, detail: String },
    /// A basicConstraints pathLenConstraint is exceeded.
    #[error("path length constraint exceeded at the {cert}: {detail}")]
    PathLength { cert: CertPos, detail: String },
    /// A name-constraints violation.
    #[error("name constraints violated by the {cert}: {detail}")]
    NameConstraints { cert: CertPos, detail: String },
    /// A key or signature algorithm below the RGS requirements (RSA < 2048, SHA-1, ...).
    #[error("weak or disallowed algorithm in the {cert}: {detail}")]
    WeakAlgorithm { cert: CertPos, detail: String },
    /// Listed in a CRL (any reason, certificateHold included).
    #[error("the {cert} is revoked: {detail}")]
    Revoked { cert: CertPos, detail: String },
    /// notAfter is before the validation time.
    #[error("the {cert} has expired: notAfter {not_after} is before the validation time {at}")]
    Expired {
        cert: CertPos,
        not_after: String,
        at: String,
    },
    /// notBefore is after the validation time.
    #[error(
        "the {cert} is not yet valid: notBefore {not_before} is after the validation time {at}"
    )]
    NotYetValid {
        cert: CertPos,
        not_before: String,
        at: String,
    },
    /// The leaf's keyUsage does not allow signatures (nonRepudiation required).
    #[error("the {cert} is not fit for signatures: {detail}")]
    KeyUsage { cert: CertPos, detail: String },
    /// No acceptable certificate policy (explicit policy failure, or leaf policy not allowlisted).
    #[error("no acceptable certificate policy: {detail}")]
    NoPolicy { detail: String },
    /// The leaf's RGS level is below the required one.
    #[error("RGS level {level} (policy {policy}) is below the required level {required}")]
    LevelTooLow {
        level: u8,
        required: u8,
        policy: String,
    },
    /// A CRL exists but cannot be used (bad signature, issuer mismatch, issuer without cRLSign).
    #[error("the CRL covering the {cert} is not usable: {detail}")]
    CrlInvalid { cert: CertPos, detail: String },
    /// The CRL's nextUpdate is before the validation time: status unknown, never a pass.
    #[error("the CRL covering the {cert} has expired: {detail}")]
    CrlExpired { cert: CertPos, detail: String },
    /// The CRL's thisUpdate is after the validation time.
    #[error("the CRL covering the {cert} is not yet valid: {detail}")]
    CrlNotYetValid { cert: CertPos, detail: String },
    /// Revocation checking is on and no CRL covers this certificate.
    #[error("revocation status of the {cert} is unknown: {detail}")]
    CrlNotFound { cert: CertPos, detail: String },
    /// The validation options themselves are wrong (bad OID, level out of 1..=3, ...).
    #[error("invalid validation options: {0}")]
    InvalidOptions(String),
    /// Anything else OpenSSL reports (its error text is kept).
    #[error("certificate path refused: {detail}")]
    Other { detail: String },
}

impl Refusal {
    /// Stable code, usable as an ETSI-style sub-indication.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::SigCryptoFailure { .. } => "SIG_CRYPTO_FAILURE",
            Refusal::ChainNotTrusted { .. } => "CHAIN_NOT_TRUSTED",
            Refusal::Malformed { .. } => "MALFORMED_CERTIFICATE",
            Refusal::UnknownCriticalExtension { .. } => "UNKNOWN_CRITICAL_EXTENSION",
            Refusal::CaNotCa { .. } => "CA_NOT_CA",
            Refusal::CaKeyUsage { .. } => "CA_KEY_USAGE",
            Refusal::PathLength { .. } => "PATH_LENGTH",
            Refusal::NameConstraints { .. } => "NAME_CONSTRAINTS",
            Refusal::WeakAlgorithm { .. } => "WEAK_ALGORITHM",
            Refusal::Revoked { .. } => "REVOKED",
            Refusal::Expired { .. } => "EXPIRED",
            Refusal::NotYetValid { .. } => "NOT_YET_VALID",
            Refusal::KeyUsage { .. } => "KEY_USAGE",
            Refusal::NoPolicy { .. } => "NO_POLICY",
            Refusal::LevelTooLow { .. } => "LEVEL_TOO_LOW",
            Refusal::CrlInvalid { .. } => "CRL_INVALID",
            Refusal::CrlExpired { .. } => "CRL_EXPIRED",
            Refusal::CrlNotYetValid { .. } => "CRL_NOT_YET_VALID",
            Refusal::CrlNotFound { .. } => "CRL_NOT_FOUND",
            Refusal::InvalidOptions(_) => "INVALID_OPTIONS",
            Refusal::Other { .. } => "OTHER",
        }
    }

    /// The ETSI main indication: `TOTAL_FAILED` for a bad certificate signature, revocation and
    /// validity-period failures (as EN 319 102-1 lists them), `INDETERMINATE` for the rest
    /// (chain and policy constraints, crypto constraints, revocation status unknown).
    pub fn indication(&self) -> Indication {
        match self {
            Refusal::SigCryptoFailure { .. }
            | Refusal::Revoked { .. }
            | Refusal::Expired { .. }
            | Refusal::NotYetValid { .. } => Indication::TotalFailed,
            _ => Indication::Indeterminate,
        }
    }

    /// The certificate the refusal is about, when it is about one.
    pub fn cert(&self) -> Option<&CertPos> {
        match self {
            Refusal::SigCryptoFailure { cert, .. }
            | Refusal::ChainNotTrusted { cert, .. }
            | Refusal::Malformed { cert, .. }
            | Refusal::UnknownCriticalExtension { cert, .. }
            | Refusal::CaNotCa { cert, .. }
            | Refusal::CaKeyUsage { cert, .. }
            | Refusal::PathLength { cert, .. }
            | Refusal::NameConstraints { cert, .. }
            | Refusal::WeakAlgorithm { cert, .. }
            | Refusal::Revoked { cert, .. }
            | Refusal::Expired { cert, .. }
            | Refusal::NotYetValid { cert, .. }
            | Refusal::KeyUsage { cert, .. }
            | Refusal::CrlInvalid { cert, .. }
            | Refusal::CrlExpired { cert, .. }
            | Refusal::CrlNotYetValid { cert, .. }
            | Refusal::CrlNotFound { cert, .. } => Some(cert),
            Refusal::NoPolicy { .. }
            | Refusal::LevelTooLow { .. }
            | Refusal::InvalidOptions(_)
            | Refusal::Other { .. } => None,
        }
    }

    /// Rank in the precedence order (lower is reported first); see the type's documentation.
    pub(crate) fn rank(&self) -> u8 {
        match self {
            Refusal::SigCryptoFailure { .. } => 0,
            Refusal::ChainNotTrusted { .. } => 1,
            Refusal::Malformed { .. } => 2,
            Refusal::UnknownCriticalExtension { .. } => 3,
            Refusal::CaNotCa { .. } => 4,
            Refusal::CaKeyUsage { .. } => 5,
            Refusal::PathLength { .. } => 6,
            Refusal::NameConstraints { .. } => 7,
            Refusal::WeakAlgorithm { .. } => 8,
            Refusal::Revoked { .. } => 9,
            Refusal::Expired { .. } => 10,
            Refusal::NotYetValid { .. } => 11,
            Refusal::KeyUsage { .. } => 12,
            Refusal::NoPolicy { .. } => 13,
            Refusal::LevelTooLow { .. } => 14,
            Refusal::CrlInvalid { .. } => 15,
            Refusal::CrlExpired { .. } => 16,
            Refusal::CrlNotYetValid { .. } => 17,
            Refusal::CrlNotFound { .. } => 18,
            Refusal::InvalidOptions(_) => 19,
            Refusal::Other { .. } => 20,
        }
    }
}

/// Sorts refusals by precedence (rank, then nearest the leaf first), dropping repeats of the
/// same code for the same certificate (the first one found is kept).
pub(crate) fn sort_by_precedence(mut all: Vec<Refusal>) -> Vec<Refusal> {
    let mut seen: Vec<(&'static str, Option<u32>)> = Vec::new();
    all.retain(|r| {
        let key = (r.code(), r.cert().map(|c| c.depth));
        if seen.contains(&key) {
            false
        } else {
            seen.push(key);
            true
        }
    });
    // Stable sort: among equal keys, OpenSSL's findings (collected first) stay first.
    all.sort_by_key(|r| (r.rank(), r.cert().map_or(0, |c| c.depth)));
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(depth: u32) -> CertPos {
        CertPos {
            depth,
            subject: format!("CN=c{depth}"),
        }
    }

    #[test]
    fn precedence_orders_by_rank_then_depth() {
        let sorted = sort_by_precedence(vec![
            Refusal::CrlNotFound {
                cert: pos(0),
                detail: String::new(),
            },
            Refusal::Expired {
                cert: pos(0),
                not_after: String::new(),
                at: String::new(),
            },
            Refusal::Expired {
                cert: pos(1),
                not_after: String::new(),
                at: String::new(),
            },
            Refusal::Revoked {
                cert: pos(0),
                detail: String::new(),
            },
            Refusal::Revoked {
                cert: pos(0),
                detail: "dup".into(),
            },
        ]);
        let got: Vec<_> = sorted
            .iter()
            .map(|r| (r.code(), r.cert().map(|c| c.depth)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("REVOKED", Some(0)),
                ("EXPIRED", Some(0)),
                ("EXPIRED", Some(1)),
                ("CRL_NOT_FOUND", Some(0)),
            ]
        );
    }
}
