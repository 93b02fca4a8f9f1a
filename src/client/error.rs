//! Errors of the command line and the process exit codes they map to.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | anything else (server unreachable, internal error, local I/O failure) |
//! | 2 | usage or bad input (`INVALID_ARGUMENT`, `OUT_OF_RANGE`, `RESOURCE_EXHAUSTED`, a bad file) |
//! | 3 | not found (`NOT_FOUND`; no card token, slot or key as named) |
//! | 4 | not allowed (`UNAUTHENTICATED`, `PERMISSION_DENIED`, no token given; a wrong or locked PIN, a key not allowed to sign) |
//! | 5 | conflict (`FAILED_PRECONDITION`, `ABORTED`, `ALREADY_EXISTS`) |
//! | 6 | `paraph validate`: the signature does not pass (`TOTAL_FAILED` or `INDETERMINATE`); `paraph verify-bundle`: the bundle is refused |
//!
//! `paraph sign --all` exits 1 when any document could not be signed (each failure is listed
//! with its own code). `paraph pki verify` keeps the codes of [`crate::pki::CliOutcome`]: 0
//! valid, 1 refused, 2 bad input.

use std::process::ExitCode;
use tonic::Code;

/// Why a command failed. The `Display` form is what the user sees after `error: `.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad command line or a bad input file.
    #[error("{0}")]
    Usage(String),
    /// No token to authenticate with.
    #[error("{0}")]
    NoToken(String),
    /// Something named locally is not there (a card's token or key).
    #[error("{0}")]
    NotFound(String),
    /// Refused locally (a wrong or locked PIN, a key not allowed to sign).
    #[error("{0}")]
    Denied(String),
    /// The local state forbids the command (e.g. a document without an active step).
    #[error("{0}")]
    Precondition(String),
    /// The server answered with an error status.
    #[error("{}: {}", code_name(.0.code()), .0.message())]
    Status(tonic::Status),
    /// The server could not be reached.
    #[error("UNAVAILABLE: {0}")]
    Connect(String),
    /// A local failure (writing a file, a runtime error).
    #[error("{0}")]
    Local(String),
    /// A signature validated without error but does not pass (the report says why).
    #[error("{0}")]
    NotPassed(String),
    /// Some items of a batch failed (each was reported already).
    #[error("{0}")]
    Partial(String),
}

impl From<tonic::Status> for CliError {
    fn from(s: tonic::Status) -> Self {
        // The server names its metadata header; at the command line it is an option.
        if s.code() == Code::InvalidArgument && s.message().contains(super::conn::TENANT_HEADER) {
            return CliError::Status(tonic::Status::new(
                s.code(),
                "the platform operator must name the tenant to act in: pass --tenant TENANT \
                 or set PARAPH_TENANT",
            ));
        }
        CliError::Status(s)
    }
}

impl CliError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::NoToken(_) | CliError::Denied(_) => 4,
            CliError::Precondition(_) => 5,
            CliError::Connect(_) | CliError::Local(_) | CliError::Partial(_) => 1,
            CliError::NotPassed(_) => 6,
            CliError::Status(s) => status_exit_code(s.code()),
        }
    }

    /// Prints the error to stderr and returns the exit code.
    pub fn report(&self) -> ExitCode {
        eprintln_text!("error: {self}");
        ExitCode::from(self.exit_code())
    }
}

/// Exit code for a gRPC status code.
pub fn status_exit_code(code: Code) -> u8 {
    match code {
        Code::Ok => 0,
        Code::InvalidArgument | Code::OutOfRange | Code::ResourceExhausted => 2,
        Code::NotFound => 3,
        Code::Unauthenticated | Code::PermissionDenied => 4,
        Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => 5,
        _ => 1,
    }
}

/// The canonical upper-case name of a gRPC status code (`INVALID_ARGUMENT`, …).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_errors_show_the_code_name_and_map_to_exit_codes() {
        let e = CliError::from(tonic::Status::invalid_argument("invalid title: empty"));
        assert_eq!(e.to_string(), "INVALID_ARGUMENT: invalid title: empty");
        assert_eq!(e.exit_code(), 2);
        assert_eq!(CliError::from(tonic::Status::not_found("x")).exit_code(), 3);
        assert_eq!(
            CliError::from(tonic::Status::unauthenticated("x")).exit_code(),
            4
        );
        assert_eq!(
            CliError::from(tonic::Status::permission_denied("x")).exit_code(),
            4
        );
        assert_eq!(CliError::from(tonic::Status::aborted("x")).exit_code(), 5);
        assert_eq!(CliError::from(tonic::Status::internal("x")).exit_code(), 1);
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::NotPassed("x".into()).exit_code(), 6);
        assert_eq!(CliError::Partial("x".into()).exit_code(), 1);
    }
}
