//! The job manager: the table of jobs and the queue, in memory behind one short lock. Submit
//! (`submit.rs`), scheduling onto devices (`scheduler.rs`), cancel, remove, follow. Plain
//! domain types in and out; the gRPC adapter (`network/grpc.rs`) translates.

mod scheduler;
mod submit;
mod sweeps;

pub use sweeps::{SweepOutcome, SweepRemoved};

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, RwLock};

use easel_spec::worker::DeviceName;
use easel_store::{ArtifactStore, RetryPolicy, StoreOptions};
use tokio::sync::{Notify, mpsc, watch};

use super::context::{JobContext, WorkerDirs};
use super::job::{Ending, Job};
use super::reclaim::Reclaimed;
use super::record::{JobRecord, JobState, Submitter};
use super::sweep::SweepRecord;
use crate::access::Caller;
use crate::error::{Error, Result};
use crate::storage::blobs::{BlobLimits, BlobStore};
use crate::storage::caches::CacheRoom;
use crate::training::Training;
use easel_events::EventRecord;

pub struct SubmitOutcome {
    pub job: JobRecord,
    pub created: bool,
}

struct Inner {
    jobs: BTreeMap<String, Arc<Job>>,
    queue: VecDeque<String>,
    by_key: HashMap<String, String>,
    free_devices: Vec<DeviceName>,
    running: usize,
    accepting: bool,
    sweeps: BTreeMap<String, Arc<SweepRecord>>,
    sweeps_by_key: HashMap<String, String>,
    /// Trials of each sweep holding a training slot (for its `max_concurrent`).
    running_by_sweep: HashMap<String, usize>,
}

pub struct JobManager {
    context: Arc<JobContext>,
    max_queued: usize,
    /// Worker folders a submitted spec may read (`access.local_paths`).
    local_paths: Vec<PathBuf>,
    /// Bucket URL prefixes a submitted dataset may lie under (`access.dataset_prefixes`).
    dataset_prefixes: Vec<String>,
    /// `limits.max_image_pixels`.
    max_image_pixels: u64,
    /// `limits.max_trials_per_sweep`.
    max_trials_per_sweep: usize,
    /// In-memory tables only: never held across a file read, a stat or a write.
    inner: Mutex<Inner>,
    /// Held shared by a submit from its blob check until its job is in the table, and
    /// exclusively by `remove` while it deletes blobs no job names.
    blobs_in_use: RwLock<()>,
    /// Tests park a submit here, in the middle of being accepted.
    #[cfg(test)]
    submit_pause: Mutex<Option<SubmitPause>>,
    wake: Notify,
    idle: Notify,
    stopping: watch::Sender<bool>,
}

pub struct ManagerSettings {
    pub data_dir: PathBuf,
    pub store: ArtifactStore,
    pub store_options: StoreOptions,
    pub devices: Vec<DeviceName>,
    pub max_queued: usize,
    pub blob_limits: BlobLimits,
    /// `cache.max_bytes`: the decoded caches' and copied datasets' own limit (0: none).
    pub cache_max_bytes: u64,
    /// `queue.max_restarts`: times a job the worker died under is resumed.
    pub max_restarts: u32,
    /// `queue.restart_pause_seconds`: the first wait before such a job runs again.
    pub restart_pause: std::time::Duration,
    /// `access.local_paths`: worker folders a spec may read.
    pub local_paths: Vec<PathBuf>,
    /// `access.dataset_prefixes`: bucket URL prefixes a spec's dataset may lie under.
    pub dataset_prefixes: Vec<String>,
    /// `limits.max_image_pixels`: the most `data.max_image_pixels` a spec may set.
    pub max_image_pixels: u64,
    /// `limits.max_trials_per_sweep`: the most trials one sweep may expand into.
    pub max_trials_per_sweep: usize,
    pub retry: RetryPolicy,
    pub training: Training,
    /// `price_per_hour`: what the machine costs, for each run's report page.
    pub price_per_hour: Option<f64>,
}

#[cfg(test)]
impl ManagerSettings {
    /// A CPU worker in `data_dir` with an in-memory artifact store, for unit tests.
    pub(crate) fn for_tests(data_dir: &std::path::Path) -> ManagerSettings {
        ManagerSettings {
            data_dir: data_dir.to_owned(),
            store: ArtifactStore::open("memory://", &StoreOptions::default())
                .expect("memory store"),
            store_options: StoreOptions::default(),
            devices: vec![DeviceName::Cpu],
            max_queued: 8,
            blob_limits: BlobLimits {
                max_chunk_bytes: 1 << 20,
                max_blob_bytes: 1 << 30,
                max_stored_bytes: 0,
                min_free_bytes: 0,
            },
            cache_max_bytes: 0,
            max_restarts: 3,
            restart_pause: std::time::Duration::from_secs(2),
            // The folder the tests make their buckets and weights in.
            local_paths: data_dir
                .parent()
                .into_iter()
                .map(std::path::Path::to_path_buf)
                .collect(),
            dataset_prefixes: Vec::new(),
            max_image_pixels: 40_000_000,
            max_trials_per_sweep: easel_spec::sweep::DEFAULT_MAX_TRIALS,
            retry: RetryPolicy::default(),
            training: Training::Thread,
            price_per_hour: None,
        }
    }
}

impl JobManager {
    /// Opens the data dir, reloading every job (see `recover.rs` for what a restart does).
    pub fn open(settings: ManagerSettings) -> Result<Arc<JobManager>> {
        let dirs = WorkerDirs::create(&settings.data_dir)?;
        let blobs = BlobStore::open(settings.data_dir.join("blobs"), settings.blob_limits)?;
        let recovered = super::recover::load_jobs(&dirs.jobs, settings.max_restarts)?;
        let sweeps = SweepRecord::load_all(&dirs.sweeps)?;
        let caches = CacheRoom::new(
            dirs.cache.clone(),
            dirs.datasets.clone(),
            settings.cache_max_bytes,
            settings.blob_limits.min_free_bytes,
        );
        caches.sweep_leftovers();
        let caches = Arc::new(caches);
        blobs.give_way(caches.clone());
        let context = JobContext {
            store: settings.store,
            store_options: settings.store_options,
            retry: settings.retry,
            blobs,
            dirs,
            caches,
            dataset_copy: tokio::sync::Mutex::new(()),
            restart_pause: settings.restart_pause,
            training: settings.training,
            referee: super::sweep::Referee::default(),
            price_per_hour: settings.price_per_hour,
        };
        let manager = JobManager {
            context: Arc::new(context),
            max_queued: settings.max_queued,
            local_paths: settings.local_paths,
            dataset_prefixes: settings.dataset_prefixes,
            max_image_pixels: settings.max_image_pixels,
            max_trials_per_sweep: settings.max_trials_per_sweep,
            inner: Mutex::new(Inner {
                jobs: recovered.jobs,
                queue: recovered.queue,
                by_key: recovered.by_key,
                free_devices: settings.devices,
                running: 0,
                accepting: true,
                sweeps: BTreeMap::new(),
                sweeps_by_key: HashMap::new(),
                running_by_sweep: HashMap::new(),
            }),
            blobs_in_use: RwLock::new(()),
            #[cfg(test)]
            submit_pause: Mutex::new(None),
            wake: Notify::new(),
            idle: Notify::new(),
            stopping: watch::channel(false).0,
        };
        manager.reload_sweeps(sweeps);
        Ok(Arc::new(manager))
    }

    /// The store, blobs and folders the worker's jobs run with.
    pub fn context(&self) -> &Arc<JobContext> {
        &self.context
    }

    pub fn store(&self) -> &ArtifactStore {
        &self.context.store
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.context.blobs
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn job(&self, id: &str) -> Result<Arc<Job>> {
        self.lock()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| Error::JobNotFound(id.to_owned()))
    }

    /// A job `caller` may see: another owner's job is as unknown as a missing one, so job ids
    /// say nothing about other users' work.
    pub fn job_for(&self, caller: &Caller, id: &str) -> Result<Arc<Job>> {
        let job = self.job(id)?;
        if caller.may_see(&job.owner) {
            Ok(job)
        } else {
            Err(Error::JobNotFound(id.to_owned()))
        }
    }

    pub fn get(&self, id: &str) -> Result<JobRecord> {
        Ok(self.job(id)?.snapshot())
    }

    /// Every job `caller` may see, oldest first.
    pub fn list(&self, caller: &Caller) -> Vec<JobRecord> {
        let jobs: Vec<Arc<Job>> = self
            .lock()
            .jobs
            .values()
            .filter(|job| caller.may_see(&job.owner))
            .cloned()
            .collect();
        let mut records: Vec<JobRecord> = jobs.iter().map(|j| j.snapshot()).collect();
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        records
    }

    /// The job `submitter`'s idempotency key already named, if any.
    pub fn existing(&self, submitter: &Submitter) -> Option<JobRecord> {
        let key = submitter.owned_key()?;
        let inner = self.lock();
        let id = inner.by_key.get(&key)?;
        inner.jobs.get(id).map(|job| job.snapshot())
    }

    /// Cancels a queued job at once, a running one at its next step. A job the scheduler has
    /// just taken is either cancelled here before it starts, or started first and then stopped
    /// at its next step: never both (see [`Job::transition`]).
    pub fn cancel(&self, id: &str) -> Result<JobRecord> {
        let job = self.job(id)?;
        let cancelled_queued = job.finish_if(
            JobState::Queued,
            Ending::cancelled("cancelled while queued"),
        )?;
        if cancelled_queued {
            self.lock().queue.retain(|queued| queued != id);
            return Ok(job.snapshot());
        }
        if job.snapshot().state == JobState::Running && !job.cancel.swap(true, Ordering::SeqCst) {
            job.emit(easel_events::EventKind::Note {
                message: "cancel requested; stopping at the next step".into(),
            });
            tracing::info!(job = %id, "cancel requested");
        }
        Ok(job.snapshot())
    }

    /// Takes a finished job off the worker (blocking file IO): its record, folder and the blobs
    /// no remaining job names. A queued or running job is refused: cancel it first. New submits
    /// wait meanwhile, so none can come to rely on a blob being removed; everything else goes on
    /// (the files are read and deleted outside the manager's lock).
    pub fn remove(&self, id: &str) -> Result<Reclaimed> {
        let _blobs_in_use = self.blobs_in_use.write().unwrap_or_else(|e| e.into_inner());
        let (job, remaining) = {
            let mut inner = self.lock();
            let job = inner
                .jobs
                .get(id)
                .cloned()
                .ok_or_else(|| Error::JobNotFound(id.to_owned()))?;
            let state = job.snapshot().state;
            if !state.is_terminal() {
                return Err(Error::FailedPrecondition(format!(
                    "job {id} is {}; cancel it first (client cancel {id})",
                    state.name()
                )));
            }
            inner.jobs.remove(id);
            inner.by_key.retain(|_, job_id| job_id != id);
            let remaining: Vec<Arc<Job>> = inner.jobs.values().cloned().collect();
            (job, remaining)
        };
        let reclaimed = super::reclaim::reclaim(&self.context, &job, &remaining)?;
        tracing::info!(
            job = %id,
            freed_bytes = reclaimed.freed_bytes(),
            blobs = reclaimed.blobs_removed,
            "job removed"
        );
        Ok(reclaimed)
    }

    /// Events after `from_sequence`: the log first, then live ones until the job ends (or the
    /// worker stops, or the receiver goes away).
    pub fn watch(&self, id: &str, from_sequence: u64) -> Result<mpsc::Receiver<EventRecord>> {
        let job = self.job(id)?;
        let (tx, rx) = mpsc::channel(64);
        let mut latest = job.log.subscribe();
        let mut stopping = self.stopping.subscribe();
        tokio::spawn(async move {
            let mut sent = from_sequence;
            loop {
                for event in job.log.after(sent) {
                    sent = event.sequence;
                    let ends = event.kind.ends_job();
                    if tx.send(event).await.is_err() || ends {
                        return;
                    }
                }
                if job.snapshot().state.is_terminal() && job.log.last_sequence() <= sent {
                    return;
                }
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { return },
                    _ = stopping.wait_for(|s| *s) => return,
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(rx)
    }

    /// Stops accepting jobs, interrupts running ones (they checkpoint and are re-queued) and
    /// ones waiting to resume after a crash, and waits until none runs. `Watch` streams end.
    pub async fn shutdown(&self) {
        let running: Vec<Arc<Job>> = {
            let mut inner = self.lock();
            inner.accepting = false;
            inner
                .jobs
                .values()
                .filter(|j| matches!(j.snapshot().state, JobState::Running | JobState::Queued))
                .cloned()
                .collect()
        };
        for job in &running {
            job.interrupted.store(true, Ordering::SeqCst);
            job.cancel.store(true, Ordering::SeqCst);
        }
        loop {
            let idle = self.idle.notified();
            if self.lock().running == 0 {
                break;
            }
            idle.await;
        }
        self.stopping.send_replace(true);
    }
}

/// Where a test holds a submit: it says it arrived, then waits to be let go.
#[cfg(test)]
pub(crate) struct SubmitPause {
    pub arrived: std::sync::mpsc::Sender<()>,
    pub go_on: std::sync::mpsc::Receiver<()>,
}

#[cfg(test)]
impl JobManager {
    /// The next submit stops after its blob check, with its dataset's every entry checked.
    pub(crate) fn pause_next_submit(&self, pause: SubmitPause) {
        *self.submit_pause.lock().unwrap() = Some(pause);
    }

    fn pause_for_tests(&self) {
        let pause = self.submit_pause.lock().unwrap().take();
        if let Some(pause) = pause {
            let _ = pause.arrived.send(());
            let _ = pause.go_on.recv();
        }
    }

    /// Parses the texts as `Submit` does, then submits as `owner` without an idempotency key.
    pub(crate) fn submit_text(
        &self,
        spec_toml: &str,
        manifest: &crate::jobs::submission::ManifestText,
        owner: &str,
    ) -> Result<SubmitOutcome> {
        let submission =
            crate::jobs::submission::Submission::parse(spec_toml.to_owned(), manifest.clone())?;
        let submitter = Submitter {
            owner: owner.to_owned(),
            idempotency_key: String::new(),
        };
        self.submit(submission, &submitter, None)
    }
}
