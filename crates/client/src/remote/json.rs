//! Protocol messages as JSON for `--json` output (stable keys, snake_case like the worker's
//! events.jsonl).

use easel_proto::v1 as pb;
use serde_json::{Value, json};

pub fn state_name(state: i32) -> &'static str {
    match pb::JobState::try_from(state).unwrap_or(pb::JobState::Unspecified) {
        pb::JobState::Queued => "queued",
        pb::JobState::Running => "running",
        pb::JobState::Succeeded => "succeeded",
        pb::JobState::Failed => "failed",
        pb::JobState::Cancelled => "cancelled",
        pb::JobState::Unspecified => "unknown",
    }
}

pub fn outcome_name(outcome: i32) -> &'static str {
    match pb::Outcome::try_from(outcome).unwrap_or(pb::Outcome::Unspecified) {
        pb::Outcome::Succeeded => "succeeded",
        pb::Outcome::Failed => "failed",
        pb::Outcome::Cancelled => "cancelled",
        pb::Outcome::Interrupted => "interrupted",
        pb::Outcome::Unspecified => "unknown",
    }
}

pub fn job(job: &pb::Job) -> Value {
    json!({
        "id": job.id,
        "name": job.name,
        "state": state_name(job.state),
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
    })
}

pub fn event(event: &pb::JobEvent) -> Value {
    use pb::job_event::Kind;
    let (kind, body) = match &event.kind {
        Some(Kind::Queued(q)) => ("queued", json!({"position": q.position})),
        Some(Kind::Started(s)) => (
            "started",
            json!({"device": s.device, "classes": s.classes, "train_images": s.train_images,
                   "validation_images": s.validation_images, "test_images": s.test_images,
                   "epochs": s.epochs, "start_epoch": s.start_epoch}),
        ),
        Some(Kind::Step(s)) => (
            "step",
            json!({"epoch": s.epoch, "step": s.step, "steps_per_epoch": s.steps_per_epoch, "loss": s.loss}),
        ),
        Some(Kind::Epoch(e)) => (
            "epoch",
            json!({"epoch": e.epoch, "train_loss": e.train_loss, "train_accuracy": e.train_accuracy,
                   "validation_loss": e.validation_loss, "validation_accuracy": e.validation_accuracy,
                   "images_per_second": e.images_per_second, "seconds": e.seconds}),
        ),
        Some(Kind::CheckpointWritten(c)) => (
            "checkpoint_written",
            json!({"epoch": c.epoch, "name": c.name}),
        ),
        Some(Kind::ArtifactWritten(a)) => (
            "artifact_written",
            json!({"name": a.name, "bytes": a.bytes}),
        ),
        Some(Kind::ArtifactStored(a)) => {
            ("artifact_stored", json!({"name": a.name, "bytes": a.bytes}))
        }
        Some(Kind::ArtifactRetry(a)) => (
            "artifact_retry",
            json!({"name": a.name, "attempt": a.attempt, "error": a.error}),
        ),
        Some(Kind::Note(n)) => ("note", json!({"message": n.message})),
        Some(Kind::Finished(f)) => (
            "finished",
            json!({"outcome": outcome_name(f.outcome), "reason": f.reason,
                   "report": serde_json::from_str::<Value>(&f.report_json).unwrap_or(Value::Null)}),
        ),
        None => ("unknown", json!({})),
    };
    let mut value = json!({"sequence": event.sequence, "time": event.time, "kind": kind});
    if let (Value::Object(map), Value::Object(extra)) = (&mut value, body) {
        map.extend(extra);
    }
    value
}
