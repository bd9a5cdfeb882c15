//! The store's error type: every variant names the URL, key or file it is about.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid store url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: String },

    #[error(
        "refusing plain http endpoint `{endpoint}`: http is only allowed to a loopback host \
         (127.0.0.1, ::1, localhost); use https:// for anything else"
    )]
    InsecureEndpoint { endpoint: String },

    #[error("invalid {what} `{value}`: {reason}")]
    InvalidName {
        what: &'static str,
        value: String,
        reason: String,
    },

    #[error("`{key}` not found in {url}")]
    NotFound { url: String, key: String },

    #[error(
        "access to `{key}` in {url} was refused ({source}); check the access key id and secret \
         (EASEL_S3_ACCESS_KEY_ID / EASEL_S3_SECRET_ACCESS_KEY or AWS_ACCESS_KEY_ID / \
         AWS_SECRET_ACCESS_KEY) and the bucket permissions"
    )]
    AccessDenied {
        url: String,
        key: String,
        source: object_store::Error,
    },

    #[error("object store {url} failed on `{key}`: {source}")]
    Backend {
        url: String,
        key: String,
        source: object_store::Error,
    },

    #[error("cannot configure object store for `{url}`: {source}")]
    Configure {
        url: String,
        source: object_store::Error,
    },

    #[error("{action} `{}`: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("`{key}` in {url}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        url: String,
        key: String,
        expected: u64,
        actual: u64,
    },

    #[error("`{key}` in {url}: blake3 {actual} does not match the recorded {expected}")]
    DigestMismatch {
        url: String,
        key: String,
        expected: String,
        actual: String,
    },

    #[error("`{key}` in {url} is not valid JSON: {source}")]
    BadIndex {
        url: String,
        key: String,
        source: serde_json::Error,
    },
}

impl Error {
    /// True for failures worth retrying later: the network or the server, not the request.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Backend { source, .. } => match source {
                object_store::Error::Generic { .. } | object_store::Error::JoinError { .. } => {
                    // A 4xx answer (other than 408/429) will not change by asking again.
                    !http_status(source)
                        .is_some_and(|s| (400..500).contains(&s) && s != 408 && s != 429)
                }
                _ => false,
            },
            _ => false,
        }
    }

    pub(crate) fn backend(url: &str, key: &str, source: object_store::Error) -> Self {
        let (url, key) = (url.to_owned(), key.to_owned());
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound { url, key },
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => {
                Error::AccessDenied { url, key, source }
            }
            // Listing and multipart requests wrap the HTTP status in a generic error.
            source => match http_status(&source) {
                Some(401 | 403) => Error::AccessDenied { url, key, source },
                _ => Error::Backend { url, key, source },
            },
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

/// The HTTP status an object store request failed with, found in its error chain.
///
/// `object_store` keeps its request error type private and wraps list and multipart failures in
/// `Error::Generic`, so the status is read from the request error's message
/// ("Server returned non-2xx status code: 403 Forbidden: ...").
fn http_status(error: &object_store::Error) -> Option<u16> {
    const MARKERS: [&str; 2] = [
        "Server returned non-2xx status code: ",
        "Server returned error response",
    ];
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        let message = e.to_string();
        if let Some(rest) = message.strip_prefix(MARKERS[0]) {
            return rest.get(..3).and_then(|code| code.parse().ok());
        }
        if message.starts_with(MARKERS[1]) {
            // An error inside a 200 response (S3 does this); the status is not in the message.
            return None;
        }
        current = e.source();
    }
    None
}
