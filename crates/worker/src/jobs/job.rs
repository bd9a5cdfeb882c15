//! One job known to this worker: its persisted record, its event log and the flags that stop its
//! run. Shared by the queue, the run and the gRPC layer; it knows none of them.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use easel_spec::outputs;

use super::log::EventLog;
use super::record::{JobRecord, JobState};
use crate::error::Result;
use easel_events::{EventKind, LogContents};

pub struct Job {
    pub id: String,
    /// The token name that submitted it (never changes).
    pub owner: String,
    pub dir: PathBuf,
    pub record: Mutex<JobRecord>,
    pub log: EventLog,
    /// Checked by the engine every step.
    pub cancel: Arc<AtomicBool>,
    /// Set with `cancel` when the worker stops: the job is re-queued, not cancelled.
    pub interrupted: AtomicBool,
}

impl Job {
    /// A job in `dir` with its record, logging to `dir/events.jsonl`.
    pub fn open(dir: PathBuf, record: JobRecord) -> Result<Job> {
        Ok(Job::open_checked(dir, record)?.0)
    }

    /// Like [`Job::open`], with everything its event log held (events and damage).
    pub fn open_checked(dir: PathBuf, record: JobRecord) -> Result<(Job, LogContents)> {
        let (log, contents) = EventLog::open_checked(dir.join(EVENTS_FILE))?;
        let job = Job {
            id: record.id.clone(),
            owner: record.owner.clone(),
            log,
            dir,
            record: Mutex::new(record),
            cancel: Arc::default(),
            interrupted: AtomicBool::new(false),
        };
        Ok((job, contents))
    }

    pub fn snapshot(&self) -> JobRecord {
        let mut record = self
            .record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        record.last_sequence = self.log.last_sequence();
        record
    }

    /// Changes the record and persists it.
    pub fn update(&self, change: impl FnOnce(&mut JobRecord)) -> Result<JobRecord> {
        let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut record);
        record.last_sequence = self.log.last_sequence();
        record.save(&self.dir)?;
        Ok(record.clone())
    }

    /// Like [`Job::update`], but only while the job is still `from`: the one place where the
    /// scheduler, `cancel`, `rm` and a stopping worker decide a job's state, so two of them
    /// never both act on it. False (nothing changed) when another got there first.
    pub fn transition(&self, from: JobState, change: impl FnOnce(&mut JobRecord)) -> Result<bool> {
        let mut record = self.record.lock().unwrap_or_else(|e| e.into_inner());
        if record.state != from {
            return Ok(false);
        }
        change(&mut record);
        record.last_sequence = self.log.last_sequence();
        record.save(&self.dir)?;
        Ok(true)
    }

    /// Like [`Job::update`] for progress that the next update writes again: a failure is logged,
    /// and the run goes on.
    pub fn update_or_log(&self, change: impl FnOnce(&mut JobRecord)) {
        if let Err(error) = self.update(change) {
            tracing::error!(job = %self.id, %error, "job state not saved");
        }
    }

    /// The engine's run directory (checkpoints, weights, report).
    pub fn run_dir(&self) -> PathBuf {
        self.dir.join(RUN_DIR)
    }

    /// The submitted spec, as sent.
    pub fn spec_path(&self) -> PathBuf {
        self.dir.join(SPEC_FILE)
    }

    /// The dataset manifest: as submitted, or as scanned for a dataset in object storage.
    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    pub fn emit(&self, kind: EventKind) {
        if let Err(error) = self.log.append(kind) {
            tracing::error!(job = %self.id, %error, "event not persisted");
        }
    }
}

/// The files of a job's folder, `<data>/jobs/<id>/`: the spec and manifest as submitted (named as
/// the engine names its copies in the run directory), the event log, the run directory.
pub const SPEC_FILE: &str = outputs::SPEC;
pub const MANIFEST_FILE: &str = outputs::MANIFEST;
pub const EVENTS_FILE: &str = outputs::EVENTS;
pub const RUN_DIR: &str = "run";
