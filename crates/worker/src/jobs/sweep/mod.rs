//! Sweeps: many trials submitted as one. A sweep is a record (`record.rs`) naming its trials,
//! each an ordinary job with its own folder, events, artifacts and resume; the manager
//! (`manager/sweeps.rs`) queues, cancels and removes them together. `standings.rs` ranks the
//! trials by the sweep's metric; `referee.rs` stops a trial that falls behind the others.

pub mod record;
pub mod referee;
pub mod standings;

pub use record::{SweepRecord, TrialRecord};
pub use referee::Referee;
pub use standings::{Standing, Standings};
