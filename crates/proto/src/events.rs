//! [`JobEvent`](crate::v1::JobEvent) to and from the one event vocabulary
//! ([`easel_events::EventRecord`]): the worker sends what it logged, the client gets back
//! exactly that record, so `watch --json` prints the lines of the worker's `events.jsonl`.

use easel_events::{EpochMetrics, EventKind, EventRecord, Outcome, RunInfo, StepProgress};

use crate::v1 as pb;
use crate::v1::job_event::Kind;

impl From<EventRecord> for pb::JobEvent {
    fn from(record: EventRecord) -> Self {
        pb::JobEvent {
            sequence: record.sequence,
            time: record.time,
            kind: Some(kind_message(record.kind)),
        }
    }
}

/// The record a message carries; `None` for a message without a kind this build knows (a newer
/// worker's).
pub fn event_record(event: pb::JobEvent) -> Option<EventRecord> {
    Some(EventRecord {
        sequence: event.sequence,
        time: event.time,
        kind: event_kind(event.kind?)?,
    })
}

pub fn outcome_message(outcome: Outcome) -> pb::Outcome {
    match outcome {
        Outcome::Succeeded => pb::Outcome::Succeeded,
        Outcome::Failed => pb::Outcome::Failed,
        Outcome::Cancelled => pb::Outcome::Cancelled,
        Outcome::Interrupted => pb::Outcome::Interrupted,
    }
}

pub fn outcome(message: i32) -> Option<Outcome> {
    match pb::Outcome::try_from(message).ok()? {
        pb::Outcome::Succeeded => Some(Outcome::Succeeded),
        pb::Outcome::Failed => Some(Outcome::Failed),
        pb::Outcome::Cancelled => Some(Outcome::Cancelled),
        pb::Outcome::Interrupted => Some(Outcome::Interrupted),
        pb::Outcome::Unspecified => None,
    }
}

fn kind_message(kind: EventKind) -> Kind {
    match kind {
        EventKind::Queued { position } => Kind::Queued(pb::Queued { position }),
        EventKind::Started(info) => Kind::Started(pb::Started {
            device: info.device,
            classes: info.classes,
            train_images: info.train_images,
            validation_images: info.validation_images,
            test_images: info.test_images,
            parameters: info.parameters,
            trainable_parameters: info.trainable_parameters,
            steps_per_epoch: info.steps_per_epoch,
            epochs: info.epochs,
            start_epoch: info.start_epoch,
        }),
        EventKind::Step(step) => Kind::Step(pb::StepProgress {
            epoch: step.epoch,
            step: step.step,
            steps_per_epoch: step.steps_per_epoch,
            loss: step.loss,
            images_per_second: step.images_per_second,
        }),
        EventKind::Epoch(m) => Kind::Epoch(pb::EpochMetrics {
            epoch: m.epoch,
            train_loss: m.train_loss,
            train_accuracy: m.train_accuracy,
            validation_loss: m.validation_loss,
            validation_accuracy: m.validation_accuracy,
            per_class_accuracy: m.per_class_accuracy,
            confusion: m
                .confusion
                .into_iter()
                .map(|counts| pb::ConfusionRow { counts })
                .collect(),
            images_per_second: m.images_per_second,
            learning_rate: m.learning_rate,
            seconds: m.seconds,
        }),
        EventKind::CheckpointWritten { epoch, name } => {
            Kind::CheckpointWritten(pb::CheckpointWritten { epoch, name })
        }
        EventKind::ArtifactWritten { name, bytes } => {
            Kind::ArtifactWritten(pb::ArtifactWritten { name, bytes })
        }
        EventKind::ArtifactStored { name, bytes } => {
            Kind::ArtifactStored(pb::ArtifactStored { name, bytes })
        }
        EventKind::ArtifactRetry {
            name,
            attempt,
            error,
        } => Kind::ArtifactRetry(pb::ArtifactRetry {
            name,
            attempt,
            error,
        }),
        EventKind::Note { message } => Kind::Note(pb::Note { message }),
        EventKind::Finished {
            outcome,
            reason,
            report,
        } => Kind::Finished(pb::Finished {
            outcome: outcome_message(outcome) as i32,
            reason,
            report_json: report
                .and_then(|r| serde_json::to_string(&r).ok())
                .unwrap_or_default(),
        }),
    }
}

fn event_kind(kind: Kind) -> Option<EventKind> {
    Some(match kind {
        Kind::Queued(q) => EventKind::Queued {
            position: q.position,
        },
        Kind::Started(s) => EventKind::Started(RunInfo {
            device: s.device,
            classes: s.classes,
            train_images: s.train_images,
            validation_images: s.validation_images,
            test_images: s.test_images,
            parameters: s.parameters,
            trainable_parameters: s.trainable_parameters,
            steps_per_epoch: s.steps_per_epoch,
            epochs: s.epochs,
            start_epoch: s.start_epoch,
        }),
        Kind::Step(s) => EventKind::Step(StepProgress {
            epoch: s.epoch,
            step: s.step,
            steps_per_epoch: s.steps_per_epoch,
            loss: s.loss,
            images_per_second: s.images_per_second,
        }),
        Kind::Epoch(m) => EventKind::Epoch(EpochMetrics {
            epoch: m.epoch,
            train_loss: m.train_loss,
            train_accuracy: m.train_accuracy,
            validation_loss: m.validation_loss,
            validation_accuracy: m.validation_accuracy,
            per_class_accuracy: m.per_class_accuracy,
            confusion: m.confusion.into_iter().map(|row| row.counts).collect(),
            images_per_second: m.images_per_second,
            learning_rate: m.learning_rate,
            seconds: m.seconds,
        }),
        Kind::CheckpointWritten(c) => EventKind::CheckpointWritten {
            epoch: c.epoch,
            name: c.name,
        },
        Kind::ArtifactWritten(a) => EventKind::ArtifactWritten {
            name: a.name,
            bytes: a.bytes,
        },
        Kind::ArtifactStored(a) => EventKind::ArtifactStored {
            name: a.name,
            bytes: a.bytes,
        },
        Kind::ArtifactRetry(a) => EventKind::ArtifactRetry {
            name: a.name,
            attempt: a.attempt,
            error: a.error,
        },
        Kind::Note(n) => EventKind::Note { message: n.message },
        Kind::Finished(f) => EventKind::Finished {
            outcome: outcome(f.outcome)?,
            reason: f.reason,
            report: serde_json::from_str(&f.report_json).ok(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_events::RunReport;

    fn round_trip(kind: EventKind) {
        let record = EventRecord {
            sequence: 7,
            time: "2026-01-01T00:00:00.000Z".into(),
            kind,
        };
        let message = pb::JobEvent::from(record.clone());
        assert_eq!(event_record(message), Some(record));
    }

    #[test]
    fn every_kind_survives_the_wire() {
        round_trip(EventKind::Queued { position: 2 });
        round_trip(EventKind::Started(RunInfo {
            device: "cuda:0".into(),
            classes: vec!["a".into(), "b".into()],
            train_images: 10,
            validation_images: 2,
            test_images: 3,
            parameters: 100,
            trainable_parameters: 40,
            steps_per_epoch: 5,
            epochs: 4,
            start_epoch: 2,
        }));
        round_trip(EventKind::Step(StepProgress {
            epoch: 1,
            step: 3,
            steps_per_epoch: 5,
            loss: 0.5,
            images_per_second: 900.0,
        }));
        let metrics = EpochMetrics {
            epoch: 1,
            train_loss: 0.7,
            train_accuracy: 0.5,
            validation_loss: 0.6,
            validation_accuracy: 0.75,
            per_class_accuracy: vec![1.0, 0.5],
            confusion: vec![vec![2, 0], vec![1, 1]],
            images_per_second: 800.0,
            learning_rate: 0.01,
            seconds: 1.5,
        };
        round_trip(EventKind::Epoch(metrics.clone()));
        round_trip(EventKind::CheckpointWritten {
            epoch: 1,
            name: "checkpoints/last.ckpt".into(),
        });
        round_trip(EventKind::ArtifactWritten {
            name: "report.json".into(),
            bytes: 9,
        });
        round_trip(EventKind::ArtifactStored {
            name: "report.json".into(),
            bytes: 9,
        });
        round_trip(EventKind::ArtifactRetry {
            name: "report.json".into(),
            attempt: 2,
            error: "503".into(),
        });
        round_trip(EventKind::Note {
            message: "hello".into(),
        });
        round_trip(EventKind::Finished {
            outcome: Outcome::Succeeded,
            reason: String::new(),
            report: Some(Box::new(RunReport {
                name: "art".into(),
                classes: vec!["a".into(), "b".into()],
                device: "cuda:0".into(),
                epochs_run: 1,
                best_epoch: 1,
                best_validation_accuracy: 0.75,
                final_metrics: metrics,
                test_accuracy: Some(0.9),
                test_loss: Some(0.4),
                stopped_early: false,
                seconds: 3.0,
                dataset_digest: "d".into(),
            })),
        });
        round_trip(EventKind::Finished {
            outcome: Outcome::Interrupted,
            reason: "worker stopped".into(),
            report: None,
        });
    }

    #[test]
    fn a_message_without_a_known_kind_is_no_record() {
        let empty = pb::JobEvent {
            sequence: 1,
            time: String::new(),
            kind: None,
        };
        assert_eq!(event_record(empty), None);
    }
}
