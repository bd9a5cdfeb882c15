//! The laptop side of Easel as a library. The `client` binary is a thin `main` over [`cli::Cli`];
//! tests use the same code (config profiles, the event view, the SSH fleet helpers) instead of
//! re-writing it.
//!
//! - [`local`]: `validate`, `train --local`, `evaluate`, `predict` (the engine, on this machine;
//!   behind the default `engine` feature, so a submit-only client builds without libtorch).
//! - [`remote`]: the verbs that talk to a worker: submit, watch, status, list, cancel, rm, fetch.
//! - [`fleet`]: `client up/down/workers`, a worker on any machine reachable over SSH.
//! - [`config`]: `client.toml` and its worker profiles.
//! - [`render`]: how events look, the same for local and remote runs.

pub mod cli;
pub mod config;
pub mod fleet;
pub mod format;
#[cfg(feature = "engine")]
pub mod local;
pub mod remote;
pub mod render;
pub mod report;
pub mod spec_data;
pub mod version;
