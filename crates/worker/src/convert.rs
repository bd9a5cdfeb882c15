//! Job records to protocol messages (events convert in `easel_proto::events`).

use easel_proto::v1 as pb;

use crate::jobs::{JobRecord, JobState};

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
