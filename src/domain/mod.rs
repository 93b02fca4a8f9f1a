//! The pure domain: identifiers, tenants, users, circuits, documents and the workflow state
//! machine.
//!
//! Owns every business rule that does not need I/O. It must never touch sled, tonic, tokio or
//! the clock: the current time and fresh identifiers are passed in, so every transition is a
//! pure function `(state, command, now) -> Result<(new_state, events), DomainError>` that can be
//! re-run safely inside a storage transaction and exercised by property tests.

pub mod absence;
pub mod circuit;
pub mod condition;
pub mod document;
pub mod ids;
pub mod party;

pub use absence::{Absence, AbsenceRequest, Member, Roster, Route, RouteKind, Scope, StepNeeds};
pub use circuit::{
    ActorRef, Circuit, CircuitSpec, Escalate, Mode, PdfOptions, RgsLevel, StampPlace, StepDef,
    StepKind,
};
pub use condition::{Condition, ConditionError};
pub use document::{
    Acting, Action, ActionKind, ContentRef, DocState, Document, DocumentType, Event, EventKind,
    NewDocument, Reassignment, SignatureFormat, StepInstance, StepStatus, Transition,
};
pub use ids::{AbsenceId, CircuitName, DocumentId, IdempotencyKey, TenantId, TokenId, UserName};
pub use party::{BoundCertificate, Role, Tenant, TokenRecord, User};

use serde::{Deserialize, Serialize};

/// Seconds since the Unix epoch, UTC. The domain never reads the clock: callers pass `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// `self + secs`, saturating.
    pub fn plus_seconds(self, secs: u64) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)),
        )
    }
}

/// Every way a domain rule can refuse a command. Each variant names the problem precisely; the
/// gRPC layer maps variants to status codes in one place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// A field of the input is malformed or out of its limits.
    #[error("invalid {field}: {reason}")]
    InvalidField { field: String, reason: String },
    /// A referenced record does not exist (or belongs to another tenant).
    #[error("{0} not found")]
    NotFound(String),
    /// The caller is authenticated but may not do this.
    #[error("permission denied: {0}")]
    Forbidden(String),
    /// The record is not in a state that allows the command.
    #[error("{0}")]
    WrongState(String),
    /// The record to create exists already.
    #[error("{0} already exists")]
    AlreadyExists(String),
}

impl DomainError {
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        DomainError::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

impl From<ConditionError> for DomainError {
    fn from(e: ConditionError) -> Self {
        DomainError::invalid("condition", e.to_string())
    }
}
