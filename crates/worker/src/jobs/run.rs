//! One job's run: its inputs staged (`staging.rs`), the engine started in its training process
//! (`crate::training`), its events bridged into the job's log, its artifacts published to the
//! store as they come (`publish.rs`), and the job's end decided once everything is stored.

use std::sync::Arc;
use std::time::Duration;

use easel_engine::TrainEvent;
use easel_spec::worker::DeviceName;
use easel_store::{INDEX_NAME, REPORT_NAME, retry_transient};
use tokio::sync::mpsc;

use super::context::JobContext;
use super::job::{EVENTS_FILE, Ending, Job};
use super::publish::{ArtifactPublisher, store_one};
use super::record::JobState;
use crate::training::{self, Ended, Launched};
use easel_events::now;
use easel_events::{EventKind, Outcome};

/// Runs the job on `device` to its end and records how it ended.
pub(crate) async fn run_job(context: &Arc<JobContext>, job: &Arc<Job>, device: DeviceName) {
    let id = job.id.clone();
    // The flag is never cleared here: a stopping worker may have raised it after the scheduler
    // took the job, and the job must then stay queued rather than start.
    let claimed = match pause_after_crash(job, context.restart_pause).await {
        Some(ended_the_pause) => ended_the_pause,
        None => claim(job, device),
    };
    match claimed {
        Claim::Run => {}
        Claim::Gone => {
            tracing::info!(job = %id, "job ended before it started; not run");
            return;
        }
        Claim::Stopping => {
            job.emit(EventKind::Note {
                message: "the worker is stopping: the job resumes at its next start".into(),
            });
            return;
        }
    }
    tracing::info!(job = %id, %device, "job started");
    let ending = train_on(context, job, device)
        .await
        .unwrap_or_else(Ending::failed);
    let (outcome, reason) = (ending.outcome, ending.reason.clone());
    if let Err(error) = job.finish(ending) {
        tracing::error!(job = %id, %error, "job state not saved");
    }
    tracing::info!(job = %id, ?outcome, reason, "job finished");
}

/// Whether a job the scheduler took may run.
enum Claim {
    Run,
    /// `cancel` (and maybe `rm`) got to it first: it is over and its folder may be gone.
    Gone,
    /// The worker began stopping after the scheduler took it: it stays queued.
    Stopping,
}

/// Moves the job from queued to running, unless `cancel` or a stopping worker got there first.
fn claim(job: &Job, device: DeviceName) -> Claim {
    if job.cancel.load(std::sync::atomic::Ordering::SeqCst)
        && job.interrupted.load(std::sync::atomic::Ordering::SeqCst)
    {
        return Claim::Stopping;
    }
    let claimed = job.transition(JobState::Queued, |r| {
        r.state = JobState::Running;
        r.reason.clear();
        r.started_at = Some(now());
        r.device = device.to_string();
    });
    match claimed {
        Ok(true) => Claim::Run,
        Ok(false) => Claim::Gone,
        // Running with a record that could not be saved is what the worker always did: the next
        // save writes it; a restart finds the job queued and runs it then.
        Err(error) => {
            tracing::error!(job = %job.id, %error, "job state not saved");
            Claim::Run
        }
    }
}

/// A job resumed after the worker died under it waits first, longer at each restart: if the job
/// is what takes the worker down, the worker then does not crash as fast as it is restarted.
/// `None` once the pause is over; what ended it early otherwise: `cancel` (the job is still
/// `queued` while it waits, so `cancel` ends it as it ends any queued job), or a stopping worker
/// (the job stays queued for the next start).
async fn pause_after_crash(job: &Job, first_pause: Duration) -> Option<Claim> {
    let restarts = job.snapshot().crash_restarts;
    if restarts == 0 {
        return None;
    }
    let pause = first_pause * 2u32.saturating_pow(restarts - 1).min(64);
    job.emit(EventKind::Note {
        message: format!(
            "resuming after the worker stopped under this job (restart {restarts}): waiting {} s first",
            pause.as_secs()
        ),
    });
    let until = tokio::time::Instant::now() + pause;
    loop {
        if job.snapshot().state != JobState::Queued {
            return Some(Claim::Gone);
        }
        // `shutdown` raises the flag of waiting jobs too.
        if job.cancel.load(std::sync::atomic::Ordering::SeqCst) {
            return Some(Claim::Stopping);
        }
        if tokio::time::Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stages the job's inputs, trains, and says how the run ended; an error is the reason it
/// failed.
async fn train_on(
    context: &Arc<JobContext>,
    job: &Arc<Job>,
    device: DeviceName,
) -> Result<Ending, String> {
    let staged = super::staging::stage(context, job, device).await?;
    let hooks = training::RunHooks {
        interrupted: job.interrupted.clone(),
        on_submitted: Box::new({
            let job = job.clone();
            move |slurm_job: &str| {
                let id = slurm_job.to_owned();
                job.update_or_log(|r| r.slurm_job_id = id);
            }
        }),
    };
    let Launched { events, ended } = training::launch(
        &context.training,
        &job.id,
        staged.request,
        job.cancel.clone(),
        hooks,
    )?;
    let publisher = ArtifactPublisher::start(context, job);
    let report_written = bridge_events(context, job, events, &publisher).await;
    let ended = ended.await.unwrap_or_else(|_| {
        Ended::Crashed("the training thread stopped unexpectedly (panic)".into())
    });
    let unstored = publisher.finish().await;
    let interrupted = job.interrupted.load(std::sync::atomic::Ordering::SeqCst);
    let mut ending = ending_of(ended, interrupted)?;
    if let Some(why) = job.stopped_early.get()
        && ending.outcome == Outcome::Cancelled
    {
        ending.reason = why.clone();
    }
    if ending.outcome == Outcome::Succeeded {
        if !unstored.is_empty() {
            return Err(format!("artifacts not stored: {}", unstored.join("; ")));
        }
        if !report_written {
            return Err(format!("the engine finished without writing {REPORT_NAME}"));
        }
        store_final(context, job).await?;
    }
    Ok(ending)
}

/// Logs the run's events as they come, keeps the job's record current and hands finished
/// artifacts to the publisher. True when the engine wrote its report. Runs on a blocking thread
/// of its own: every event is a file append, and each epoch rewrites the record with an fsync.
async fn bridge_events(
    context: &Arc<JobContext>,
    job: &Arc<Job>,
    mut events: mpsc::UnboundedReceiver<TrainEvent>,
    publisher: &ArtifactPublisher,
) -> bool {
    let job = job.clone();
    let context = context.clone();
    let finished_artifacts = publisher.sender();
    let bridging = tokio::task::spawn_blocking(move || {
        let mut report_written = false;
        while let Some(event) = events.blocking_recv() {
            let mut finished_artifact = None;
            match &event {
                // A slot's own name (`cuda:3`) stays: its training process sees that GPU as
                // `cuda:0`. An `auto` slot learns what it resolved to.
                TrainEvent::Started(info) => job.update_or_log(|r| {
                    if r.device.is_empty() || r.device == "auto" {
                        r.device = info.device.clone();
                    }
                }),
                TrainEvent::Epoch(metrics) => {
                    job.update_or_log(|r| record_epoch(r, metrics));
                }
                TrainEvent::ArtifactWritten { name, .. } if name == REPORT_NAME => {
                    report_written = true
                }
                TrainEvent::ArtifactWritten { name, .. } => finished_artifact = Some(name.clone()),
                _ => {}
            }
            let judged = match &event {
                TrainEvent::Epoch(metrics) if !job.sweep_id.is_empty() => {
                    judge(&context, &job, metrics)
                }
                _ => None,
            };
            job.emit(event);
            if let Some(why) = judged {
                stop_early(&job, why);
            }
            // Logged first, so the log never says an artifact was stored before it was written.
            if let Some(name) = finished_artifact {
                let _ = finished_artifacts.send(name);
            }
        }
        report_written
    });
    bridging.await.unwrap_or(false)
}

/// An epoch's progress in the job's record: epochs done, best validation accuracy and loss.
fn record_epoch(record: &mut super::record::JobRecord, metrics: &easel_events::EpochMetrics) {
    record.epochs_done = metrics.epoch;
    let accuracy = record.best_validation_accuracy.unwrap_or(f64::MIN);
    record.best_validation_accuracy = Some(accuracy.max(metrics.validation_accuracy));
    if metrics.validation_loss.is_finite() {
        let loss = record.best_validation_loss.unwrap_or(f64::MAX);
        record.best_validation_loss = Some(loss.min(metrics.validation_loss));
    }
}

/// The sweep's verdict on a trial's epoch. Its last epoch is recorded for the others but not
/// judged: the run is finishing (test evaluation, report), and stopping it then would only lose
/// that.
fn judge(context: &JobContext, job: &Job, metrics: &easel_events::EpochMetrics) -> Option<String> {
    let referee = &context.referee;
    if metrics.epoch >= job.snapshot().epochs_total {
        referee.recall(&job.sweep_id, &job.id, metrics);
        return None;
    }
    referee.judge(&job.sweep_id, &job.id, metrics)
}

/// Stops a trial its sweep's rule has judged: at its next step, as a cancel does, keeping the
/// weights and checkpoint its epochs wrote; its record says why.
fn stop_early(job: &Job, why: String) {
    tracing::info!(job = %job.id, sweep = %job.sweep_id, reason = %why, "trial stopped early");
    job.emit(EventKind::Note {
        message: why.clone(),
    });
    let _ = job.stopped_early.set(why);
    job.cancel.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// The job's ending from how its training ended; `interrupted` when the worker is stopping
/// (the job then resumes at the next start). An error is a failure's reason.
fn ending_of(ended: Ended, interrupted: bool) -> Result<Ending, String> {
    let interruption = |reason: String| Ending {
        outcome: Outcome::Interrupted,
        reason,
        report: None,
    };
    match ended {
        Ended::Failed(reason) => Err(reason),
        // Stopping the worker can take its training process down before the step ends (a
        // service manager signals every process of the worker): the checkpoint stands.
        Ended::Crashed(what) if interrupted => Ok(interruption(format!(
            "worker stopped ({what}); resumes from its last checkpoint"
        ))),
        Ended::Crashed(what) => Err(what),
        Ended::Cancelled { completed_epochs } if interrupted => Ok(interruption(format!(
            "worker stopped after {completed_epochs} epoch(s); resumes from its checkpoint"
        ))),
        Ended::Cancelled { completed_epochs } => Ok(Ending::cancelled(format!(
            "cancelled by request after {completed_epochs} epoch(s)"
        ))),
        Ended::Completed(report) => Ok(Ending {
            outcome: Outcome::Succeeded,
            reason: String::new(),
            report: Some(report),
        }),
    }
}

/// events.jsonl, then artifacts.json (name, size, blake3 of everything), then report.json, which
/// marks the job complete in the store.
async fn store_final(context: &JobContext, job: &Job) -> Result<(), String> {
    job.emit(EventKind::Note {
        message: "all artifacts stored; writing the report".into(),
    });
    store_one(context, job, EVENTS_FILE, job.log.path())
        .await
        .map_err(|e| format!("{EVENTS_FILE} not stored: {e}"))?;
    retry_transient(
        &context.retry,
        |_, _| {},
        || context.store.write_index(&job.id),
    )
    .await
    .map_err(|e| format!("{INDEX_NAME} not stored: {e}"))?;
    store_one(context, job, REPORT_NAME, &job.run_dir().join(REPORT_NAME))
        .await
        .map_err(|e| format!("{REPORT_NAME} not stored: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::manager::{JobManager, ManagerSettings};
    use crate::jobs::record::JobRecord;
    use std::path::Path;

    /// A worker whose data dir holds one queued job `id`, as a restart finds it.
    fn worker_with_a_queued_job(data_dir: &Path, id: &str) -> Arc<JobManager> {
        let dir = data_dir.join("jobs").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let record: JobRecord = serde_json::from_value(serde_json::json!({
            "id": id,
            "name": id,
            "state": "queued",
            "created_at": "2026-12-06T00:00:00Z",
            "epochs_total": 1,
            "dataset_images": 10,
            "dataset_bytes": 1000,
            "store_url": "memory://",
        }))
        .unwrap();
        record.save(&dir).unwrap();
        JobManager::open(ManagerSettings::for_tests(data_dir)).unwrap()
    }

    fn finished_events(job: &Job) -> usize {
        job.log
            .after(0)
            .iter()
            .filter(|event| matches!(event.kind, EventKind::Finished { .. }))
            .count()
    }

    #[tokio::test]
    async fn a_job_cancelled_and_removed_after_the_scheduler_took_it_never_starts() {
        let dir = tempfile::tempdir().unwrap();
        let manager = worker_with_a_queued_job(&dir.path().join("worker"), "a");
        // The scheduler has taken the job from the queue; before its run starts, `cancel` and
        // `rm` arrive.
        let taken = manager.job("a").unwrap();
        manager.cancel("a").unwrap();
        manager.remove("a").unwrap();
        assert!(!taken.dir.exists());

        run_job(manager.context(), &taken, DeviceName::Cpu).await;
        let record = taken.snapshot();
        assert_eq!(record.state, JobState::Cancelled, "{record:?}");
        assert_eq!(record.started_at, None);
        assert!(
            !taken.dir.exists(),
            "nothing is written under a removed job"
        );
    }

    #[tokio::test]
    async fn a_job_cancelled_after_the_scheduler_took_it_logs_one_finished_event() {
        let dir = tempfile::tempdir().unwrap();
        let manager = worker_with_a_queued_job(&dir.path().join("worker"), "a");
        let taken = manager.job("a").unwrap();
        manager.cancel("a").unwrap();

        run_job(manager.context(), &taken, DeviceName::Cpu).await;
        assert_eq!(taken.snapshot().state, JobState::Cancelled);
        assert_eq!(finished_events(&taken), 1);
    }

    #[tokio::test]
    async fn a_job_taken_as_the_worker_stops_stays_queued_for_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let manager = worker_with_a_queued_job(&dir.path().join("worker"), "a");
        let taken = manager.job("a").unwrap();
        manager.shutdown().await;

        run_job(manager.context(), &taken, DeviceName::Cpu).await;
        let record = taken.snapshot();
        assert_eq!(record.state, JobState::Queued, "{record:?}");
        assert_eq!(finished_events(&taken), 0);
        assert!(
            taken.log.after(0).iter().any(|event| matches!(
                &event.kind,
                EventKind::Note { message } if message.contains("resumes at its next start")
            )),
            "{:?}",
            taken.log.after(0)
        );
    }
}
