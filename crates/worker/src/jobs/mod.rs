//! Jobs: their persisted records and event logs, the queue and its scheduling onto devices
//! (`manager.rs`), and each job's run (`run.rs`: inputs staged, training started in its
//! process, artifacts published to the store).
//!
//! Arrows point one way: the manager (queue, scheduling, cancel, watch) uses the run, resume and
//! recovery modules; they take a [`JobContext`] and a [`Job`] and never see the manager.

pub mod context;
pub mod job;
pub mod log;
pub mod manager;
mod object_dataset;
mod publish;
mod reclaim;
pub mod record;
mod recover;
pub mod resume;
pub(crate) mod run;
pub(crate) mod staging;
pub mod submission;
pub mod sweep;

pub use context::JobContext;
pub use easel_events::{EventKind, EventRecord, Outcome, now};
pub use job::Job;
pub use log::EventLog;
pub use manager::{JobManager, SubmitOutcome};
pub use reclaim::Reclaimed;
pub use record::{JobRecord, JobState};
