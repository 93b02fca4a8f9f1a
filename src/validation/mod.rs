//! Signature validation: the one validator every entry point calls (CompleteSignature,
//! ValidateSignature, `paraph validate`, `paraph verify-bundle`), over [`crate::crypto`] (the CMS
//! and its signature value) and [`crate::pki`] (RFC 5280 path validation with the RGS profile).
//!
//! It sits below the service and the client: both call it, neither reaches into the other. Pure
//! function of its inputs (trust material, data, signature, validation time): no store, no
//! clock, no network.

pub mod chain;
pub mod material;
pub mod report;
pub mod trust;
mod verdicts;

pub use chain::{validate_chain, validate_chain_at, ChainOk, ChainRefusal, ValidationTime};
pub use report::{
    signer_count, validate_cms, validate_pades, validate_pades_cms, validate_xades, Indication,
    ProofOfExistence, Report, SignerReport,
};
pub use trust::{Der, TrustSettings};
pub use verdicts::forget as forget_remembered_passes;
