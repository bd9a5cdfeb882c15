//! Job messages as JSON for `--json` output (stable keys, snake_case like the worker's
//! `state.json`). Events print as the worker's `events.jsonl` lines (`easel_events`).

use easel_proto::v1 as pb;
use serde_json::{Value, json};

pub fn job(job: &pb::Job) -> Value {
    json!({
        "id": job.id,
        "name": job.name,
        "state": job.state().name(),
        "reason": job.reason,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "device": job.device,
        "epochs_total": job.epochs_total,
        "epochs_done": job.epochs_done,
        "best_validation_accuracy": job.best_validation_accuracy,
        "test_accuracy": job.test_accuracy,
        "last_sequence": job.last_sequence,
        "dataset_images": job.dataset_images,
        "dataset_bytes": job.dataset_bytes,
        "store_url": job.store_url,
        "owner": job.owner,
        "sweep_id": (!job.sweep_id.is_empty()).then_some(&job.sweep_id),
        "best_validation_loss": job.best_validation_loss,
        "slurm_job_id": (!job.slurm_job_id.is_empty()).then_some(&job.slurm_job_id),
    })
}
