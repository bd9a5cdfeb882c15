//! Job records and upload outcomes to protocol messages (events convert in
//! `easel_proto::events`).

use easel_proto::v1 as pb;

use crate::jobs::JobRecord;
use crate::storage::blobs::ChunkOutcome;

pub fn job(record: &JobRecord) -> pb::Job {
    pb::Job {
        id: record.id.clone(),
        name: record.name.clone(),
        state: record.state as i32,
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
        owner: record.owner.clone(),
        sweep_id: record.sweep_id.clone(),
        best_validation_loss: record.best_validation_loss,
        slurm_job_id: record.slurm_job_id.clone(),
    }
}

/// Unfinished blobs one UploadBlobs answer lists at most: the answer must not grow with the
/// dataset (the client knows what it sent; the first few say enough about what went wrong).
const MAX_REPORTED_INCOMPLETE: usize = 1000;

/// What one UploadBlobs call did: the distinct blobs it finished, the bytes it wrote, and how
/// far each unfinished blob got.
#[derive(Default)]
pub struct UploadProgress {
    completed: std::collections::HashSet<String>,
    bytes_written: u64,
    incomplete: std::collections::BTreeMap<String, u64>,
}

impl UploadProgress {
    pub fn record(&mut self, digest: String, outcome: ChunkOutcome) {
        self.bytes_written += outcome.bytes_written;
        if outcome.complete {
            self.incomplete.remove(&digest);
            self.completed.insert(digest);
        } else {
            self.incomplete.insert(digest, outcome.committed_offset);
        }
    }

    pub fn response(self) -> pb::UploadBlobsResponse {
        pb::UploadBlobsResponse {
            completed: self.completed.len() as u64,
            bytes_written: self.bytes_written,
            incomplete: self
                .incomplete
                .into_iter()
                .take(MAX_REPORTED_INCOMPLETE)
                .map(|(digest, committed_offset)| pb::BlobResult {
                    digest,
                    committed_offset,
                    complete: false,
                    bytes_written: 0,
                })
                .collect(),
        }
    }
}

/// A sweep and its trials as they stand, best first.
pub fn sweep(
    record: &crate::jobs::sweep::SweepRecord,
    standings: &crate::jobs::sweep::Standings,
    created: bool,
) -> pb::Sweep {
    pb::Sweep {
        id: record.id.clone(),
        name: record.name.clone(),
        metric: record.metric.name().to_owned(),
        method: match record.method {
            easel_spec::sweep::SweepMethod::Grid => "grid",
            easel_spec::sweep::SweepMethod::Random => "random",
        }
        .to_owned(),
        early_stop: match record.early_stop {
            Some(easel_spec::sweep::EarlyStopRule::Median) => "median",
            None => "",
        }
        .to_owned(),
        max_concurrent: record.max_concurrent,
        created_at: record.created_at.clone(),
        owner: record.owner.clone(),
        trials: standings
            .rows
            .iter()
            .map(|row| pb::Trial {
                number: row.trial.number as u32,
                params: row
                    .trial
                    .params
                    .iter()
                    .map(|(key, value)| pb::SweepParam {
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                job: Some(job(&row.job)),
                metric: row.metric,
            })
            .collect(),
        best_job: standings.best.clone().unwrap_or_default(),
        created,
    }
}
