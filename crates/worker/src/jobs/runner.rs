//! One job's run: the engine in its training process (see `training.rs`), its events bridged into the job's log, its
//! artifacts copied to the store, and the final state decided only once everything is stored.

use std::sync::Arc;
use std::time::Duration;

use easel_dataset::Manifest;
use easel_engine::TrainEvent;
use easel_spec::worker::DeviceName;
use easel_store::{INDEX_NAME, REPORT_NAME, retry_transient};

use super::context::JobContext;
use super::job::{EVENTS_FILE, Job};
use super::record::JobState;
use super::sandbox::{Confinement, JobFolders};
use super::submission::{parse_spec, pretrained_blob};
use super::training::{self, Ended, ImagesAt, Launched, TrainRequest, Training};
use super::uploader::{Uploader, store_one};
use crate::caches::Lease;
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
    let (outcome, reason, report) = match train(context, job, device).await {
        Ok(done) => done,
        Err(reason) => (Outcome::Failed, reason, None),
    };
    let state = match outcome {
        Outcome::Succeeded => JobState::Succeeded,
        Outcome::Failed => JobState::Failed,
        Outcome::Cancelled => JobState::Cancelled,
        Outcome::Interrupted => JobState::Queued,
    };
    let test_accuracy = report
        .as_ref()
        .and_then(|r| r.get("test_accuracy"))
        .and_then(|v| v.as_f64());
    job.emit(EventKind::Finished {
        outcome,
        reason: reason.clone(),
        report,
    });
    let saved = job.update(|r| {
        r.state = state;
        r.reason = reason.clone();
        r.test_accuracy = test_accuracy.or(r.test_accuracy);
        if state.is_terminal() {
            r.finished_at = Some(now());
        }
    });
    if let Err(error) = saved {
        tracing::error!(job = %id, %error, "job state not saved");
    }
    if state.is_terminal() {
        job.log.settle();
    }
    tracing::info!(job = %id, ?outcome, reason, "job finished");
}

type Finish = (Outcome, String, Option<serde_json::Value>);

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

async fn train(
    context: &Arc<JobContext>,
    job: &Arc<Job>,
    device: DeviceName,
) -> Result<Finish, String> {
    let spec = resolved_spec(context, job).await?;
    let (manifest, images, _dataset_lease) = dataset_for(context, job, &spec).await?;
    let _decoded_cache = lease_decoded_cache(context, job, &manifest, &spec);
    let spec_toml = spec
        .to_toml_string()
        .map_err(|e| format!("the resolved spec cannot be written: {e}"))?;
    let request = TrainRequest {
        spec_toml,
        manifest_path: job.manifest_path(),
        sandbox: confinement(context, job, &images),
        images,
        device: device.to_string(),
        run_dir: job.run_dir(),
        cache_dir: context.dirs.cache.clone(),
    };
    let Launched { mut events, ended } =
        training::launch(&context.training, &job.id, request, job.cancel.clone())?;
    let uploader = Uploader::start(context, job);
    let mut report_written = false;
    while let Some(event) = events.recv().await {
        match &event {
            TrainEvent::Started(info) => {
                job.update_or_log(|r| r.device = info.device.clone());
            }
            TrainEvent::Epoch(metrics) => {
                job.update_or_log(|r| {
                    r.epochs_done = metrics.epoch;
                    let best = r.best_validation_accuracy.unwrap_or(f64::MIN);
                    r.best_validation_accuracy = Some(best.max(metrics.validation_accuracy));
                });
            }
            TrainEvent::ArtifactWritten { name, .. } if name == REPORT_NAME => {
                report_written = true
            }
            TrainEvent::ArtifactWritten { name, .. } => uploader.send(name.clone()),
            _ => {}
        }
        job.emit(event);
    }
    let ended = ended.await.unwrap_or_else(|_| {
        Ended::Crashed("the training thread stopped unexpectedly (panic)".into())
    });
    let failures = uploader.finish().await;
    let interrupted = job.interrupted.load(std::sync::atomic::Ordering::SeqCst);
    match ended {
        Ended::Failed(reason) => Err(reason),
        // Stopping the worker can take its training process down before the step ends (a
        // service manager signals every process of the worker): the checkpoint stands.
        Ended::Crashed(what) if interrupted => Ok((
            Outcome::Interrupted,
            format!("worker stopped ({what}); resumes from its last checkpoint"),
            None,
        )),
        Ended::Crashed(what) => Err(what),
        Ended::Cancelled { completed_epochs } => {
            if interrupted {
                Ok((
                    Outcome::Interrupted,
                    format!(
                        "worker stopped after {completed_epochs} epoch(s); resumes from its checkpoint"
                    ),
                    None,
                ))
            } else {
                Ok((
                    Outcome::Cancelled,
                    format!("cancelled by request after {completed_epochs} epoch(s)"),
                    None,
                ))
            }
        }
        Ended::Completed(report) => {
            if !failures.is_empty() {
                return Err(format!("artifacts not stored: {}", failures.join("; ")));
            }
            if !report_written {
                return Err(format!("the engine finished without writing {REPORT_NAME}"));
            }
            store_final(context, job).await?;
            Ok((Outcome::Succeeded, String::new(), Some(report)))
        }
    }
}

/// What the job's training process may reach: its own folders, what it reads, and the machine
/// less what the worker hides from it.
fn confinement(context: &JobContext, job: &Job, images: &ImagesAt) -> Confinement {
    let hidden = match &context.training {
        Training::ChildProcess { hidden, .. } => hidden.as_slice(),
        Training::Thread => &[],
    };
    let dataset = match images {
        ImagesAt::Folder { root, .. } => Some(root.as_path()),
        ImagesAt::Blobs(_) => None,
    };
    let folders = JobFolders {
        job: &job.dir,
        run: &job.run_dir(),
        cache: &context.dirs.cache,
        blobs: context.blobs.dir(),
        dataset,
    };
    Confinement::for_job(hidden, &folders, &std::env::temp_dir())
}

/// The job's spec as submitted, with an uploaded `model.pretrained` checked intact and replaced
/// by its blob's path.
async fn resolved_spec(
    context: &Arc<JobContext>,
    job: &Job,
) -> Result<easel_spec::ExperimentSpec, String> {
    let spec_text = std::fs::read_to_string(job.spec_path())
        .map_err(|e| format!("{}: {e}", super::job::SPEC_FILE))?;
    let mut spec = parse_spec(&spec_text).map_err(|e| e.to_string())?;
    if let Some(digest) = pretrained_blob(&spec).map(str::to_owned) {
        // Hashing weights of hundreds of MB is blocking work.
        let checking = (Arc::clone(context), digest.clone());
        tokio::task::spawn_blocking(move || checking.0.blobs.check_intact(&checking.1))
            .await
            .map_err(|_| "checking model.pretrained stopped unexpectedly".to_string())?
            .map_err(|e| format!("model.pretrained: {e}"))?;
        let path =
            easel_dataset::blob_path(context.blobs.dir(), &digest).map_err(|e| e.to_string())?;
        spec.model.pretrained = Some(path);
    }
    Ok(spec)
}

/// The manifest the run trains on, where its images are read from, and the lease that keeps a
/// copied bucket dataset in place while it runs.
async fn dataset_for(
    context: &Arc<JobContext>,
    job: &Arc<Job>,
    spec: &easel_spec::ExperimentSpec,
) -> Result<(Manifest, ImagesAt, Option<Lease>), String> {
    let dataset = match spec.data.object_store_url().map(str::to_owned) {
        Some(url) => {
            let dataset = super::object_dataset::prepare(context, job, &url, spec).await?;
            let images = ImagesAt::Folder {
                root: dataset.root,
                max_file_bytes: dataset.max_file_bytes,
            };
            (dataset.manifest, images, Some(dataset.lease))
        }
        None => {
            let manifest_text = std::fs::read_to_string(job.manifest_path())
                .map_err(|e| format!("{}: {e}", super::job::MANIFEST_FILE))?;
            let manifest = Manifest::from_json(&manifest_text)
                .map_err(|e| format!("{}: {e}", super::job::MANIFEST_FILE))?;
            (
                manifest,
                ImagesAt::Blobs(context.blobs.dir().to_owned()),
                None,
            )
        }
    };
    Ok(dataset)
}

/// Leases the decoded cache the run will read or write, first making room for it when it must
/// be written: the least recently used caches go, and the job's events say so.
pub(crate) fn lease_decoded_cache(
    context: &JobContext,
    job: &Job,
    manifest: &Manifest,
    spec: &easel_spec::ExperimentSpec,
) -> Lease {
    let (path, bytes) = easel_engine::pipeline::decoded_cache_file(
        &context.dirs.cache,
        manifest,
        spec.data.image_size.height(),
        spec.data.image_size.width(),
    );
    if !path.exists() {
        let trimmed = context.caches.make_room(bytes);
        if let Some(message) = trimmed.summary() {
            job.emit(EventKind::Note { message });
        }
    }
    context.caches.lease(&path)
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
            "state": JobState::Queued,
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
