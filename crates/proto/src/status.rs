//! The one table between what went wrong and the gRPC status that carries it: the worker turns
//! its errors into statuses through [`ServiceError`], the client reads a status back as an
//! [`ErrorKind`] to say what to do. Both ends read the same table, so a kind cannot drift to a
//! different code on one side.

use tonic::{Code, Status};

/// What went wrong, as both ends of the wire understand it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such job or artifact.
    NotFound,
    /// The request itself is wrong (a bad spec, an unknown name); retrying it cannot help.
    InvalidArgument,
    /// Bytes that do not match their checksum.
    DataLoss,
    /// The request is well-formed but the worker is not in a state to do it (a protocol
    /// mismatch, a blob not uploaded yet).
    FailedPrecondition,
    /// A queue or quota is full; the same request may succeed later.
    ResourceExhausted,
    /// The worker is shutting down or cannot be reached.
    Unavailable,
    /// A missing or wrong token.
    Unauthenticated,
    /// The caller may not do this here (a worker path its config does not allow).
    PermissionDenied,
    /// A fault on the worker's side (disk, object store, a bug).
    Internal,
}

impl ErrorKind {
    /// The gRPC code this kind travels as.
    pub fn code(self) -> Code {
        match self {
            ErrorKind::NotFound => Code::NotFound,
            ErrorKind::InvalidArgument => Code::InvalidArgument,
            ErrorKind::DataLoss => Code::DataLoss,
            ErrorKind::FailedPrecondition => Code::FailedPrecondition,
            ErrorKind::ResourceExhausted => Code::ResourceExhausted,
            ErrorKind::Unavailable => Code::Unavailable,
            ErrorKind::Unauthenticated => Code::Unauthenticated,
            ErrorKind::PermissionDenied => Code::PermissionDenied,
            ErrorKind::Internal => Code::Internal,
        }
    }

    /// The kind a received status stands for; codes the worker never sends on purpose (a
    /// transport's `Unknown`, a `Cancelled` stream) read as [`ErrorKind::Internal`] or
    /// [`ErrorKind::Unavailable`], whichever the client should act on.
    pub fn of(status: &Status) -> ErrorKind {
        match status.code() {
            Code::NotFound => ErrorKind::NotFound,
            Code::InvalidArgument | Code::OutOfRange | Code::AlreadyExists => {
                ErrorKind::InvalidArgument
            }
            Code::DataLoss => ErrorKind::DataLoss,
            Code::FailedPrecondition | Code::Aborted => ErrorKind::FailedPrecondition,
            Code::ResourceExhausted => ErrorKind::ResourceExhausted,
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => ErrorKind::Unavailable,
            Code::Unauthenticated => ErrorKind::Unauthenticated,
            Code::PermissionDenied => ErrorKind::PermissionDenied,
            Code::Ok | Code::Unknown | Code::Internal | Code::Unimplemented => ErrorKind::Internal,
        }
    }
}

/// An error a service can answer a call with: its message and its kind.
pub trait ServiceError: std::fmt::Display {
    fn kind(&self) -> ErrorKind;
}

/// The status that carries `error` over the wire.
pub fn to_status(error: &impl ServiceError) -> Status {
    Status::new(error.kind().code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorKind; 9] = [
        ErrorKind::NotFound,
        ErrorKind::InvalidArgument,
        ErrorKind::DataLoss,
        ErrorKind::FailedPrecondition,
        ErrorKind::ResourceExhausted,
        ErrorKind::Unavailable,
        ErrorKind::Unauthenticated,
        ErrorKind::PermissionDenied,
        ErrorKind::Internal,
    ];

    #[test]
    fn every_kind_reads_back_as_itself() {
        for kind in ALL {
            let status = Status::new(kind.code(), "x");
            assert_eq!(ErrorKind::of(&status), kind, "{kind:?}");
        }
    }
}
