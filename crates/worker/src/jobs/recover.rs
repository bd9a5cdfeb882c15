//! What a (re)start finds on disk: every job with its true state. A job that was running when the
//! worker stopped is queued again when its checkpoint lets it resume, and failed with reason
//! "worker restarted" otherwise. A job the worker died under `max_restarts` times already fails
//! instead (it may be what takes the worker down); one that is resumed waits behind the jobs
//! already queued.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use easel_spec::outputs;

use super::job::Job;
use super::record::{JobRecord, JobState, STATE_FILE};
use crate::error::{Error, Result};
use easel_events::now;
use easel_events::{EventKind, Outcome};

pub(crate) struct Recovered {
    pub jobs: BTreeMap<String, Arc<Job>>,
    pub queue: VecDeque<String>,
    pub by_key: HashMap<String, String>,
}

pub(crate) fn load_jobs(jobs_dir: &Path, max_restarts: u32) -> Result<Recovered> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(jobs_dir).map_err(|e| Error::io(jobs_dir, e))? {
        let dir = entry.map_err(|e| Error::io(jobs_dir, e))?.path();
        if !dir.join(STATE_FILE).is_file() {
            continue;
        }
        match JobRecord::load(&dir) {
            Ok(record) => records.push((dir, record)),
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "job state unreadable; skipped")
            }
        }
    }
    records.sort_by(|a, b| {
        a.1.created_at
            .cmp(&b.1.created_at)
            .then(a.1.id.cmp(&b.1.id))
    });
    let mut recovered = Recovered {
        jobs: BTreeMap::new(),
        queue: VecDeque::new(),
        by_key: HashMap::new(),
    };
    let mut resumed_after_crash = Vec::new();
    for (dir, record) in records {
        let id = record.id.clone();
        let job = Arc::new(Job::open(dir, record)?);
        let record = job.snapshot();
        if record.state == JobState::Running {
            if record.crash_restarts >= max_restarts {
                let reason = format!(
                    "the worker stopped {} times while this job ran (queue.max_restarts = \
                     {max_restarts}); it is not resumed again",
                    record.crash_restarts + 1
                );
                job.emit(EventKind::Finished {
                    outcome: Outcome::Failed,
                    reason: reason.clone(),
                    report: None,
                });
                job.update(|r| {
                    r.state = JobState::Failed;
                    r.reason = reason;
                    r.finished_at = Some(now());
                })?;
            } else if job.run_dir().join(outputs::CHECKPOINT).is_file() {
                let restart = record.crash_restarts + 1;
                job.emit(EventKind::Note {
                    message: format!(
                        "worker restarted; the job is queued to resume from its last checkpoint \
                         (restart {restart} of at most {max_restarts})"
                    ),
                });
                job.update(|r| {
                    r.state = JobState::Queued;
                    r.reason = "worker restarted; resumes from its last checkpoint".into();
                    r.crash_restarts = restart;
                })?;
                resumed_after_crash.push(id.clone());
            } else {
                job.emit(EventKind::Finished {
                    outcome: Outcome::Failed,
                    reason: "worker restarted".into(),
                    report: None,
                });
                job.update(|r| {
                    r.state = JobState::Failed;
                    r.reason = "worker restarted".into();
                    r.finished_at = Some(now());
                })?;
            }
        }
        let record = job.snapshot();
        if record.state.is_terminal() {
            job.log.settle();
        }
        if record.state == JobState::Queued && !resumed_after_crash.contains(&id) {
            recovered.queue.push_back(id.clone());
        }
        if !record.idempotency_key.is_empty() {
            recovered.by_key.insert(
                super::record::owned_key(&record.owner, &record.idempotency_key),
                id.clone(),
            );
        }
        recovered.jobs.insert(id, job);
    }
    // Behind the jobs that were waiting: if it is what brought the worker down, they run first.
    recovered.queue.extend(resumed_after_crash);
    tracing::info!(
        jobs = recovered.jobs.len(),
        queued = recovered.queue.len(),
        "jobs loaded"
    );
    Ok(recovered)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job folder as a worker that died mid-run leaves it: `state` and, if asked, a checkpoint.
    fn left_behind(jobs: &Path, id: &str, state: JobState, crash_restarts: u32, checkpoint: bool) {
        let dir = jobs.join(id);
        let record: JobRecord = serde_json::from_value(serde_json::json!({
            "id": id,
            "name": id,
            "state": state,
            "created_at": format!("2026-12-03T00:00:0{}Z", id.len()),
            "epochs_total": 5,
            "dataset_images": 10,
            "dataset_bytes": 1000,
            "store_url": "memory://",
            "crash_restarts": crash_restarts,
        }))
        .unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        record.save(&dir).unwrap();
        if checkpoint {
            let path = dir
                .join(super::super::job::RUN_DIR)
                .join(outputs::CHECKPOINT);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, b"checkpoint").unwrap();
        }
    }

    #[test]
    fn a_job_the_worker_keeps_dying_under_is_resumed_max_restarts_times_then_failed() {
        let dir = tempfile::tempdir().unwrap();
        left_behind(dir.path(), "a", JobState::Running, 0, true);
        left_behind(dir.path(), "bb", JobState::Queued, 0, false);
        left_behind(dir.path(), "ccc", JobState::Running, 3, true);

        let recovered = load_jobs(dir.path(), 3).unwrap();
        // The crashed job resumes, behind the one that was waiting.
        assert_eq!(recovered.queue, ["bb", "a"]);
        let resumed = recovered.jobs["a"].snapshot();
        assert_eq!(
            (resumed.state, resumed.crash_restarts),
            (JobState::Queued, 1)
        );
        let looping = recovered.jobs["ccc"].snapshot();
        assert_eq!(looping.state, JobState::Failed);
        assert!(
            looping.reason.contains("stopped 4 times")
                && looping.reason.contains("queue.max_restarts = 3"),
            "{}",
            looping.reason
        );
        drop(recovered);

        // Dying under it again counts again; past the limit, it fails too.
        let record = JobRecord::load(&dir.path().join("a")).unwrap();
        let mut running = record.clone();
        running.state = JobState::Running;
        running.save(&dir.path().join("a")).unwrap();
        let again = load_jobs(dir.path(), 1).unwrap();
        assert_eq!(again.jobs["a"].snapshot().state, JobState::Failed);
    }
}
