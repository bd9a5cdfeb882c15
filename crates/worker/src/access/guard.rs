//! Who is calling. Every request but health passes [`Guard::check`]: the protocol version and the
//! bearer token (both are per-request metadata, so one interceptor does both). The token is the
//! worker's own (`<data-dir>/token`, admin) or a named one from `tokens.json`; the [`Caller`] it
//! speaks for goes into the request's extensions for the service to check ownership against.
//! The token file is read again when it changes, and [`Guard::revoked`] lets a stream end the
//! moment its token is revoked. While the file cannot be read (damaged, unreadable) every named
//! token is refused and only the worker's own token works: fail closed, never the old list.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use easel_proto::protocol;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tonic::{Request, Status};

use crate::access::named_tokens::{ADMIN_NAME, NamedToken, read_tokens, token_hash};
use crate::error::Result;

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

/// The named tokens, by hash, or why none can be trusted.
#[derive(Default)]
struct Book {
    by_hash: HashMap<String, NamedToken>,
    /// Set when the token file could not be read: every named token is refused (fail closed)
    /// until the file reads again; the worker's own token still works, so an admin can repair.
    unreadable: Option<String>,
}

/// What a named token is told while the token file cannot be read (the log has the details).
const UNREADABLE_REFUSAL: &str = "the worker cannot read its named tokens (tokens.json; its log \
     says why), so it refuses them all until an admin repairs the file";

impl Book {
    /// The file's tokens; a file that cannot be read gives a book that refuses every one.
    fn load(path: &Path) -> Book {
        match read_tokens(path) {
            Ok(tokens) => Book {
                by_hash: tokens
                    .into_iter()
                    .map(|token| (token.blake3.clone(), token))
                    .collect(),
                unreadable: None,
            },
            Err(error) => Book {
                by_hash: HashMap::new(),
                unreadable: Some(error.to_string()),
            },
        }
    }

    /// Why a token of this hash is refused now; `None` while it is valid.
    fn refusal(&self, hash: &str) -> Option<String> {
        if self.unreadable.is_some() {
            return Some(UNREADABLE_REFUSAL.into());
        }
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

    /// Says in the log what this book means for named tokens.
    fn log(&self, when: &str) {
        match &self.unreadable {
            None => tracing::info!(tokens = self.by_hash.len(), when, "token file read"),
            Some(error) => tracing::error!(
                %error,
                when,
                "token file unreadable: every named token is refused until it reads again (the admin token in <data-dir>/token still works)"
            ),
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
    /// changes, for as long as a clone of the guard lives. A file that cannot be read does not
    /// stop the worker: named tokens are refused until it reads again.
    pub fn start(admin_token: &str, tokens_path: PathBuf) -> Guard {
        // Taken before the read: a change in between is read again at the first poll.
        let stamp = file_stamp(&tokens_path);
        let book = Book::load(&tokens_path);
        if book.unreadable.is_some() || !book.by_hash.is_empty() {
            book.log("start");
        }
        let (sender, receiver) = watch::channel(Arc::new(book));
        tokio::spawn(follow_tokens(tokens_path, stamp, sender));
        Guard {
            admin_token: admin_token.into(),
            book: receiver,
        }
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
                if book.unreadable.is_some() {
                    return Err(Status::unauthenticated(UNREADABLE_REFUSAL));
                }
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
/// whole, so a new inode or time or size shows each change; a `chmod` shows in the change time).
/// A file that cannot be read is published as such: named tokens are refused, never the ones
/// read before kept in force.
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
        let book = Book::load(&path);
        book.log("changed");
        sender.send_replace(Arc::new(book));
    }
}

/// Modification time, size, inode and change time (0 where the platform has none).
type FileStamp = Option<(SystemTime, u64, u64, i64, i64)>;

fn file_stamp(path: &Path) -> FileStamp {
    let metadata = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let (inode, changed, changed_nanos) = {
        use std::os::unix::fs::MetadataExt;
        (metadata.ino(), metadata.ctime(), metadata.ctime_nsec())
    };
    #[cfg(not(unix))]
    let (inode, changed, changed_nanos) = (0, 0, 0);
    Some((
        metadata.modified().ok()?,
        metadata.len(),
        inode,
        changed,
        changed_nanos,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::named_tokens::{add_token, revoke_token, tokens_path};

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
        let guard = Guard::start("secret", tokens_path(dir.path()));
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
        let guard = Guard::start("secret", tokens_path(dir.path()));
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

    /// Waits (in paused time) until the guard publishes the token file read again.
    async fn next_read(guard: &Guard) {
        let mut book = guard.book.clone();
        book.borrow_and_update();
        tokio::time::timeout(TOKENS_POLL * 30, book.changed())
            .await
            .expect("the guard publishes the token file once it changes")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreadable_token_file_refuses_every_named_token_but_not_the_admin() {
        let dir = tempfile::tempdir().unwrap();
        let path = tokens_path(dir.path());
        let alice = add_token(&path, "alice", false).unwrap();
        let intact = std::fs::read(&path).unwrap();
        let guard = Guard::start("secret", path.clone());
        let who = caller(&guard, &alice).unwrap();
        let ended = tokio::spawn(guard.revoked(&who));

        // Damaged while serving: the tokens read before are no longer trusted, open streams end.
        std::fs::write(&path, "{ not json").unwrap();
        next_read(&guard).await;
        let refused = caller(&guard, &alice).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        assert!(
            refused.message().contains("cannot read its named tokens"),
            "{refused:?}"
        );
        let status = tokio::time::timeout(TOKENS_POLL * 5, ended)
            .await
            .expect("a named token's stream ends once the file is unreadable")
            .unwrap();
        assert!(status.message().contains("cannot read its named tokens"));
        assert!(
            caller(&guard, "secret").unwrap().admin,
            "the admin can still repair"
        );

        // Repaired, the file's tokens work again.
        std::fs::write(&path, &intact).unwrap();
        next_read(&guard).await;
        assert_eq!(caller(&guard, &alice).unwrap().name, "alice");

        // A worker starting on a damaged file serves, with named tokens refused.
        std::fs::write(&path, [0xC3]).unwrap();
        let restarted = Guard::start("secret", path.clone());
        let refused = caller(&restarted, &alice).unwrap_err();
        assert!(
            refused.message().contains("cannot read its named tokens"),
            "{refused:?}"
        );
        assert!(caller(&restarted, "secret").is_ok());
    }

    #[tokio::test]
    async fn a_named_token_speaks_for_its_name_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let path = tokens_path(dir.path());
        let alice = add_token(&path, "alice", false).unwrap();
        let guard = Guard::start("secret", path.clone());
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
