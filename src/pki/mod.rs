//! Certificate path validation: RFC 5280 section 6 at an explicit time with CRLs, plus the RGS
//! signer profile. Every failure is a distinct, named [`Refusal`].
//!
//! - Parsing ([`load_certs`], [`load_crls`]) accepts PEM (one or many blocks) or DER; garbage is
//!   a [`PkiError`], never a panic.
//! - [`verify`] builds and checks the path with OpenSSL (`X509_verify_cert`: signatures, validity
//!   at [`VerifyOptions::at`], basic constraints and path length, CA key usage, name constraints,
//!   unknown critical extensions, policy processing with the initial policy set and the three
//!   initial flags, CRLs for every certificate of the path with RFC 5280's extended CRL
//!   processing and delta CRLs), then adds what OpenSSL does not check under the
//!   [`Profile::Rgs`] profile: leaf keyUsage nonRepudiation, RGS algorithms (RSA >= 2048, ECDSA
//!   P-256/384/521, SHA-256 or stronger everywhere, CRLs included), CA cRLSign, and the RGS
//!   level: the highest allowlisted policy among those that survive policy processing (the
//!   valid policy tree, not what the leaf asserts), with the required level.
//!   [`Profile::Rfc5280`] is section 6 alone (plus X509_STRICT profile checks, see
//!   [`VerifyOptions::x509_strict`]): no nonRepudiation, algorithm or level checks, unless a
//!   required level is asked for.
//! - Trust anchors are self-signed roots (no partial chains). With revocation on, OpenSSL 3.0's
//!   CRL_CHECK_ALL also looks the self-signed anchor up in its own CRL (ARL) — the same CRL its
//!   first subordinate CA needs, so it asks for nothing more in practice.
//! - OpenSSL's verification runs with a callback that records every error and continues: all
//!   the defects of a path are known, [`verify_all`] lists them and [`verify`] reports the first
//!   by the documented precedence of [`Refusal`]. Any recorded error is a refusal.
//! - Success is a [`ValidatedChain`], which only [`verify`] can construct.
//! - [`ValidationCache`] avoids re-validating identical chains; it only stores successes, keyed
//!   on every input including the CRLs and the exact position of the validation time among the
//!   certificates' and CRLs' dates, so it never turns a failure into a pass.
//! - The validation time is always an input: nothing in this module reads the clock, except the
//!   command-line entry point [`cli_verify`] when `--at` is absent.
//!
//! The one `unsafe` FFI module of the crate is `pki::ffi` (private): the OpenSSL functions
//! rust-openssl does not bind (initial policy set, CRLs lent to the verification context, the
//! verify callback, the valid policy tree).

mod cache;
mod cli;
mod ffi;
pub mod kind;
mod refusal;
mod rgs;
pub mod time;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use openssl::x509::{X509Crl, X509};

pub use cache::{CacheStats, ValidationCache};
pub use cli::{cli_verify, run_verify, CliOutcome, PkiVerifyArgs};
pub use refusal::{CertPos, Indication, Refusal};
pub use time::{format_rfc3339, parse_rfc3339};
pub use validate::{verify, verify_all};

/// Input and parsing errors (not validation outcomes: those are [`Refusal`]s).
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no certificate found (expected PEM \"CERTIFICATE\" blocks or DER)")]
    NoCertificate,
    #[error("no CRL found (expected PEM \"X509 CRL\" blocks or DER)")]
    NoCrl,
    #[error("invalid certificate: {0}")]
    BadCertificate(String),
    #[error("invalid CRL: {0}")]
    BadCrl(String),
    /// A file of another kind (a PKCS#12 file where a certificate is expected, …).
    #[error("{0}")]
    WrongKind(String),
}

/// A parsed CRL (cheap to clone), with its DER encoding.
#[derive(Clone)]
pub struct Crl {
    der: Arc<[u8]>,
    crl: Arc<X509Crl>,
}

impl Crl {
    /// Parses one DER-encoded CRL.
    pub fn from_der(der: &[u8]) -> Result<Crl, PkiError> {
        let crl = X509Crl::from_der(der).map_err(|e| PkiError::BadCrl(ossl_reason(&e)))?;
        let der: Arc<[u8]> = crl
            .to_der()
            .map_err(|e| PkiError::BadCrl(ossl_reason(&e)))?
            .into();
        x509_parser::parse_x509_crl(&der)
            .map_err(|e| PkiError::BadCrl(format!("not a well-formed CRL: {e}")))?;
        Ok(Crl {
            der,
            crl: Arc::new(crl),
        })
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The OpenSSL object.
    pub fn as_openssl(&self) -> &X509Crl {
        &self.crl
    }
}

impl fmt::Debug for Crl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let issuer = x509_parser::parse_x509_crl(&self.der)
            .map(|(_, c)| c.issuer().to_string())
            .unwrap_or_default();
        f.debug_struct("Crl")
            .field("issuer", &issuer)
            .field("der_len", &self.der.len())
            .finish()
    }
}

/// Which checks [`verify`] applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// RFC 5280 section 6 path validation only (policy processing as configured).
    #[value(name = "rfc5280")]
    Rfc5280,
    /// RFC 5280 plus the RGS signer profile (the default): explicit policy from the level
    /// allowlist, leaf nonRepudiation, RGS algorithms, CA cRLSign, required level.
    #[default]
    #[value(name = "rgs")]
    Rgs,
}

/// Inputs of a path validation. Build with [`VerifyOptions::new`] and set fields.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Validation time, Unix seconds (always explicit).
    pub at: i64,
    pub profile: Profile,
    /// Trusted roots (the path must end at one of them).
    pub trust_anchors: Vec<X509>,
    /// Intermediate certificates that may be used to build the path (not trusted).
    pub untrusted: Vec<X509>,
    /// CRLs to check revocation with (never fetched).
    pub crls: Vec<Crl>,
    /// RFC 5280 user-initial-policy-set (dotted OIDs). Empty = anyPolicy. Under [`Profile::Rgs`]
    /// an empty set means the OIDs of [`VerifyOptions::policy_levels`].
    pub initial_policy_set: Vec<String>,
    /// RFC 5280 initial-explicit-policy (always on under [`Profile::Rgs`]).
    pub explicit_policy: bool,
    /// RFC 5280 initial-policy-mapping-inhibit.
    pub inhibit_policy_mapping: bool,
    /// RFC 5280 initial-any-policy-inhibit.
    pub inhibit_any_policy: bool,
    /// Check every certificate of the path against the CRLs (default true): a certificate no
    /// usable CRL covers is a failure ([`Refusal::CrlNotFound`]); so is a CRL past its
    /// nextUpdate ([`Refusal::CrlExpired`]).
    pub check_revocation: bool,
    /// OpenSSL's X509_STRICT checks (RFC 5280 profile conformance: AKI/SKI, keyUsage on CAs,
    /// critical basicConstraints on CAs under [`Profile::Rgs`] only, ...). Default true.
    pub x509_strict: bool,
    /// Policy OID -> RGS level (1 = `*`, 2 = `**`, 3 = `***`): the allowlist.
    pub policy_levels: BTreeMap<String, u8>,
    /// Minimum RGS level of the leaf, if any.
    pub required_level: Option<u8>,
}

impl VerifyOptions {
    /// Options with the defaults: revocation checked, strict, no anchors, no allowlist.
    pub fn new(at: i64, profile: Profile) -> Self {
        VerifyOptions {
            at,
            profile,
            trust_anchors: Vec::new(),
            untrusted: Vec::new(),
            crls: Vec::new(),
            initial_policy_set: Vec::new(),
            explicit_policy: false,
            inhibit_policy_mapping: false,
            inhibit_any_policy: false,
            check_revocation: true,
            x509_strict: true,
            policy_levels: BTreeMap::new(),
            required_level: None,
        }
    }
}

/// A certificate path that passed [`verify`]. Only `verify` constructs it.
#[derive(Debug, Clone)]
pub struct ValidatedChain {
    chain: Vec<X509>,
    profile: Profile,
    at: i64,
    level: Option<u8>,
    policy: Option<String>,
    subject: String,
    issuer: String,
    serial_hex: String,
    fingerprint: [u8; 32],
    not_before: i64,
    not_after: i64,
}

impl ValidatedChain {
    /// The path, leaf first, trust anchor last.
    pub fn chain(&self) -> &[X509] {
        &self.chain
    }
    /// The leaf certificate.
    pub fn leaf(&self) -> &X509 {
        &self.chain[0]
    }
    pub fn profile(&self) -> Profile {
        self.profile
    }
    /// The validation time it was checked at (Unix seconds).
    pub fn validated_at(&self) -> i64 {
        self.at
    }
    /// RGS level of the leaf (always set under [`Profile::Rgs`]).
    pub fn level(&self) -> Option<u8> {
        self.level
    }
    /// The allowlisted leaf policy OID the level comes from.
    pub fn policy(&self) -> Option<&str> {
        self.policy.as_deref()
    }
    /// Leaf subject DN.
    pub fn subject(&self) -> &str {
        &self.subject
    }
    /// Leaf issuer DN.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }
    /// Leaf serial number, lowercase hex of its DER content bytes.
    pub fn serial_hex(&self) -> &str {
        &self.serial_hex
    }
    /// SHA-256 of the leaf's DER.
    pub fn fingerprint_sha256(&self) -> &[u8; 32] {
        &self.fingerprint
    }
    pub fn fingerprint_sha256_hex(&self) -> String {
        hex::encode(self.fingerprint)
    }
    /// Leaf notBefore (Unix seconds).
    pub fn not_before(&self) -> i64 {
        self.not_before
    }
    /// Leaf notAfter (Unix seconds).
    pub fn not_after(&self) -> i64 {
        self.not_after
    }
}

/// The most specific reason OpenSSL gives, without its error-queue boilerplate.
pub(crate) use crate::crypto::openssl_reason as ossl_reason;

/// Iterates over the PEM blocks of `text` with one of `labels`, yielding each whole block.
fn pem_blocks<'a>(text: &'a str, labels: &'a [&'a str]) -> impl Iterator<Item = &'a str> + 'a {
    let mut rest = text;
    std::iter::from_fn(move || loop {
        let start = rest.find("-----BEGIN ")?;
        let after = &rest[start + 11..];
        let label_end = after.find("-----")?;
        let label = &after[..label_end];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = rest[start..].find(&end_marker) else {
            // Unterminated block: hand it over whole so the parser reports it.
            let block = &rest[start..];
            rest = "";
            return labels.contains(&label).then_some(block);
        };
        let stop = start + end + end_marker.len();
        let block = &rest[start..stop];
        rest = &rest[stop..];
        if labels.contains(&label) {
            return Some(block);
        }
    })
}

fn looks_like_pem(bytes: &[u8]) -> bool {
    bytes.windows(11).any(|w| w == b"-----BEGIN ")
}

/// Parses certificates: PEM with one or more `CERTIFICATE` blocks (other blocks are ignored),
/// or one or more concatenated DER certificates.
/// Dotted OIDs of a DER certificate's certificatePolicies (empty if it has none or does not
/// parse: a certificate that does not parse maps to no RGS level).
pub fn policy_oids(der: &[u8]) -> Vec<String> {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, c)) => rgs::policies(&c),
        Err(_) => Vec::new(),
    }
}

pub fn load_certs(bytes: &[u8]) -> Result<Vec<X509>, PkiError> {
    parse_certs(bytes).map_err(
        |e| match kind::wrong_kind(bytes, kind::FileKind::Certificate) {
            Some(msg) => PkiError::WrongKind(msg),
            None => e,
        },
    )
}

fn parse_certs(bytes: &[u8]) -> Result<Vec<X509>, PkiError> {
    let mut out = Vec::new();
    if looks_like_pem(bytes) {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| PkiError::BadCertificate("PEM input is not valid UTF-8".into()))?;
        for block in pem_blocks(text, &["CERTIFICATE", "X509 CERTIFICATE"]) {
            let cert = X509::from_pem(block.as_bytes())
                .map_err(|e| PkiError::BadCertificate(ossl_reason(&e)))?;
            out.push(checked_cert(cert)?);
        }
    } else {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (next, parsed) = x509_parser::parse_x509_certificate(rest)
                .map_err(|e| PkiError::BadCertificate(format!("not a DER certificate: {e}")))?;
            let cert = X509::from_der(parsed.as_raw())
                .map_err(|e| PkiError::BadCertificate(ossl_reason(&e)))?;
            out.push(cert);
            rest = next;
        }
    }
    if out.is_empty() {
        return Err(PkiError::NoCertificate);
    }
    Ok(out)
}

/// Checks that x509-parser (used for the extension checks) reads what OpenSSL read.
fn checked_cert(cert: X509) -> Result<X509, PkiError> {
    let der = cert
        .to_der()
        .map_err(|e| PkiError::BadCertificate(ossl_reason(&e)))?;
    x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::BadCertificate(format!("not a well-formed certificate: {e}")))?;
    Ok(cert)
}

/// Parses CRLs: PEM with one or more `X509 CRL` blocks, or one or more concatenated DER CRLs.
pub fn load_crls(bytes: &[u8]) -> Result<Vec<Crl>, PkiError> {
    parse_crls(bytes).map_err(|e| match kind::wrong_kind(bytes, kind::FileKind::Crl) {
        Some(msg) => PkiError::WrongKind(msg),
        None => e,
    })
}

fn parse_crls(bytes: &[u8]) -> Result<Vec<Crl>, PkiError> {
    let mut out = Vec::new();
    if looks_like_pem(bytes) {
        let text = std::str::from_utf8(bytes)
            .map_err(|_| PkiError::BadCrl("PEM input is not valid UTF-8".into()))?;
        for block in pem_blocks(text, &["X509 CRL"]) {
            let crl = X509Crl::from_pem(block.as_bytes())
                .map_err(|e| PkiError::BadCrl(ossl_reason(&e)))?;
            let der = crl
                .to_der()
                .map_err(|e| PkiError::BadCrl(ossl_reason(&e)))?;
            out.push(Crl::from_der(&der)?);
        }
    } else {
        let mut rest = bytes;
        while !rest.is_empty() {
            let (next, parsed) = x509_parser::parse_x509_crl(rest)
                .map_err(|e| PkiError::BadCrl(format!("not a DER CRL: {e}")))?;
            out.push(Crl::from_der(parsed.as_raw())?);
            rest = next;
        }
    }
    if out.is_empty() {
        return Err(PkiError::NoCrl);
    }
    Ok(out)
}

/// [`load_certs`] on a file.
pub fn load_certs_file(path: impl AsRef<Path>) -> Result<Vec<X509>, PkiError> {
    load_certs(&read(path.as_ref())?).map_err(|e| in_file(e, path.as_ref()))
}

/// Names the file in a wrong-kind error.
fn in_file(e: PkiError, path: &Path) -> PkiError {
    match e {
        PkiError::WrongKind(msg) => PkiError::WrongKind(format!("{}: {msg}", path.display())),
        e => e,
    }
}

/// [`load_crls`] on a file.
pub fn load_crls_file(path: impl AsRef<Path>) -> Result<Vec<Crl>, PkiError> {
    load_crls(&read(path.as_ref())?).map_err(|e| in_file(e, path.as_ref()))
}

fn read(path: &Path) -> Result<Vec<u8>, PkiError> {
    std::fs::read(path).map_err(|source| PkiError::Io {
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_skip_other_labels() {
        let text = "junk\n-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n\
                    -----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n\
                    -----BEGIN CERTIFICATE-----\nunterminated";
        let blocks: Vec<_> = pem_blocks(text, &["CERTIFICATE"]).collect();
        assert_eq!(blocks.len(), 2);
        assert!(blocks[0].ends_with("-----END CERTIFICATE-----"));
        assert!(blocks[1].ends_with("unterminated"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(load_certs(b""), Err(PkiError::NoCertificate)));
        assert!(load_certs(b"\x30\x03\x02\x01").is_err());
        assert!(load_certs(b"hello world").is_err());
        assert!(
            load_certs(b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n").is_err()
        );
        // A private key is named as such.
        assert!(matches!(
            load_certs(b"-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n"),
            Err(PkiError::WrongKind(_))
        ));
        assert!(load_crls(b"\xff\xfe").is_err());
        assert!(matches!(load_crls(b""), Err(PkiError::NoCrl)));
    }
}
