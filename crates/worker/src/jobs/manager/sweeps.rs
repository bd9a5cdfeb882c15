//! Sweeps in the manager: a sweep queued as its trials' jobs in one step (all or none), found,
//! listed, cancelled and removed as one. Each trial is an ordinary job; the sweep's record only
//! names them (`jobs/sweep`).

use std::sync::Arc;

use easel_events::EventKind;
use easel_spec::sweep::Sweep;

use super::JobManager;
use super::submit::{new_id, remove_refused_job_dir};
use crate::access::Caller;
use crate::error::{Error, Result};
use crate::jobs::Reclaimed;
use crate::jobs::job::Job;
use crate::jobs::record::Submitter;
use crate::jobs::submission::{ManifestText, Submission, parse_manifest, pretrained_blob};
use crate::jobs::sweep::{Standings, SweepRecord, TrialRecord, record::SWEEP_ID_PREFIX};

pub struct SweepOutcome {
    pub sweep: Arc<SweepRecord>,
    /// False when the idempotency key named an existing sweep.
    pub created: bool,
}

/// What removing a sweep took off the worker: each trial's job, as `remove` does.
#[derive(Debug, Default)]
pub struct SweepRemoved {
    pub trials: Vec<Reclaimed>,
}

impl JobManager {
    /// The sweeps a restart found, back in the tables, their early-stop curves read again from
    /// their trials' event logs.
    pub(super) fn reload_sweeps(&self, sweeps: Vec<SweepRecord>) {
        let referee = &self.context.referee;
        let jobs: Vec<Arc<Job>> = self.lock().jobs.values().cloned().collect();
        for sweep in &sweeps {
            referee.enter(sweep);
            if sweep.early_stop.is_none() {
                continue;
            }
            for job in jobs.iter().filter(|job| job.sweep_id == sweep.id) {
                for event in job.log.after(0) {
                    if let EventKind::Epoch(metrics) = &event.kind {
                        referee.recall(&sweep.id, &job.id, metrics);
                    }
                }
            }
        }
        self.fail_orphan_trials(&sweeps, &jobs);
        let mut inner = self.lock();
        for sweep in sweeps {
            if !sweep.idempotency_key.is_empty() {
                let key = crate::jobs::record::owned_key(&sweep.owner, &sweep.idempotency_key);
                inner.sweeps_by_key.insert(key, sweep.id.clone());
            }
            inner.sweeps.insert(sweep.id.clone(), Arc::new(sweep));
        }
    }

    /// Trials of a sweep whose record was never written (the worker stopped in the middle of
    /// queueing it, so its client was never told of it) fail rather than run unseen: a sweep is
    /// queued whole or not at all.
    fn fail_orphan_trials(&self, sweeps: &[SweepRecord], jobs: &[Arc<Job>]) {
        let orphans = jobs.iter().filter(|job| {
            !job.sweep_id.is_empty() && !sweeps.iter().any(|sweep| sweep.id == job.sweep_id)
        });
        for job in orphans {
            let ending = crate::jobs::job::Ending::failed(format!(
                "sweep {} was never fully queued (the worker stopped while accepting it); \
                 submit the sweep again",
                job.sweep_id
            ));
            match job.finish_if(crate::jobs::record::JobState::Queued, ending) {
                Ok(true) => {
                    self.lock().queue.retain(|id| id != &job.id);
                    tracing::warn!(job = %job.id, sweep = %job.sweep_id, "trial of an unfinished sweep submit failed");
                }
                Ok(false) => {}
                Err(error) => tracing::error!(job = %job.id, %error, "job state not saved"),
            }
        }
    }

    /// The sweep `submitter`'s idempotency key already named, if any.
    pub fn existing_sweep(&self, submitter: &Submitter) -> Option<Arc<SweepRecord>> {
        let key = submitter.owned_key()?;
        let inner = self.lock();
        inner.sweeps.get(inner.sweeps_by_key.get(&key)?).cloned()
    }

    /// Expands a sweep spec into its trials and queues them all, or none: a trial the worker
    /// refuses (its spec, its reach, a missing blob, no room in the queue) refuses the sweep,
    /// with every trial's problem named. Blocking (file IO), like `submit`.
    pub fn submit_sweep(
        &self,
        spec_toml: &str,
        manifest_text: ManifestText,
        submitter: &Submitter,
    ) -> Result<SweepOutcome> {
        if let Some(sweep) = self.existing_sweep(submitter) {
            return Ok(SweepOutcome {
                sweep,
                created: false,
            });
        }
        let sweep = Sweep::parse(spec_toml, "submitted sweep", self.max_trials_per_sweep)
            .map_err(|errors| Error::InvalidArgument(errors.to_string()))?;
        let manifest = Arc::new(parse_manifest(&manifest_text.json)?);
        let submissions = sweep
            .trials
            .iter()
            .map(|trial| {
                Submission::of(
                    trial.spec.clone(),
                    trial.spec_toml.clone(),
                    manifest.clone(),
                    manifest_text.clone(),
                )
                .map_err(|error| {
                    Error::InvalidArgument(format!(
                        "trial {} ({}): {error}",
                        trial.number,
                        trial.label()
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        self.check_trials_reach(&sweep, &submissions)?;
        let _blobs_in_use = self.blobs_in_use.read().unwrap_or_else(|e| e.into_inner());
        self.check_trial_blobs(&submissions)?;
        let position = self.room_for(submissions.len())?;
        let id = self.claim_sweep_id()?;
        let mut jobs: Vec<Arc<Job>> = Vec::with_capacity(submissions.len());
        for (offset, submission) in submissions.iter().enumerate() {
            match self.create_job(submission, &no_key(submitter), None, position + offset, &id) {
                Ok(job) => jobs.push(job),
                Err(error) => {
                    remove_all(&jobs);
                    let _ = SweepRecord::delete(&self.context.dirs.sweeps, &id);
                    return Err(error);
                }
            }
        }
        let record = Arc::new(sweep_record(&id, &sweep, submitter, &jobs));
        if let Err(error) = record.save(&self.context.dirs.sweeps) {
            remove_all(&jobs);
            let _ = SweepRecord::delete(&self.context.dirs.sweeps, &id);
            return Err(error);
        }
        self.enqueue_sweep(record, jobs, submitter)
    }

    /// Puts the sweep and its trials in the tables and the queue, unless the worker began
    /// stopping, or a retry of the same submit got there first, meanwhile.
    fn enqueue_sweep(
        &self,
        record: Arc<SweepRecord>,
        jobs: Vec<Arc<Job>>,
        submitter: &Submitter,
    ) -> Result<SweepOutcome> {
        let mut inner = self.lock();
        let key = submitter.owned_key();
        let first = key
            .as_ref()
            .and_then(|key| inner.sweeps.get(inner.sweeps_by_key.get(key)?).cloned());
        let refusal = self.refusal(&inner).or_else(|| {
            // Other submits may have filled the queue since `room_for` looked.
            (inner.queue.len() + jobs.len() > self.max_queued)
                .then(|| queue_too_small(jobs.len(), inner.queue.len(), self.max_queued))
        });
        if first.is_some() || refusal.is_some() {
            drop(inner);
            remove_all(&jobs);
            let _ = SweepRecord::delete(&self.context.dirs.sweeps, &record.id);
            return match (first, refusal) {
                (Some(sweep), _) => Ok(SweepOutcome {
                    sweep,
                    created: false,
                }),
                (None, Some(error)) => Err(error),
                (None, None) => unreachable!("one of them is set"),
            };
        }
        for job in &jobs {
            inner.jobs.insert(job.id.clone(), job.clone());
            inner.queue.push_back(job.id.clone());
        }
        if let Some(key) = key {
            inner.sweeps_by_key.insert(key, record.id.clone());
        }
        inner.sweeps.insert(record.id.clone(), record.clone());
        drop(inner);
        self.context.referee.enter(&record);
        tracing::info!(sweep = %record.id, trials = jobs.len(), "sweep queued");
        self.wake.notify_one();
        Ok(SweepOutcome {
            sweep: record,
            created: true,
        })
    }

    /// Every trial's reach against the worker's allowances, every refusal named by trial.
    fn check_trials_reach(&self, sweep: &Sweep, submissions: &[Submission]) -> Result<()> {
        let refusals: Vec<(String, Error)> = sweep
            .trials
            .iter()
            .zip(submissions)
            .filter_map(|(trial, submission)| {
                let refused = self.check_reach(&submission.spec).err()?;
                Some((
                    format!("trial {} ({})", trial.number, trial.label()),
                    refused,
                ))
            })
            .collect();
        match refusals.len() {
            0 => Ok(()),
            1 => {
                let (trial, error) = refusals.into_iter().next().expect("one refusal");
                Err(match error {
                    Error::PermissionDenied(why) => {
                        Error::PermissionDenied(format!("{trial}: {why}"))
                    }
                    other => Error::InvalidArgument(format!("{trial}: {other}")),
                })
            }
            _ => Err(Error::InvalidArgument(
                refusals
                    .iter()
                    .map(|(trial, error)| format!("{trial}: {error}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )),
        }
    }

    /// The dataset every trial reads is checked once; each trial's own pretrained blob too.
    fn check_trial_blobs(&self, submissions: &[Submission]) -> Result<()> {
        let Some(first) = submissions.first() else {
            return Ok(());
        };
        self.check_blobs_uploaded(first)?;
        let weights: Vec<String> = submissions
            .iter()
            .filter_map(|submission| pretrained_blob(&submission.spec).map(str::to_owned))
            .collect();
        if let Some((digest, _)) = self.context.blobs.missing(&weights)?.first() {
            return Err(Error::FailedPrecondition(format!(
                "the pretrained weights (blob {digest}) are not on the worker yet; upload them before submitting"
            )));
        }
        Ok(())
    }

    /// The queue place of a sweep's first trial, when the queue takes all `trials`.
    fn room_for(&self, trials: usize) -> Result<usize> {
        let inner = self.lock();
        if let Some(error) = self.refusal(&inner) {
            return Err(error);
        }
        let waiting = inner.queue.len();
        if waiting + trials > self.max_queued {
            return Err(queue_too_small(trials, waiting, self.max_queued));
        }
        Ok(waiting)
    }

    /// A new sweep id, claimed by creating its record's file (only if new): two submits in one
    /// second never share one.
    fn claim_sweep_id(&self) -> Result<String> {
        let dir = &self.context.dirs.sweeps;
        loop {
            let id = new_id(SWEEP_ID_PREFIX);
            let path = dir.join(format!("{id}.json"));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(_) => return Ok(id),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(error) => return Err(Error::io(&path, error)),
            }
        }
    }

    /// A sweep `caller` may see (another owner's is as unknown as a missing one).
    pub fn sweep_for(&self, caller: &Caller, id: &str) -> Result<Arc<SweepRecord>> {
        let sweep = self.lock().sweeps.get(id).cloned();
        match sweep {
            Some(sweep) if caller.may_see(&sweep.owner) => Ok(sweep),
            _ => Err(Error::SweepNotFound(id.to_owned())),
        }
    }

    /// Every sweep `caller` may see, oldest first.
    pub fn list_sweeps(&self, caller: &Caller) -> Vec<Arc<SweepRecord>> {
        let mut sweeps: Vec<Arc<SweepRecord>> = self
            .lock()
            .sweeps
            .values()
            .filter(|sweep| caller.may_see(&sweep.owner))
            .cloned()
            .collect();
        sweeps.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        sweeps
    }

    /// The sweep's trials still on the worker (one removed on its own is not).
    fn trial_jobs(&self, sweep: &SweepRecord) -> Vec<Arc<Job>> {
        let inner = self.lock();
        sweep
            .job_ids()
            .filter_map(|id| inner.jobs.get(id).cloned())
            .collect()
    }

    /// The sweep's trials as they stand now, best first.
    pub fn standings(&self, sweep: &SweepRecord) -> Standings {
        let jobs = self.trial_jobs(sweep);
        Standings::rank(sweep, |id| {
            jobs.iter()
                .find(|job| job.id == id)
                .map(|job| job.snapshot())
        })
    }

    /// Cancels every trial not yet finished: queued ones at once, running ones at their next
    /// step.
    pub fn cancel_sweep(&self, sweep: &SweepRecord) -> Result<()> {
        for id in sweep.job_ids() {
            match self.cancel(id) {
                Ok(_) | Err(Error::JobNotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        tracing::info!(sweep = %sweep.id, "sweep cancelled");
        Ok(())
    }

    /// Takes a finished sweep off the worker: every trial as `remove` takes a job, then its
    /// record. A trial still queued or running refuses it, naming the trial.
    pub fn remove_sweep(&self, sweep: &SweepRecord) -> Result<SweepRemoved> {
        let jobs = self.trial_jobs(sweep);
        if let Some(job) = jobs.iter().find(|job| !job.snapshot().state.is_terminal()) {
            return Err(Error::FailedPrecondition(format!(
                "trial job {} of sweep {} is {}; cancel the sweep first (client cancel {})",
                job.id,
                sweep.id,
                job.snapshot().state.name(),
                sweep.id
            )));
        }
        let mut removed = SweepRemoved::default();
        for job in &jobs {
            match self.remove(&job.id) {
                Ok(reclaimed) => removed.trials.push(reclaimed),
                Err(Error::JobNotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        SweepRecord::delete(&self.context.dirs.sweeps, &sweep.id)?;
        let mut inner = self.lock();
        inner.sweeps.remove(&sweep.id);
        inner.sweeps_by_key.retain(|_, id| id != &sweep.id);
        drop(inner);
        self.context.referee.forget(&sweep.id);
        tracing::info!(sweep = %sweep.id, trials = removed.trials.len(), "sweep removed");
        Ok(removed)
    }
}

fn queue_too_small(trials: usize, waiting: usize, max_queued: usize) -> Error {
    Error::ResourceExhausted(format!(
        "the sweep's {trials} trials do not fit the queue: {waiting} of its {max_queued} places \
         are taken (queue.max_queued_jobs); try again when some have run, or sweep fewer values"
    ))
}

/// Trials carry no idempotency key of their own: the sweep's names the sweep.
fn no_key(submitter: &Submitter) -> Submitter {
    Submitter {
        owner: submitter.owner.clone(),
        idempotency_key: String::new(),
    }
}

fn remove_all(jobs: &[Arc<Job>]) {
    for job in jobs {
        remove_refused_job_dir(&job.dir);
    }
}

fn sweep_record(id: &str, sweep: &Sweep, submitter: &Submitter, jobs: &[Arc<Job>]) -> SweepRecord {
    let settings = &sweep.settings;
    SweepRecord {
        id: id.to_owned(),
        name: sweep
            .trials
            .first()
            .map(|trial| trial.spec.name.clone())
            .unwrap_or_default(),
        owner: submitter.owner.clone(),
        idempotency_key: submitter.idempotency_key.clone(),
        created_at: easel_events::now(),
        metric: settings.metric,
        method: settings.method,
        early_stop: settings.early_stop,
        grace_epochs: settings.grace_epochs,
        max_concurrent: settings.max_concurrent,
        trials: sweep
            .trials
            .iter()
            .zip(jobs)
            .map(|(trial, job)| TrialRecord {
                number: trial.number,
                job: job.id.clone(),
                params: trial
                    .params
                    .iter()
                    .map(|(key, value)| (key.clone(), value.to_string()))
                    .collect(),
            })
            .collect(),
    }
}

#[cfg(test)]
#[path = "sweeps_tests.rs"]
mod tests;
