//! The worker's errors, and the one place they become gRPC statuses.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no job `{0}` on this worker")]
    JobNotFound(String),
    #[error("no artifact `{name}` in job `{job}`")]
    ArtifactNotFound { job: String, name: String },
    #[error("{0}")]
    InvalidArgument(String),
    /// A chunk or a whole blob whose content does not match its checksum.
    #[error("{0}")]
    DataLoss(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("the queue is full ({0} jobs waiting); try again when some have run")]
    QueueFull(usize),
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<easel_store::Error> for Error {
    fn from(error: easel_store::Error) -> Self {
        Error::Store(Box::new(error))
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

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        use tonic::Status;
        let message = error.to_string();
        match error {
            Error::JobNotFound(_) | Error::ArtifactNotFound { .. } => Status::not_found(message),
            Error::InvalidArgument(_) => Status::invalid_argument(message),
            Error::DataLoss(_) => Status::data_loss(message),
            Error::FailedPrecondition(_) => Status::failed_precondition(message),
            Error::QueueFull(_) => Status::resource_exhausted(message),
            Error::ShuttingDown => Status::unavailable(message),
            Error::Io { .. } | Error::Store(_) | Error::Internal(_) => {
                tracing::error!(error = %message, "request failed");
                Status::internal(message)
            }
        }
    }
}
