//! The lines a training process writes on its stdout: one per event, then one saying how the
//! run ended.

use easel_engine::RunReport;
use easel_events::EventKind;
use serde::{Deserialize, Serialize};

use super::Ended;

/// One line of the child's stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(super) enum FromChild {
    Event { event: EventKind },
    Completed { report: Box<RunReport> },
    Cancelled { completed_epochs: u32 },
    Failed { error: String },
}

impl FromChild {
    pub(super) fn ended(self) -> Option<Ended> {
        match self {
            FromChild::Event { .. } => None,
            FromChild::Completed { report } => Some(Ended::Completed(report)),
            FromChild::Cancelled { completed_epochs } => {
                Some(Ended::Cancelled { completed_epochs })
            }
            FromChild::Failed { error } => Some(Ended::Failed(error)),
        }
    }
}
