//! Domain values to protocol messages.

use easel_proto::v1 as pb;

use crate::jobs::{EventKind, EventRecord, JobRecord, JobState, Outcome};

pub fn job(record: &JobRecord) -> pb::Job {
    pb::Job {
        id: record.id.clone(),
        name: record.name.clone(),
        state: job_state(record.state) as i32,
        reason: record.reason.clone(),
        created_at: record.created_at.clone(),
        started_at: record.started_at.clone().unwrap_or_default(),
        finished_at: record.finished_at.clone().unwrap_or_default(),
        device: record.device.clone(),
        epochs_total: record.epochs_total,
        epochs_done: record.epochs_done,
        best_validation_accuracy: record.best_validation_accuracy,
        test_accuracy: record.test_accuracy,
        last_sequence: record.last_sequence,
        dataset_images: record.dataset_images,
        dataset_bytes: record.dataset_bytes,
        store_url: record.store_url.clone(),
    }
}

fn job_state(state: JobState) -> pb::JobState {
    match state {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

pub fn event(record: EventRecord) -> pb::JobEvent {
    use pb::job_event::Kind;
    let kind = match record.kind {
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
            outcome: match outcome {
                Outcome::Succeeded => pb::Outcome::Succeeded,
                Outcome::Failed => pb::Outcome::Failed,
                Outcome::Cancelled => pb::Outcome::Cancelled,
                Outcome::Interrupted => pb::Outcome::Interrupted,
            } as i32,
            reason,
            report_json: report.map(|r| r.to_string()).unwrap_or_default(),
        }),
    };
    pb::JobEvent {
        sequence: record.sequence,
        time: record.time,
        kind: Some(kind),
    }
}
