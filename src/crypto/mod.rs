//! CMS / CAdES: building the signed attributes an officer signs, assembling detached
//! SignedData (CAdES baseline B-B), parsing SignedData received from anyone, and the raw
//! signature operations with OpenSSL keys.
//!
//! Owns encodings and cryptographic primitives only. It must not decide whether a certificate
//! is trustworthy (that is `pki`), nor touch storage, the clock or the network: signing times
//! are passed in.

pub mod cades;
pub mod certs;
pub mod der_util;

pub use cades::{
    assemble, assemble_in_order, build_signed_attributes, certificate_public_key, parse,
    sign_with_key, verify_signature_value, with_crls, AttributeCheck, ParsedCms, ParsedSigner,
    SigAlg, SignaturePolicy, SignerPart,
};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The bytes are not the CMS / certificate / key structure they claim to be.
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    /// The key or algorithm is outside what paraph accepts.
    #[error("unsupported algorithm: {0}")]
    Unsupported(String),
    /// The signature value does not verify with the certificate's key.
    #[error("the signature value does not verify over the signed attributes")]
    BadSignature,
    /// An OpenSSL operation failed.
    #[error("cryptographic operation failed: {0}")]
    OpenSsl(String),
}

impl From<openssl::error::ErrorStack> for CryptoError {
    fn from(e: openssl::error::ErrorStack) -> Self {
        CryptoError::OpenSsl(openssl_reason(&e))
    }
}

/// What OpenSSL found wrong, in its own words (`wrong tag`, `header too long`,
/// `too long`), without what its error queue adds around them: error codes, function names
/// and source locations (`error:0680007B:…:../crypto/asn1/tasn_dec.c:1215:`), which tell a
/// user nothing about his input. The most specific reason comes first in the queue.
pub fn openssl_reason(e: &openssl::error::ErrorStack) -> String {
    let errors = e.errors();
    errors
        .iter()
        .find_map(|e| e.reason().map(str::to_owned))
        .or_else(|| {
            errors
                .iter()
                .find_map(|e| e.library().map(|l| format!("refused by OpenSSL's {l}")))
        })
        .unwrap_or_else(|| "refused by OpenSSL without a reason".to_owned())
}

pub(crate) fn malformed(what: &'static str, e: impl std::fmt::Display) -> CryptoError {
    CryptoError::Malformed {
        what,
        reason: e.to_string(),
    }
}

/// [`malformed`] for an OpenSSL refusal: its reason, never its error queue.
pub(crate) fn malformed_by_openssl(
    what: &'static str,
    e: &openssl::error::ErrorStack,
) -> CryptoError {
    malformed(what, openssl_reason(e))
}
