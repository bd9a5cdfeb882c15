//! The verbs that talk to a worker (or straight to an object store): submit, watch, status,
//! list, cancel, fetch, rm; and the hello that `client up` and `client workers` use as a health check.

mod blob_messages;
pub mod cancel;
mod connection;
mod dataset;
pub mod fetch;
mod follow;
mod json;
pub mod list;
pub mod remove;
pub mod status;
pub mod submit;
pub mod sweep;
mod upload;
pub mod watch;

pub use connection::WorkerArgs;

/// Connects and says hello, giving up after `timeout` (a port that accepts but never answers).
pub async fn hello_within(
    worker: &WorkerArgs,
    timeout: std::time::Duration,
) -> anyhow::Result<easel_proto::v1::HelloResponse> {
    match tokio::time::timeout(timeout, worker.connect()).await {
        Ok(connected) => Ok(connected?.hello),
        Err(_) => Err(anyhow::anyhow!("no answer within {} s", timeout.as_secs())),
    }
}

/// `hello_within` for synchronous callers.
pub fn hello(
    worker: &WorkerArgs,
    timeout: std::time::Duration,
) -> anyhow::Result<easel_proto::v1::HelloResponse> {
    block_on(hello_within(worker, timeout))
}

/// Runs an async verb on a fresh runtime (the CLI itself is synchronous).
pub(crate) fn block_on<T>(
    future: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(future)
}
