//! A job's events as persisted in `events.jsonl` (one JSON object per line, with its sequence).

use easel_engine::{EpochMetrics, RunInfo, StepProgress, TrainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub sequence: u64,
    pub time: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
    /// The worker stopped; the job is queued again and resumes from its checkpoint.
    Interrupted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Queued {
        position: u32,
    },
    Started(RunInfo),
    Step(StepProgress),
    Epoch(EpochMetrics),
    CheckpointWritten {
        epoch: u32,
        name: String,
    },
    ArtifactWritten {
        name: String,
        bytes: u64,
    },
    ArtifactStored {
        name: String,
        bytes: u64,
    },
    ArtifactRetry {
        name: String,
        attempt: u32,
        error: String,
    },
    Note {
        message: String,
    },
    Finished {
        outcome: Outcome,
        reason: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<serde_json::Value>,
    },
}

impl EventKind {
    /// The job is over for good (an interruption is not: the job will resume).
    pub fn ends_job(&self) -> bool {
        matches!(self, EventKind::Finished { outcome, .. } if *outcome != Outcome::Interrupted)
    }
}

impl From<TrainEvent> for EventKind {
    fn from(event: TrainEvent) -> Self {
        match event {
            TrainEvent::Started(info) => EventKind::Started(info),
            TrainEvent::Step(step) => EventKind::Step(step),
            TrainEvent::Epoch(metrics) => EventKind::Epoch(metrics),
            TrainEvent::CheckpointWritten { epoch, name } => {
                EventKind::CheckpointWritten { epoch, name }
            }
            TrainEvent::ArtifactWritten { name, bytes } => {
                EventKind::ArtifactWritten { name, bytes }
            }
            TrainEvent::Note { message } => EventKind::Note { message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_as_flat_json() {
        let record = EventRecord {
            sequence: 3,
            time: "2026-01-01T00:00:00.000Z".into(),
            kind: EventKind::ArtifactStored {
                name: "weights/best.safetensors".into(),
                bytes: 10,
            },
        };
        let line = serde_json::to_string(&record).unwrap();
        assert!(line.contains("\"kind\":\"artifact_stored\""), "{line}");
        assert!(line.contains("\"sequence\":3"), "{line}");
        assert_eq!(serde_json::from_str::<EventRecord>(&line).unwrap(), record);
    }
}
