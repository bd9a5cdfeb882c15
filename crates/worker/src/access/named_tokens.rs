//! Named access tokens, one per person or machine sharing a worker: `worker token add NAME` makes
//! one and prints it once, `<data-dir>/tokens.json` keeps only its blake3 hash. Each job belongs
//! to the name whose token submitted it; only that name and admin tokens (the worker's own
//! `<data-dir>/token`, or one added with `--admin`) see it. A revoked token stays listed so a
//! client using it is told so by name; a running worker reads the file again when it changes.
//! Every change is a read-modify-write under an advisory lock on `tokens.json.lock`, so two
//! `worker token` commands at once both land, and the file is replaced whole (never torn).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

pub const TOKENS_FILE: &str = "tokens.json";

/// Beside the token file: held (flock) by each `worker token add`/`revoke` while it reads,
/// changes and replaces the file.
const LOCK_FILE: &str = "tokens.json.lock";

/// Who the worker's own token (`<data-dir>/token`) speaks for: it owns jobs submitted with it and
/// jobs of workers from before named tokens.
pub const ADMIN_NAME: &str = "admin";

/// Longest token name (it is printed in listings and events).
const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedToken {
    pub name: String,
    /// blake3 of the token, hex: the file never holds a usable token.
    pub blake3: String,
    /// Sees and controls every job, like the worker's own token.
    #[serde(default)]
    pub admin: bool,
    pub created_at: String,
    #[serde(default)]
    pub revoked_at: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct TokenFile {
    #[serde(default)]
    tokens: Vec<NamedToken>,
}

pub fn tokens_path(data_dir: &Path) -> PathBuf {
    data_dir.join(TOKENS_FILE)
}

/// The hash a presented token is looked up by.
pub fn token_hash(token: &str) -> String {
    blake3::hash(token.as_bytes()).to_hex().to_string()
}

/// Every token the file lists, revoked ones included; none when there is no file.
pub fn read_tokens(path: &Path) -> Result<Vec<NamedToken>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    let file: TokenFile = serde_json::from_str(&text).map_err(|e| {
        Error::FailedPrecondition(format!(
            "{}: {e} (it is written by `worker token add`/`revoke`)",
            path.display()
        ))
    })?;
    Ok(file.tokens)
}

fn write_tokens(path: &Path, tokens: Vec<NamedToken>) -> Result<()> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
    }
    let json = serde_json::to_vec_pretty(&TokenFile { tokens })
        .map_err(|e| Error::Internal(e.to_string()))?;
    easel_store::private_file::write_private(path, &json).map_err(|e| Error::io(path, e))
}

/// An exclusive advisory lock on the token file's lock file, released when dropped (the kernel
/// releases it too if the process dies holding it).
struct TokensLock {
    _file: std::fs::File,
}

/// Waits for the lock that serialises changes to the token file at `path`.
fn lock_tokens(path: &Path) -> Result<TokensLock> {
    let folder = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(folder).map_err(|e| Error::io(folder, e))?;
    let lock_path = folder.join(LOCK_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return Ok(TokensLock { _file: file }),
            // A signal woke the wait; the lock is still wanted.
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(Error::io(&lock_path, e.into())),
        }
    }
}

/// Adds a token named `name` and returns it: the only time it exists outside the client.
pub fn add_token(path: &Path, name: &str, admin: bool) -> Result<String> {
    check_name(name)?;
    let _lock = lock_tokens(path)?;
    let mut tokens = read_tokens(path)?;
    if let Some(existing) = tokens.iter().find(|t| t.name == name) {
        let state = if existing.revoked_at.is_some() {
            "a revoked one keeps its name so its jobs stay attributed"
        } else {
            "revoke it first to replace it"
        };
        return Err(Error::FailedPrecondition(format!(
            "a token named `{name}` exists ({state})"
        )));
    }
    let token = random_token();
    tokens.push(NamedToken {
        name: name.to_owned(),
        blake3: token_hash(&token),
        admin,
        created_at: easel_events::now(),
        revoked_at: None,
    });
    write_tokens(path, tokens)?;
    Ok(token)
}

/// Marks `name`'s token revoked; a running worker refuses it within a second and ends its streams.
pub fn revoke_token(path: &Path, name: &str) -> Result<NamedToken> {
    let _lock = lock_tokens(path)?;
    let mut tokens = read_tokens(path)?;
    let Some(token) = tokens.iter_mut().find(|t| t.name == name) else {
        let names: Vec<&str> = tokens.iter().map(|t| t.name.as_str()).collect();
        return Err(Error::InvalidArgument(format!(
            "no token named `{name}` in {} (names: {})",
            path.display(),
            if names.is_empty() {
                "none".to_owned()
            } else {
                names.join(", ")
            }
        )));
    };
    if token.revoked_at.is_none() {
        token.revoked_at = Some(easel_events::now());
    }
    let revoked = token.clone();
    write_tokens(path, tokens)?;
    Ok(revoked)
}

/// 32 random bytes as hex, like the worker's own token.
pub fn random_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_name(name: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@');
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS || !name.chars().all(allowed) {
        return Err(Error::InvalidArgument(format!(
            "token name `{name}`: use 1 to {MAX_NAME_CHARS} letters, digits, `-`, `_`, `.` or `@`"
        )));
    }
    if name == ADMIN_NAME {
        return Err(Error::InvalidArgument(format!(
            "`{ADMIN_NAME}` names the worker's own token (<data-dir>/token); pick another name, with --admin for a second admin"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_printed_once_and_stored_only_as_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = tokens_path(dir.path());
        let token = add_token(&path, "alice", false).unwrap();
        assert_eq!(token.len(), 64);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token), "{text}");
        assert!(text.contains(&token_hash(&token)), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let listed = read_tokens(&path).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].admin && listed[0].revoked_at.is_none());
    }

    #[test]
    fn names_are_checked_and_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = tokens_path(dir.path());
        for bad in ["", "admin", "a b", "../x", &"x".repeat(65)] {
            assert!(add_token(&path, bad, false).is_err(), "{bad:?} accepted");
        }
        add_token(&path, "ci-bot", true).unwrap();
        let again = add_token(&path, "ci-bot", false).unwrap_err().to_string();
        assert!(again.contains("revoke it first"), "{again}");
        let revoked = revoke_token(&path, "ci-bot").unwrap();
        assert!(revoked.revoked_at.is_some());
        let reused = add_token(&path, "ci-bot", false).unwrap_err().to_string();
        assert!(reused.contains("revoked one keeps its name"), "{reused}");
        let unknown = revoke_token(&path, "bob").unwrap_err().to_string();
        assert!(unknown.contains("names: ci-bot"), "{unknown}");
    }

    #[test]
    fn tokens_added_at_the_same_time_all_land_in_the_file() {
        const WRITERS: usize = 24;
        let dir = tempfile::tempdir().unwrap();
        let path = tokens_path(dir.path());
        add_token(&path, "first", false).unwrap();
        // All start together, so without the lock their read-modify-writes overlap.
        let start = std::sync::Barrier::new(WRITERS + 1);
        std::thread::scope(|scope| {
            for writer in 0..WRITERS {
                let (path, start) = (&path, &start);
                scope.spawn(move || {
                    start.wait();
                    add_token(path, &format!("user-{writer}"), false).unwrap();
                });
            }
            start.wait();
            // One revoke among the adds must keep them too.
            revoke_token(&path, "first").unwrap();
        });
        let stored = read_tokens(&path).unwrap();
        let mut names: Vec<&str> = stored.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        let mut expected: Vec<String> = (0..WRITERS).map(|w| format!("user-{w}")).collect();
        expected.push("first".into());
        expected.sort_unstable();
        assert_eq!(names, expected);
        assert!(
            stored
                .iter()
                .any(|t| t.name == "first" && t.revoked_at.is_some())
        );
    }

    #[test]
    fn a_damaged_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = tokens_path(dir.path());
        std::fs::write(&path, "{ not json").unwrap();
        let error = read_tokens(&path).unwrap_err().to_string();
        assert!(error.contains("tokens.json"), "{error}");
    }
}
