//! One job known to this worker: its persisted record, its event log and the flags that stop its
//! run. Shared by the queue, the run and the gRPC layer; it knows none of them.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};

use easel_spec::{ExperimentSpec, outputs};

use super::log::EventLog;
use super::record::{JobRecord, JobState};
use crate::error::{Error, Result};
use easel_events::{EventKind, LogContents, Outcome, RunReport, now};

pub struct Job {
    pub id: String,
    /// The token name that submitted it (never changes).
    pub owner: String,
    /// The sweep it is a trial of, or empty (never changes).
    pub sweep_id: String,
    pub dir: PathBuf,
    pub record: Mutex<JobRecord>,
    pub log: EventLog,
    /// Checked by the engine every step.
    pub cancel: Arc<AtomicBool>,
    /// Set with `cancel` when the worker stops: the job is re-queued, not cancelled.
    pub interrupted: Arc<AtomicBool>,
    /// Set with `cancel` when its sweep's early-stop rule stops it: why, for its record.
    pub stopped_early: OnceLock<String>,
    /// Parsed once: at submit, or for a job a restart found, the first time it is needed.
    spec: OnceLock<Arc<ExperimentSpec>>,
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
            sweep_id: record.sweep_id.clone(),
            log,
            dir,
            record: Mutex::new(record),
            cancel: Arc::default(),
            interrupted: Arc::default(),
            stopped_early: OnceLock::new(),
            spec: OnceLock::new(),
        };
        Ok((job, contents))
    }

    /// The job with the spec its submit parsed, so nothing parses it again.
    pub fn with_spec(self, spec: ExperimentSpec) -> Job {
        let _ = self.spec.set(Arc::new(spec));
        self
    }

    /// The job's spec as submitted (blocking: a job a restart found reads it from its folder
    /// the first time).
    pub fn spec(&self) -> Result<Arc<ExperimentSpec>> {
        if let Some(spec) = self.spec.get() {
            return Ok(spec.clone());
        }
        let path = self.spec_path();
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let spec = Arc::new(super::submission::parse_spec(&text)?);
        Ok(self.spec.get_or_init(|| spec).clone())
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

    /// Ends the run: the `Finished` event first, so a follower never sees the state without
    /// the job's last event, then the record. The one way a job's run ends, whoever ends it.
    pub fn finish(&self, ending: Ending) -> Result<JobRecord> {
        self.emit(ending.event());
        let saved = self.update(|r| ending.record(r));
        if ending.state().is_terminal() {
            self.log.settle();
        }
        saved
    }

    /// Like [`Job::finish`], but only while the job is still `from` (see [`Job::transition`]);
    /// the event is logged only by the one that ends it.
    pub fn finish_if(&self, from: JobState, ending: Ending) -> Result<bool> {
        let finished = self.transition(from, |r| {
            self.emit(ending.event());
            ending.record(r);
        })?;
        if finished && ending.state().is_terminal() {
            self.log.settle();
        }
        Ok(finished)
    }

    pub fn emit(&self, kind: EventKind) {
        if let Err(error) = self.log.append(kind) {
            tracing::error!(job = %self.id, %error, "event not persisted");
        }
    }
}

/// How a job's run ended: what its last event says and its record keeps.
#[derive(Debug, Clone, PartialEq)]
pub struct Ending {
    pub outcome: Outcome,
    pub reason: String,
    /// The run's report, when it succeeded.
    pub report: Option<Box<RunReport>>,
}

impl Ending {
    pub fn failed(reason: impl Into<String>) -> Ending {
        Ending {
            outcome: Outcome::Failed,
            reason: reason.into(),
            report: None,
        }
    }

    pub fn cancelled(reason: impl Into<String>) -> Ending {
        Ending {
            outcome: Outcome::Cancelled,
            reason: reason.into(),
            report: None,
        }
    }

    /// The state the job is in afterwards: an interrupted run is queued to resume.
    pub fn state(&self) -> JobState {
        match self.outcome {
            Outcome::Succeeded => JobState::Succeeded,
            Outcome::Failed => JobState::Failed,
            Outcome::Cancelled => JobState::Cancelled,
            Outcome::Interrupted => JobState::Queued,
        }
    }

    fn event(&self) -> EventKind {
        EventKind::Finished {
            outcome: self.outcome,
            reason: self.reason.clone(),
            report: self.report.clone(),
        }
    }

    fn record(&self, record: &mut JobRecord) {
        let state = self.state();
        record.state = state;
        record.reason = self.reason.clone();
        if let Some(accuracy) = self.report.as_ref().and_then(|r| r.test_accuracy) {
            record.test_accuracy = Some(accuracy);
        }
        if state.is_terminal() {
            // A job failed again at a restart keeps the time it first finished.
            record.finished_at = record.finished_at.take().or_else(|| Some(now()));
        }
    }
}

/// The files of a job's folder, `<data>/jobs/<id>/`: the spec and manifest as submitted (named as
/// the engine names its copies in the run directory), the event log, the run directory.
pub const SPEC_FILE: &str = outputs::SPEC;
pub const MANIFEST_FILE: &str = outputs::MANIFEST;
pub const EVENTS_FILE: &str = outputs::EVENTS;
pub const RUN_DIR: &str = "run";
