//! The verbs that talk to a worker (or straight to an object store): submit, watch, status,
//! list, cancel, fetch.

pub mod cancel;
mod connection;
mod dataset;
pub mod fetch;
mod follow;
mod json;
pub mod list;
mod pinning;
pub mod status;
pub mod submit;
mod upload;
pub mod watch;

/// Runs an async verb on a fresh runtime (the CLI itself is synchronous).
fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(future)
}
