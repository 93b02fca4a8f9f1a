//! paraph: electronic signature circuits for local administrations.
//!
//! Architecture map (each layer only depends on the ones above it):
//!
//! - [`domain`]: pure, synchronous model and workflow state machine. No I/O, no clock, no async.
//! - [`audit`]: pure audit-trail core: RFC 6962 Merkle log, proofs, signed checkpoints. No I/O.
//! - [`store`]: persistence of domain records in an embedded index (sled by default, or redb)
//!   beside a value log: each mutation atomic, run on one writer thread in groups applied as one
//!   batch and made durable by one shared fsync before any reply.
//! - [`validation`]: the one signature validator (CMS, path, RGS level, validation time), used
//!   by the service and the client alike. No I/O.
//! - [`service`]: application layer: authorisation, load, domain transition, store, notify.
//! - [`grpc`]: tonic services, proto <-> domain conversion, the one map from errors to `Status`.
//! - [`server`]: process wiring: settings, listener, TLS, health, reflection, graceful shutdown.
//! - [`client`]: the command-line client (officers, admins, auditors) over the generated stubs.
#![deny(unsafe_code)]

pub mod audit;
pub mod client;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod demo;
pub mod domain;
pub mod formats;
pub mod grpc;
pub mod pki;
pub mod server;
pub mod service;
pub mod store;
pub mod validation;

/// Generated protobuf and gRPC code for package `paraph.v1`.
#[allow(clippy::all, missing_docs)]
pub mod proto {
    tonic::include_proto!("paraph.v1");
    include!(concat!(env!("OUT_DIR"), "/clients/paraph.v1.rs"));

    /// Encoded file descriptor set of `proto/` (with imports and comments), written by the
    /// build as `paraph.v1.binpb`: served by gRPC reflection and by `paraph api descriptor`.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/paraph.v1.binpb"));
}
