//! Who is calling. Every request but health passes [`Guard::check`]: the protocol version and the
//! bearer token (both are per-request metadata, so one interceptor does both). The token is the
//! worker's own (`<data-dir>/token`, admin) or a named one from `tokens.json`; the [`Caller`] it
//! speaks for goes into the request's extensions for the service to check ownership against.
//! The token file is read again when it changes, and [`Guard::revoked`] lets a stream end the
//! moment its token is revoked.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use easel_proto::protocol;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tonic::{Request, Status};

use crate::error::Result;
use crate::tokens::{ADMIN_NAME, NamedToken, read_tokens, token_hash};

/// How often a running worker looks at `tokens.json` (a revoked token works at most this long).
const TOKENS_POLL: Duration = Duration::from_secs(1);

/// Whom a request speaks for.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    /// Sees and controls every job.
    pub admin: bool,
    /// The presented token's hash; `None` for the worker's own token, which is never revoked.
    token_hash: Option<String>,
}

impl Caller {
    /// Whether this caller may see and control a job owned by `owner`.
    pub fn may_see(&self, owner: &str) -> bool {
        self.admin || self.name == owner
    }

    /// The caller [`Guard::check`] put into the request.
    pub fn of<T>(request: &Request<T>) -> Result<Caller, Status> {
        request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::internal("request reached the service without its caller"))
    }
}

/// The named tokens, by hash.
#[derive(Default)]
struct Book {
    by_hash: HashMap<String, NamedToken>,
}

impl Book {
    fn load(path: &Path) -> Result<Book> {
        let by_hash = read_tokens(path)?
            .into_iter()
            .map(|token| (token.blake3.clone(), token))
            .collect();
        Ok(Book { by_hash })
    }

    /// Why a token of this hash is refused now; `None` while it is valid.
    fn refusal(&self, hash: &str) -> Option<String> {
        match self.by_hash.get(hash) {
            None => Some("the token is no longer listed on the worker".into()),
            Some(token) => token.revoked_at.as_ref().map(|at| {
                format!(
                    "the token `{}` was revoked at {at} (`worker token list` on the worker)",
                    token.name
                )
            }),
        }
    }
}

/// The tonic interceptor guarding the worker service.
#[derive(Clone)]
pub struct Guard {
    admin_token: Arc<str>,
    book: watch::Receiver<Arc<Book>>,
}

impl Guard {
    /// Reads `tokens_path` and, from a task on the current runtime, reads it again whenever it
    /// changes, for as long as a clone of the guard lives.
    pub fn start(admin_token: &str, tokens_path: PathBuf) -> Result<Guard> {
        // Taken before the read: a change in between is read again at the first poll.
        let stamp = file_stamp(&tokens_path);
        let book = Book::load(&tokens_path)?;
        let (sender, receiver) = watch::channel(Arc::new(book));
        tokio::spawn(follow_tokens(tokens_path, stamp, sender));
        Ok(Guard {
            admin_token: admin_token.into(),
            book: receiver,
        })
    }

    pub fn check(&self, mut request: Request<()>) -> std::result::Result<Request<()>, Status> {
        protocol::check_protocol_header(request.metadata())?;
        let caller = match protocol::presented_token(request.metadata()) {
            None => return Err(Status::unauthenticated("missing bearer token")),
            Some(token) if bool::from(token.as_bytes().ct_eq(self.admin_token.as_bytes())) => {
                Caller {
                    name: ADMIN_NAME.to_owned(),
                    admin: true,
                    token_hash: None,
                }
            }
            // Looked up by hash: what varies with the presented token is a hash of it.
            Some(token) => {
                let hash = token_hash(token);
                let book = self.book.borrow();
                let Some(named) = book.by_hash.get(&hash) else {
                    return Err(Status::unauthenticated("wrong bearer token"));
                };
                if let Some(refusal) = book.refusal(&hash) {
                    return Err(Status::unauthenticated(refusal));
                }
                Caller {
                    name: named.name.clone(),
                    admin: named.admin,
                    token_hash: Some(hash),
                }
            }
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    /// Resolves, with the status to end a stream with, once `caller`'s token is revoked; never
    /// for the worker's own token.
    pub fn revoked(&self, caller: &Caller) -> impl Future<Output = Status> + Send + 'static {
        let mut book = self.book.clone();
        let hash = caller.token_hash.clone();
        async move {
            let Some(hash) = hash else {
                return std::future::pending().await;
            };
            loop {
                if let Some(refusal) = book.borrow_and_update().refusal(&hash) {
                    return Status::unauthenticated(refusal);
                }
                if book.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        }
    }
}

/// Publishes the token file's content whenever the file changes (`worker token` replaces it
/// whole, so a new inode or time or size shows each change). A file that cannot be read keeps
/// the tokens read before, with an error in the log.
async fn follow_tokens(path: PathBuf, mut seen: FileStamp, sender: watch::Sender<Arc<Book>>) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(TOKENS_POLL) => {}
            () = sender.closed() => return,
        }
        let stamp = file_stamp(&path);
        if stamp == seen {
            continue;
        }
        seen = stamp;
        match Book::load(&path) {
            Ok(book) => {
                tracing::info!(tokens = book.by_hash.len(), "token file read again");
                sender.send_replace(Arc::new(book));
            }
            Err(error) => {
                tracing::error!(%error, "token file unreadable; the tokens read before stay")
            }
        }
    }
}

type FileStamp = Option<(SystemTime, u64, u64)>;

fn file_stamp(path: &Path) -> FileStamp {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Some((metadata.modified().ok()?, metadata.len(), inode))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::{add_token, revoke_token, tokens_path};

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

    fn caller(guard: &Guard, token: &str) -> std::result::Result<Caller, Status> {
        let request = guard.check(request(Some(token), None))?;
        Caller::of(&request)
    }

    #[tokio::test]
    async fn token_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::start("secret", tokens_path(dir.path())).unwrap();
        let admin = caller(&guard, "secret").unwrap();
        assert!(admin.admin && admin.name == ADMIN_NAME);
        let wrong = guard.check(request(Some("secreT"), None)).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        let missing = guard.check(request(None, None)).unwrap_err();
        assert_eq!(missing.code(), tonic::Code::Unauthenticated);
        assert!(missing.message().contains("missing"));
    }

    #[tokio::test]
    async fn other_protocol_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let guard = Guard::start("secret", tokens_path(dir.path())).unwrap();
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

    #[tokio::test]
    async fn a_named_token_speaks_for_its_name_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = tokens_path(dir.path());
        let alice = add_token(&path, "alice", false).unwrap();
        let guard = Guard::start("secret", path.clone()).unwrap();
        let who = caller(&guard, &alice).unwrap();
        assert_eq!(who.name, "alice");
        assert!(!who.admin && who.may_see("alice") && !who.may_see("bob"));

        // A token added while the worker runs works within a poll; revoking one ends what
        // waits on `revoked` and refuses it by name.
        let bob = add_token(&path, "bob", true).unwrap();
        let ended = tokio::spawn(guard.revoked(&who));
        tokio::time::sleep(TOKENS_POLL * 3).await;
        assert!(caller(&guard, &bob).unwrap().admin);
        assert!(!ended.is_finished());
        revoke_token(&path, "alice").unwrap();
        let status = tokio::time::timeout(TOKENS_POLL * 5, ended)
            .await
            .expect("the stream ends once the token is revoked")
            .unwrap();
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(
            status.message().contains("`alice` was revoked"),
            "{status:?}"
        );
        let refused = caller(&guard, &alice).unwrap_err();
        assert!(
            refused.message().contains("`alice` was revoked"),
            "{refused:?}"
        );
        assert!(caller(&guard, &bob).is_ok());
    }
}
