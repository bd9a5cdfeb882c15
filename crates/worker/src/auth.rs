//! Access: a bearer token created at first start, checked on every RPC except health, plus the
//! protocol-version check (both are per-request metadata, so one interceptor does both).

use easel_proto::protocol;
use rand::RngCore;
use std::path::{Path, PathBuf};
use subtle::ConstantTimeEq;
use tonic::{Request, Status};

use crate::error::{Error, Result};

/// The worker's token: read from `<data_dir>/token`, or created there (mode 0600) at first start.
pub struct Token {
    pub value: String,
    pub path: PathBuf,
    /// True when this start created it (the caller prints it once).
    pub created: bool,
}

/// Shortest token accepted from a file the worker did not write itself (it makes 64 hex digits).
pub const MIN_TOKEN_CHARS: usize = 16;

pub fn load_or_create_token(data_dir: &Path) -> Result<Token> {
    let path = data_dir.join("token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => {
            // A token put there by hand (a Kubernetes Secret, say) that can be guessed protects
            // nothing, and a placeholder left in a recipe must not start a reachable worker.
            let length = text.trim().chars().count();
            if length < MIN_TOKEN_CHARS {
                return Err(Error::FailedPrecondition(format!(
                    "the token in {} is {length} characters long: use at least {MIN_TOKEN_CHARS} random ones (e.g. `openssl rand -hex 32`), or delete the file to have one made",
                    path.display()
                )));
            }
            return Ok(Token {
                value: text.trim().to_owned(),
                path,
                created: false,
            });
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let value: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    // Whole and on disk before any client is told it: a token lost to a power loss would lock
    // every client out.
    easel_store::private_file::write_private(&path, format!("{value}\n").as_bytes())
        .map_err(|e| Error::io(&path, e))?;
    Ok(Token {
        value,
        path,
        created: true,
    })
}

/// The tonic interceptor guarding the worker service.
#[derive(Clone)]
pub struct Guard {
    token: std::sync::Arc<str>,
}

impl Guard {
    pub fn new(token: &str) -> Self {
        Guard {
            token: token.into(),
        }
    }

    pub fn check(&self, request: Request<()>) -> std::result::Result<Request<()>, Status> {
        protocol::check_protocol_header(request.metadata())?;
        match protocol::presented_token(request.metadata()) {
            None => Err(Status::unauthenticated("missing bearer token")),
            Some(token) if bool::from(token.as_bytes().ct_eq(self.token.as_bytes())) => Ok(request),
            Some(_) => Err(Status::unauthenticated("wrong bearer token")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: Option<&str>, protocol: Option<&str>) -> Request<()> {
        let mut request = Request::new(());
        if let Some(token) = token {
            request.metadata_mut().insert(
                protocol::AUTHORIZATION_HEADER,
                format!("Bearer {token}").parse().unwrap(),
            );
        }
        if let Some(protocol) = protocol {
            request
                .metadata_mut()
                .insert(protocol::PROTOCOL_HEADER, protocol.parse().unwrap());
        }
        request
    }

    #[test]
    fn token_is_checked() {
        let guard = Guard::new("secret");
        assert!(guard.check(request(Some("secret"), None)).is_ok());
        let wrong = guard.check(request(Some("secreT"), None)).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let missing = guard.check(request(None, None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("missing"));
    }

    #[test]
    fn other_protocol_is_refused_by_name() {
        let guard = Guard::new("secret");
        let status = guard
            .check(request(Some("secret"), Some("99")))
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        assert!(
            status.message().contains("protocol 99"),
            "{}",
            status.message()
        );
    }

    #[test]
    fn token_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_token(dir.path()).unwrap();
        assert!(first.created);
        assert_eq!(first.value.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let second = load_or_create_token(dir.path()).unwrap();
        assert!(!second.created);
        assert_eq!(first.value, second.value);
    }

    #[test]
    fn a_guessable_token_put_there_by_hand_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "CHANGE-ME\n").unwrap();
        let error = load_or_create_token(dir.path()).err().unwrap().to_string();
        assert!(error.contains("is 9 characters long"), "{error}");
        assert!(error.contains("openssl rand -hex 32"), "{error}");
        std::fs::write(
            dir.path().join("token"),
            "a-long-enough-token-from-a-secret",
        )
        .unwrap();
        let token = load_or_create_token(dir.path()).unwrap();
        assert!(!token.created);
        assert_eq!(token.value, "a-long-enough-token-from-a-secret");
    }
}
