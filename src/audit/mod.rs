//! Audit trail core: the per-tenant append-only log hashed as an RFC 6962 / RFC 9162 Merkle
//! tree, its inclusion and consistency proofs, and the checkpoints (signed tree heads) the
//! server issues with its audit key.
//!
//! Owns the hashing, the incremental node layout ([`merkle`]), proof generation and
//! verification, the checkpoint text format and its Ed25519 signature ([`checkpoint`]).
//! It does no network I/O and reads no clock: storage is reached through the
//! [`merkle::NodeSource`] trait (the caller persists the node writes an append returns), and
//! every time is passed in by the caller. Storage keys, the events' canonical encoding and the
//! choice of the key file are the integrator's business.

pub mod bundle;
pub mod checkpoint;
pub mod commit;
pub mod event;
pub mod merkle;

pub use checkpoint::{AuditKey, AuditPublicKey, Checkpoint, SignedCheckpoint};
pub use event::{AuditEvent, DocumentFacts};
pub use merkle::{Hash, NodeSource};

/// Every failure of the audit layer. Proof and checkpoint checks fail with distinct variants so
/// that a verifier can name exactly what does not hold.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A node that must exist for the requested tree size is absent from storage.
    #[error("log storage is missing node ({level},{index})")]
    MissingNode { level: u8, index: u64 },
    /// A hash received from outside does not have 32 bytes.
    #[error("a hash must have 32 bytes, got {len}")]
    BadHashLength { len: usize },
    /// A leaf index at or beyond the tree size.
    #[error("leaf index {index} is not in a log of size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    /// A consistency request or check where the first size exceeds the second.
    #[error("tree size {old} is larger than tree size {new}: a log never shrinks")]
    SizesOutOfOrder { old: u64, new: u64 },
    /// The log holds 2^64 - 1 leaves and cannot grow.
    #[error("the log is full")]
    LogFull,

    /// The inclusion proof has a number of hashes that no valid proof can have.
    #[error(
        "inclusion proof has {got} hashes, expected {expected} for leaf {index} \
         in a log of size {size}"
    )]
    InclusionProofLength {
        index: u64,
        size: u64,
        got: usize,
        expected: usize,
    },
    /// The inclusion proof is well formed but leads to another root hash.
    #[error("inclusion proof for leaf {index} does not lead to the root hash of size {size}")]
    InclusionRootMismatch { index: u64, size: u64 },
    /// The consistency proof has a number of hashes that no valid proof can have.
    #[error(
        "consistency proof has {got} hashes, expected {expected} between sizes {old} and {new}"
    )]
    ConsistencyProofLength {
        old: u64,
        new: u64,
        got: usize,
        expected: usize,
    },
    /// The consistency proof does not reproduce the old root: the history was rewritten.
    #[error(
        "consistency proof does not reproduce the root hash of size {old}: \
         the log's history was rewritten, or the proof is wrong"
    )]
    OldRootMismatch { old: u64 },
    /// The consistency proof does not lead to the new root: the new tree does not extend the
    /// old one (when the old size is a power of two, a rewritten history shows here).
    #[error(
        "consistency proof does not lead to the root hash of size {new}: the larger tree does \
         not extend the smaller one, or the proof is wrong"
    )]
    NewRootMismatch { new: u64 },
    /// Two different root hashes for the same tree size.
    #[error("two different root hashes for tree size {size}: the log forked")]
    Fork { size: u64 },

    /// A checkpoint or signed checkpoint that does not follow the format.
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    /// The signature does not verify with the audit public key.
    #[error(
        "forged checkpoint: its signature does not verify with the audit public key \
         (altered, or signed by another key)"
    )]
    ForgedCheckpoint,
    /// The checkpoint is for another log.
    #[error("checkpoint is for log {found:?}, expected {expected:?}")]
    WrongOrigin { expected: String, found: String },
    /// The checkpoint is older than one already known.
    #[error(
        "stale checkpoint: size {size} at time {time} is older than the known checkpoint \
         (size {known_size} at time {known_time})"
    )]
    StaleCheckpoint {
        size: u64,
        time: i64,
        known_size: u64,
        known_time: i64,
    },
    /// A larger tree signed at an earlier time than a smaller known one.
    #[error(
        "checkpoint of size {size} is dated {time}, before the known checkpoint of the \
         smaller size {known_size} dated {known_time}"
    )]
    CheckpointTimeRegression {
        size: u64,
        time: i64,
        known_size: u64,
        known_time: i64,
    },
    /// The checkpoint was signed longer ago than the caller accepts.
    #[error("outdated checkpoint: dated {time}, more than {max_age} s before {now}")]
    OutdatedCheckpoint { time: i64, now: i64, max_age: u64 },

    /// An audit event that does not follow the canonical format.
    #[error("malformed audit event: {0}")]
    MalformedEvent(String),

    /// The key is not an Ed25519 key.
    #[error("the audit key must be an Ed25519 key")]
    NotEd25519,
    /// An OpenSSL operation on the audit key failed.
    #[error("audit key: {context}: {}", crate::crypto::openssl_reason(source))]
    Key {
        context: &'static str,
        #[source]
        source: openssl::error::ErrorStack,
    },
}
