//! What a (re)start finds on disk: every job with its true state. A job that was running when the
//! worker stopped is queued again when its checkpoint lets it resume, and failed with reason
//! "worker restarted" otherwise. A job the worker died under `max_restarts` times already fails
//! instead (it may be what takes the worker down); one that is resumed waits behind the jobs
//! already queued.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use easel_spec::outputs;

use super::job::{EVENTS_FILE, Ending, Job};
use super::record::{JobRecord, JobState, STATE_FILE};
use crate::error::{Error, Result};
use easel_events::{EventKind, LogContents};

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
        // One job's unreadable folder costs that job, never the worker's start.
        let (job, log_contents) = match Job::open_checked(dir.clone(), record) {
            Ok(opened) => opened,
            Err(error) => {
                tracing::error!(job = %id, dir = %dir.display(), %error, "job folder unreadable; the job is left out");
                continue;
            }
        };
        let job = Arc::new(job);
        fail_if_damaged(&job, &log_contents);
        drop(log_contents);
        let record = job.snapshot();
        let slurm_job = crate::training::slurm::submitted_as(&job.dir);
        if record.state == JobState::Running
            && let Some(slurm_job) = slurm_job
        {
            // It runs on the cluster, not in the worker that stopped: follow it again.
            job.emit(EventKind::Note {
                message: format!("worker restarted; following Slurm job {slurm_job} again"),
            });
            job.update_or_log(|r| {
                r.state = JobState::Queued;
                r.reason = format!("worker restarted; following Slurm job {slurm_job} again");
            });
        } else if record.state == JobState::Running {
            if record.crash_restarts >= max_restarts {
                let reason = format!(
                    "the worker stopped {} times while this job ran (queue.max_restarts = \
                     {max_restarts}); it is not resumed again",
                    record.crash_restarts + 1
                );
                fail(&job, reason);
            } else if job.run_dir().join(outputs::CHECKPOINT).is_file() {
                let restart = record.crash_restarts + 1;
                job.emit(EventKind::Note {
                    message: format!(
                        "worker restarted; the job is queued to resume from its last checkpoint \
                         (restart {restart} of at most {max_restarts})"
                    ),
                });
                job.update_or_log(|r| {
                    r.state = JobState::Queued;
                    r.reason = "worker restarted; resumes from its last checkpoint".into();
                    r.crash_restarts = restart;
                });
                resumed_after_crash.push(id.clone());
            } else {
                fail(&job, "worker restarted".into());
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

/// A log holding lines that are no events (something other than an append wrote it), or torn
/// after its job ended (a job's last line, `finished`, is flushed to disk before its state
/// says it ended), fails its job with what was found. Its readable events stay; the damaged
/// file is kept beside them. A torn last line of a job that was still running is what a crash
/// mid-append leaves: cut off, the job goes on.
fn fail_if_damaged(job: &Job, log: &LogContents) {
    let damage = &log.damage;
    let state = job.snapshot().state;
    let torn_after_the_end = damage.torn_tail_bytes > 0 && state.is_terminal();
    if !damage.has_unreadable_lines() && !torn_after_the_end {
        return;
    }
    let aside = match job.log.set_damage_aside(&log.events) {
        Ok(aside) => format!("; the damaged file is kept as {}", aside.display()),
        Err(error) => {
            tracing::warn!(job = %job.id, %error, "damaged event log not set aside");
            String::new()
        }
    };
    let reason = format!(
        "its event log {EVENTS_FILE} was damaged while the job was {} ({}); its {} readable \
         events are kept{aside}",
        state.name(),
        damage.describe(),
        job.log.last_sequence(),
    );
    tracing::error!(job = %job.id, reason, "job failed: damaged event log");
    fail(job, reason);
}

/// Ends a job a start found as failed.
fn fail(job: &Job, reason: String) {
    if let Err(error) = job.finish(Ending::failed(reason)) {
        tracing::error!(job = %job.id, %error, "job state not saved");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use easel_events::Outcome;

    /// A job folder as a worker that died mid-run leaves it: `state` and, if asked, a checkpoint.
    fn left_behind(jobs: &Path, id: &str, state: JobState, crash_restarts: u32, checkpoint: bool) {
        let dir = jobs.join(id);
        let record: JobRecord = serde_json::from_value(serde_json::json!({
            "id": id,
            "name": id,
            "state": state.name(),
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

    /// `left_behind`'s job with `events` logged, then `tail` appended as raw bytes.
    fn with_log(jobs: &Path, id: &str, events: &[EventKind], tail: &[u8]) -> std::path::PathBuf {
        let path = jobs.join(id).join(EVENTS_FILE);
        let (mut writer, _) = easel_events::EventWriter::open(path.clone()).unwrap();
        for event in events {
            writer.append(event.clone()).unwrap();
        }
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        std::io::Write::write_all(&mut file, tail).unwrap();
        path
    }

    fn note(message: &str) -> EventKind {
        EventKind::Note {
            message: message.into(),
        }
    }

    #[test]
    fn a_damaged_event_log_fails_its_job_alone_and_keeps_its_readable_events() {
        let dir = tempfile::tempdir().unwrap();
        left_behind(dir.path(), "a", JobState::Succeeded, 0, false);
        let succeeded = EventKind::Finished {
            outcome: Outcome::Succeeded,
            reason: String::new(),
            report: None,
        };
        // One byte past a finished job's last line: what a stray write leaves.
        let events = with_log(dir.path(), "a", &[note("epoch 1"), succeeded], b"\xc3");
        left_behind(dir.path(), "bb", JobState::Queued, 0, false);
        with_log(dir.path(), "bb", &[note("queued")], b"\xff\xfe garbage\n");
        left_behind(dir.path(), "ccc", JobState::Succeeded, 0, false);
        with_log(dir.path(), "ccc", &[note("fine")], b"");

        let recovered = load_jobs(dir.path(), 3).unwrap();
        let damaged = recovered.jobs["a"].snapshot();
        assert_eq!(damaged.state, JobState::Failed);
        assert!(
            damaged
                .reason
                .contains("events.jsonl was damaged while the job was succeeded")
                && damaged.reason.contains("a torn last line of 1 bytes")
                && damaged.reason.contains("its 2 readable events are kept"),
            "{}",
            damaged.reason
        );
        let kept = easel_events::read_log(&events).unwrap();
        assert_eq!(
            kept.len(),
            3,
            "the two readable events and the failure: {kept:?}"
        );
        assert!(events.with_extension("jsonl.damaged").is_file());

        let garbled = recovered.jobs["bb"].snapshot();
        assert_eq!(garbled.state, JobState::Failed);
        assert!(
            garbled.reason.contains("line 2: invalid UTF-8"),
            "{}",
            garbled.reason
        );
        assert!(!recovered.queue.contains(&"bb".to_string()));
        assert_eq!(recovered.jobs["ccc"].snapshot().state, JobState::Succeeded);

        // Set aside once: the next start finds clean logs and changes nothing.
        drop(recovered);
        let again = load_jobs(dir.path(), 3).unwrap();
        assert_eq!(again.jobs["a"].snapshot().reason, damaged.reason);
        assert_eq!(again.jobs["a"].log.last_sequence(), 3);
    }

    #[test]
    fn a_running_jobs_torn_last_line_is_a_crash_and_the_job_resumes() {
        let dir = tempfile::tempdir().unwrap();
        left_behind(dir.path(), "a", JobState::Running, 0, true);
        with_log(dir.path(), "a", &[note("epoch 1")], b"{\"sequence\":2,\"ti");

        let recovered = load_jobs(dir.path(), 3).unwrap();
        let resumed = recovered.jobs["a"].snapshot();
        assert_eq!(resumed.state, JobState::Queued, "{}", resumed.reason);
        assert_eq!(recovered.queue, ["a"]);
    }

    #[test]
    fn a_job_folder_that_cannot_be_read_is_left_out_and_the_others_load() {
        let dir = tempfile::tempdir().unwrap();
        left_behind(dir.path(), "a", JobState::Succeeded, 0, false);
        // A log that is a folder cannot be read as a file, whoever runs the worker.
        std::fs::create_dir_all(dir.path().join("a").join(EVENTS_FILE)).unwrap();
        left_behind(dir.path(), "bb", JobState::Queued, 0, false);

        let recovered = load_jobs(dir.path(), 3).unwrap();
        assert!(!recovered.jobs.contains_key("a"));
        assert_eq!(recovered.queue, ["bb"]);
    }
}
