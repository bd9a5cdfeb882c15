//! The worker's errors, and the one place they become gRPC statuses.

use std::path::PathBuf;

use easel_proto::status::{ErrorKind, ServiceError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no job `{0}` on this worker")]
    JobNotFound(String),
    #[error("no sweep `{0}` on this worker")]
    SweepNotFound(String),
    #[error("no artifact `{name}` in job `{job}`")]
    ArtifactNotFound { job: String, name: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// A chunk or a whole blob whose content does not match its checksum.
    #[error("{0}")]
    DataLoss(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the queue is full ({0} jobs waiting); try again when some have run")]
    QueueFull(usize),
    /// The upload quota or the disk cannot take what was asked; says what is needed and free.
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("the worker is shutting down and accepts no new jobs")]
    ShuttingDown,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Boxed: the store's error is large and rare.
    #[error(transparent)]
    Store(Box<easel_store::Error>),
    #[error("{0}")]
    Internal(String),
    /// A stream that went quiet for longer than the worker waits.
    #[error("{0}")]
    Idle(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<easel_store::Error> for Error {
    fn from(error: easel_store::Error) -> Self {
        Error::Store(Box::new(error))
    }
}

/// A blocking task that panicked or was cancelled: a fault on the worker's side.
impl From<tokio::task::JoinError> for Error {
    fn from(error: tokio::task::JoinError) -> Self {
        Error::Internal(format!("a worker task stopped unexpectedly: {error}"))
    }
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

impl ServiceError for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Error::JobNotFound(_) | Error::SweepNotFound(_) | Error::ArtifactNotFound { .. } => {
                ErrorKind::NotFound
            }
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::DataLoss(_) => ErrorKind::DataLoss,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::QueueFull(_) | Error::ResourceExhausted(_) => ErrorKind::ResourceExhausted,
            Error::ShuttingDown | Error::Idle(_) => ErrorKind::Unavailable,
            Error::Io { .. } | Error::Store(_) | Error::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        if error.kind() == ErrorKind::Internal {
            // The caller sees the message; the operator needs it in the worker's log too.
            tracing::error!(error = %error, "request failed");
        }
        easel_proto::status::to_status(&error)
    }
}
