//! The worker's own token: created at first start in `<data-dir>/token`, the admin token that
//! `client up` hands to the client. Named tokens for others are in `tokens.rs`; the check of
//! every request in `access.rs`.

use std::path::{Path, PathBuf};

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
    let value = crate::access::named_tokens::random_token();
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

#[cfg(test)]
mod tests {
    use super::*;

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
