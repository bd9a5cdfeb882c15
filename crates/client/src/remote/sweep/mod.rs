//! Sweeps from the client: `submit` of a spec with a `[sweep]` table queues every trial as one
//! sweep; `watch`, `status`, `cancel`, `rm`, `list` and `fetch` given a sweep id act on the
//! whole sweep. Each trial stays an ordinary job, so every verb also takes a trial's job id.

pub mod board;
pub mod fetch;
pub mod json;
pub mod submit;

use std::process::ExitCode;

use easel_proto::v1 as pb;

use easel_spec::sweep::SWEEP_ID_PREFIX;

/// Whether a verb's argument names a sweep rather than a job.
pub fn is_sweep_id(id: &str) -> bool {
    id.starts_with(SWEEP_ID_PREFIX)
}

/// Trials that are over (succeeded, failed or cancelled).
pub fn done_count(sweep: &pb::Sweep) -> usize {
    sweep
        .trials
        .iter()
        .filter(|t| t.job.as_ref().is_some_and(|j| j.state().is_terminal()))
        .count()
}

/// The trial of the best job so far, if any.
pub fn best_trial(sweep: &pb::Sweep) -> Option<&pb::Trial> {
    sweep
        .trials
        .iter()
        .find(|t| t.job.as_ref().is_some_and(|j| j.id == sweep.best_job))
}

/// Every trial is over.
pub fn finished(sweep: &pb::Sweep) -> bool {
    sweep.trials.iter().all(|trial| {
        trial
            .job
            .as_ref()
            .is_none_or(|job| job.state().is_terminal())
    })
}

/// Success when no trial failed and at least one has a value of the metric.
pub fn exit_code(sweep: &pb::Sweep) -> ExitCode {
    let failed = sweep.trials.iter().any(|trial| {
        trial
            .job
            .as_ref()
            .is_some_and(|job| job.state() == pb::JobState::Failed)
    });
    if failed || sweep.best_job.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A trial's seconds of training: from its start to its end, or to now while it runs.
pub fn trial_seconds(job: &pb::Job) -> Option<f64> {
    let started = humantime::parse_rfc3339_weak(&job.started_at).ok()?;
    let ended = if job.finished_at.is_empty() {
        std::time::SystemTime::now()
    } else {
        humantime::parse_rfc3339_weak(&job.finished_at).ok()?
    };
    Some(ended.duration_since(started).ok()?.as_secs_f64())
}
