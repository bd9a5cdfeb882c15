//! The vocabulary of a job's life, defined once. The engine emits the training events, the
//! worker adds the queue's and the store's, logs them to `events.jsonl` and streams them (the
//! protocol's `JobEvent` converts to and from [`EventRecord`] in `easel-proto`), and the client
//! prints them and writes the same JSON lines for `client train --local` and `watch --json`.
//!
//! One JSON shape everywhere: an [`EventRecord`] is `{"sequence":N,"time":"…","kind":"…",…}`
//! with the kind's fields flattened beside.

mod log_file;

pub use log_file::{EventWriter, LogContents, LogDamage, read_appended_log, read_log};

use serde::{Deserialize, Serialize};

/// One event with its place in the job's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    /// 1-based, consecutive within a job (across restarts and resumptions).
    pub sequence: u64,
    /// RFC 3339 UTC with milliseconds ([`now`]).
    pub time: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The worker queued the job behind `position` others.
    Queued {
        position: u32,
    },
    Started(RunInfo),
    /// Throttled: at most every few seconds (reading the loss costs a host sync).
    Step(StepProgress),
    Epoch(EpochMetrics),
    /// A resumable checkpoint was written under the run directory.
    CheckpointWritten {
        epoch: u32,
        name: String,
    },
    /// A finished artifact file (path relative to the run directory) is complete on disk and may
    /// be copied to object storage.
    ArtifactWritten {
        name: String,
        bytes: u64,
    },
    /// The worker copied an artifact to the object store.
    ArtifactStored {
        name: String,
        bytes: u64,
    },
    /// Storing an artifact failed for a transient reason and is retried.
    ArtifactRetry {
        name: String,
        attempt: u32,
        error: String,
    },
    /// Human-readable note (e.g. "backbone unfrozen", "early stopping at epoch 7").
    Note {
        message: String,
    },
    Finished {
        outcome: Outcome,
        reason: String,
        /// The run's `report.json`, when it succeeded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        report: Option<Box<RunReport>>,
    },
}

impl EventKind {
    /// The job is over for good (an interruption is not: the job will resume).
    pub fn ends_job(&self) -> bool {
        matches!(self, EventKind::Finished { outcome, .. } if *outcome != Outcome::Interrupted)
    }
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

impl Outcome {
    /// The word users see (`job succeeded`), the same as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::Cancelled => "cancelled",
            Outcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub device: String,
    pub classes: Vec<String>,
    pub train_images: u64,
    pub validation_images: u64,
    pub test_images: u64,
    pub parameters: u64,
    pub trainable_parameters: u64,
    pub steps_per_epoch: u64,
    pub epochs: u32,
    /// First epoch this run trains, 1-based (greater than 1 when resumed from a checkpoint).
    pub start_epoch: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepProgress {
    pub epoch: u32,
    pub step: u64,
    pub steps_per_epoch: u64,
    #[serde(deserialize_with = "null_as_nan")]
    pub loss: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub images_per_second: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: u32,
    #[serde(deserialize_with = "null_as_nan")]
    pub train_loss: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub train_accuracy: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub validation_loss: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub validation_accuracy: f64,
    /// Validation accuracy per class, in class order.
    #[serde(deserialize_with = "nulls_as_nan")]
    pub per_class_accuracy: Vec<f64>,
    /// Validation confusion matrix: `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    #[serde(deserialize_with = "null_as_nan")]
    pub images_per_second: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub learning_rate: f64,
    #[serde(deserialize_with = "null_as_nan")]
    pub seconds: f64,
}

/// A run's `report.json`, written last; a job's `finished` event carries it when the run
/// succeeded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    pub name: String,
    pub classes: Vec<String>,
    pub device: String,
    pub epochs_run: u32,
    pub best_epoch: u32,
    #[serde(deserialize_with = "null_as_nan")]
    pub best_validation_accuracy: f64,
    pub final_metrics: EpochMetrics,
    pub test_accuracy: Option<f64>,
    pub test_loss: Option<f64>,
    pub stopped_early: bool,
    #[serde(deserialize_with = "null_as_nan")]
    pub seconds: f64,
    pub dataset_digest: String,
}

/// JSON has no NaN or infinity, so serde_json writes them as `null`; a diverging run's losses
/// are NaN, and its events and report must still read back: `null` reads as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(from: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(from)?.unwrap_or(f64::NAN))
}

/// [`null_as_nan`] for each number of a list.
fn nulls_as_nan<'de, D: serde::Deserializer<'de>>(from: D) -> Result<Vec<f64>, D::Error> {
    let numbers = Vec::<Option<f64>>::deserialize(from)?;
    Ok(numbers.into_iter().map(|n| n.unwrap_or(f64::NAN)).collect())
}

/// RFC 3339 UTC with milliseconds, the time format of events and job records.
pub fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_diverged_runs_report_reads_back_with_its_nan_losses() {
        let metrics = EpochMetrics {
            epoch: 2,
            train_loss: f64::NAN,
            train_accuracy: 0.5,
            validation_loss: f64::INFINITY,
            validation_accuracy: 0.5,
            per_class_accuracy: vec![f64::NAN, 1.0],
            confusion: vec![vec![1, 0], vec![0, 1]],
            images_per_second: 10.0,
            learning_rate: 0.1,
            seconds: 1.0,
        };
        let finished = EventKind::Finished {
            outcome: Outcome::Succeeded,
            reason: String::new(),
            report: Some(Box::new(RunReport {
                name: "diverged".into(),
                classes: vec!["a".into(), "b".into()],
                device: "cpu".into(),
                epochs_run: 2,
                best_epoch: 1,
                best_validation_accuracy: 0.5,
                final_metrics: metrics,
                test_accuracy: None,
                test_loss: None,
                stopped_early: false,
                seconds: 2.0,
                dataset_digest: "d".into(),
            })),
        };
        let line = serde_json::to_string(&finished).unwrap();
        let EventKind::Finished {
            report: Some(report),
            ..
        } = serde_json::from_str(&line).unwrap()
        else {
            panic!("not a finished event with a report: {line}");
        };
        let read = &report.final_metrics;
        assert!(
            read.train_loss.is_nan() && read.validation_loss.is_nan(),
            "{line}"
        );
        assert!(read.per_class_accuracy[0].is_nan(), "{line}");
        assert_eq!(read.per_class_accuracy[1], 1.0);
        assert_eq!(report.best_validation_accuracy, 0.5);
    }

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

    #[test]
    fn only_a_final_outcome_ends_a_job() {
        let finished = |outcome| EventKind::Finished {
            outcome,
            reason: String::new(),
            report: None,
        };
        assert!(finished(Outcome::Succeeded).ends_job());
        assert!(finished(Outcome::Cancelled).ends_job());
        assert!(!finished(Outcome::Interrupted).ends_job());
        assert!(
            !EventKind::Note {
                message: "x".into()
            }
            .ends_job()
        );
        assert_eq!(
            serde_json::to_value(Outcome::Interrupted).unwrap(),
            Outcome::Interrupted.name()
        );
    }
}
