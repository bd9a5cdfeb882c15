//! Jobs: their persisted records and event logs, the queue, and the runs themselves.

pub mod events;
pub mod log;
pub mod manager;
mod object_dataset;
pub mod record;
mod recover;
pub mod resume;
mod runner;
mod uploader;

pub use events::{EventKind, EventRecord, Outcome};
pub use log::EventLog;
pub use manager::{JobManager, SubmitOutcome};
pub use record::{JobRecord, JobState};

/// RFC 3339 UTC with milliseconds, the time format of records and events.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}
