//! The gRPC edge: tonic services for package `paraph.v1`.
//!
//! Owns proto <-> domain conversion (parse, don't validate: requests become checked domain
//! values before the service sees them), bearer-token extraction, and [`to_status`], the ONE
//! place where errors become `tonic::Status`. Internal causes are logged here and never sent to
//! clients. It holds no business rule.

mod admin;
mod audit;
mod circuits;
pub mod codec;
pub mod conn;
mod convert;
mod delegation;
mod documents;
pub mod guard;
pub mod signatures;
pub mod web;

pub use admin::AdminApi;
pub use circuits::CircuitApi;
pub use documents::DocumentApi;
pub use signatures::SignatureApi;

use crate::domain::{DomainError, IdempotencyKey};
use crate::service::{Idem, Paraph, Principal, ServiceError};
use crate::store::StoreError;
use std::sync::Arc;
use tonic::{Request, Status};

/// Metadata naming the tenant the platform operator acts in.
pub const TENANT_HEADER: &str = "x-paraph-tenant";

/// Maps every service error to a status. Internal failures are logged with their cause and
/// reported to the client without it.
pub fn to_status(e: ServiceError) -> Status {
    match e {
        ServiceError::Domain(d) => match d {
            DomainError::InvalidField { .. } => Status::invalid_argument(d.to_string()),
            DomainError::NotFound(_) => Status::not_found(d.to_string()),
            DomainError::Forbidden(_) => Status::permission_denied(d.to_string()),
            DomainError::WrongState(_) => Status::failed_precondition(d.to_string()),
            DomainError::AlreadyExists(_) => Status::already_exists(d.to_string()),
        },
        ServiceError::Unauthenticated => Status::unauthenticated(e.to_string()),
        ServiceError::TooLarge(_) | ServiceError::Busy(_) => {
            Status::resource_exhausted(e.to_string())
        }
        ServiceError::TimedOut(_) => Status::deadline_exceeded(e.to_string()),
        ServiceError::IdempotencyMismatch => Status::invalid_argument(e.to_string()),
        ServiceError::Store(ref s) => store_status(s).unwrap_or_else(|| {
            tracing::error!(error = %e, "internal failure");
            Status::internal("internal error")
        }),
        ServiceError::Internal(_) => {
            tracing::error!(error = %e, "internal failure");
            Status::internal("internal error")
        }
    }
}

/// The status of a storage failure the client can act on or must hear of: a full disk, a
/// store that cannot write for now, a damaged record (named, so that the operator can find it;
/// never answered as NOT_FOUND). The cause is logged; `None` for the other failures.
fn store_status(e: &StoreError) -> Option<Status> {
    match e {
        StoreError::NoSpace(_) => {
            tracing::error!(error = %e, "a write failed: no space");
            Some(Status::resource_exhausted(
                "the server's storage is full: the write was not made; retry later",
            ))
        }
        StoreError::Poisoned(_) | StoreError::Unwritable(_) | StoreError::Closed => {
            tracing::error!(error = %e, "a write failed: the store cannot write");
            Some(Status::unavailable(
                "the server's storage cannot write for now: the write was not made",
            ))
        }
        StoreError::Database(_) | StoreError::DatabaseRefused(_) => {
            tracing::warn!(error = %e, "the database failed the call");
            Some(Status::unavailable(
                "the server's database cannot be reached for now: retry (with the same \
                 idempotency key)",
            ))
        }
        StoreError::Damaged { key }
        | StoreError::Missing { key, .. }
        | StoreError::Corrupt { key, .. }
        | StoreError::Unreadable { key, .. } => {
            tracing::error!(error = %e, "a stored record is damaged");
            Some(Status::data_loss(format!(
                "stored record {key} is damaged; the operator must check the store \
                 (paraph admin check)"
            )))
        }
        StoreError::EnginePanic { key, op, .. } => {
            tracing::error!(error = %e, "the storage engine failed");
            Some(Status::internal(format!(
                "the storage engine failed ({op} {key}); the operator must check the store \
                 (paraph admin check)"
            )))
        }
        _ => None,
    }
}

/// Why the transport refused or cut a call, before or around the services.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(
        "the server holds too many request bytes at once (max_request_bytes_in_flight = {total}); \
         retry later"
    )]
    Budget { total: usize },
    #[error("the call was not answered within {0:?} (request_timeout_secs)")]
    Timeout(std::time::Duration),
}

/// Maps a transport refusal to its status: excess is RESOURCE_EXHAUSTED, never growth.
pub fn transport_status(e: TransportError) -> Status {
    match e {
        TransportError::Budget { .. } => Status::resource_exhausted(e.to_string()),
        TransportError::Timeout(_) => Status::deadline_exceeded(e.to_string()),
    }
}

/// Converts a domain error met while parsing a request.
pub(crate) fn invalid(e: DomainError) -> Status {
    to_status(ServiceError::Domain(e))
}

/// Authenticates a request from its `authorization: Bearer …` and tenant metadata.
pub(crate) async fn principal<T>(svc: &Paraph, req: &Request<T>) -> Result<Principal, Status> {
    authenticate(svc, req.metadata().as_ref()).await
}

/// Authenticates the headers of a call (`authorization: Bearer …`, `x-paraph-tenant`).
pub(crate) async fn authenticate(svc: &Paraph, md: &http::HeaderMap) -> Result<Principal, Status> {
    let token = md
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            Status::unauthenticated("missing 'authorization: Bearer <token>' metadata")
        })?;
    let tenant = match md.get(TENANT_HEADER) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Status::invalid_argument("invalid x-paraph-tenant metadata"))?,
        ),
        None => None,
    };
    svc.authenticate(token.trim(), tenant)
        .await
        .map_err(to_status)
}

/// The caller acting in a tenant.
pub(crate) async fn caller<T>(
    svc: &Paraph,
    req: &Request<T>,
) -> Result<crate::service::Caller, Status> {
    principal(svc, req).await?.in_tenant().map_err(to_status)
}

/// The idempotency key of a request, fingerprinted over the whole encoded request.
pub(crate) fn idem<M: prost::Message>(key: &str, msg: &M) -> Result<Option<Idem>, Status> {
    let key = IdempotencyKey::parse(key).map_err(invalid)?;
    Ok(Idem::new(key, &msg.encode_to_vec()))
}

/// Shared state of the services.
#[derive(Clone)]
pub struct Api {
    pub svc: Arc<Paraph>,
    /// Turns true when the server shuts down; open watch streams end then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}
