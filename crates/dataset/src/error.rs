//! One error type for the crate; every variant names the file or value it is about.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no such folder or zip archive", path.display())]
    RootNotFound { path: PathBuf },
    #[error("{}: not a folder or a zip archive", path.display())]
    NotADatasetRoot { path: PathBuf },
    #[error("{}: unreadable zip archive: {source}", path.display())]
    Zip {
        path: PathBuf,
        #[source]
        source: zip::result::ZipError,
    },
    #[error("{}: the folder `{inner}` is not inside the archive", archive.display())]
    NotInArchive { archive: PathBuf, inner: String },
    #[error("no dataset roots given")]
    NoRoots,
    #[error("invalid manifest: {reason}")]
    InvalidManifest { reason: String },
    #[error("manifest JSON: {source}")]
    ManifestJson {
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid split: {reason}")]
    InvalidSplit { reason: String },
    #[error("`{digest}` is not a blake3 digest (64 lowercase hex characters)")]
    InvalidDigest { digest: String },
    #[error("{}: content digest is {actual}, expected {expected}", path.display())]
    DigestMismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
