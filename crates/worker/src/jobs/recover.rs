//! What a (re)start finds on disk: every job with its true state. A job that was running when the
//! worker stopped is queued again when its checkpoint lets it resume, and failed with reason
//! "worker restarted" otherwise.

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

pub(crate) fn load_jobs(jobs_dir: &Path) -> Result<Recovered> {
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
    for (dir, record) in records {
        let id = record.id.clone();
        let job = Arc::new(Job::open(dir, record)?);
        let state = job.snapshot().state;
        if state == JobState::Running {
            if job.run_dir().join(outputs::CHECKPOINT).is_file() {
                job.emit(EventKind::Note {
                    message:
                        "worker restarted; the job is queued to resume from its last checkpoint"
                            .into(),
                });
                job.update(|r| {
                    r.state = JobState::Queued;
                    r.reason = "worker restarted; resumes from its last checkpoint".into();
                })?;
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
        if record.state == JobState::Queued {
            recovered.queue.push_back(id.clone());
        }
        if !record.idempotency_key.is_empty() {
            recovered
                .by_key
                .insert(record.idempotency_key.clone(), id.clone());
        }
        recovered.jobs.insert(id, job);
    }
    tracing::info!(
        jobs = recovered.jobs.len(),
        queued = recovered.queue.len(),
        "jobs loaded"
    );
    Ok(recovered)
}
