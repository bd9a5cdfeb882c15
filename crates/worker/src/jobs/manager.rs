//! The job manager: submit, queue, schedule onto devices, cancel, follow. Plain domain types in
//! and out; the gRPC adapter (`grpc.rs`) translates.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::Ordering;

use easel_spec::worker::DeviceName;
use easel_store::{ArtifactStore, RetryPolicy, StoreOptions};
use tokio::sync::{Notify, mpsc, watch};

use super::context::{JobContext, WorkerDirs};
use super::job::{Job, MANIFEST_FILE, SPEC_FILE};
use super::reclaim::Reclaimed;
use super::record::{JobRecord, JobState, owned_key};
use super::resume::ResumePoint;
use super::submission::{
    ManifestText, check_dataset_prefixes, check_image_pixels, check_local_paths, parse_manifest,
    parse_spec, pretrained_blob,
};
use super::training::Training;
use crate::access::Caller;
use crate::blobs::{BlobLimits, BlobStore};
use crate::caches::CacheRoom;
use crate::error::{Error, Result};
use easel_events::now;
use easel_events::{EventKind, EventRecord, Outcome};

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
    inner: Mutex<Inner>,
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
    pub retry: RetryPolicy,
    pub training: Training,
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
                .map(Path::to_path_buf)
                .collect(),
            dataset_prefixes: Vec::new(),
            max_image_pixels: 40_000_000,
            retry: RetryPolicy::default(),
            training: Training::Thread,
        }
    }
}

impl JobManager {
    /// Opens the data dir, reloading every job (see `recover.rs` for what a restart does).
    pub fn open(settings: ManagerSettings) -> Result<Arc<JobManager>> {
        let dirs = WorkerDirs::create(&settings.data_dir)?;
        let blobs = BlobStore::open(settings.data_dir.join("blobs"), settings.blob_limits)?;
        let recovered = super::recover::load_jobs(&dirs.jobs, settings.max_restarts)?;
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
        };
        let manager = JobManager {
            context: Arc::new(context),
            max_queued: settings.max_queued,
            local_paths: settings.local_paths,
            dataset_prefixes: settings.dataset_prefixes,
            max_image_pixels: settings.max_image_pixels,
            inner: Mutex::new(Inner {
                jobs: recovered.jobs,
                queue: recovered.queue,
                by_key: recovered.by_key,
                free_devices: settings.devices,
                running: 0,
                accepting: true,
            }),
            wake: Notify::new(),
            idle: Notify::new(),
            stopping: watch::channel(false).0,
        };
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

    /// The job `owner`'s idempotency key already named, if any.
    pub fn existing(&self, owner: &str, key: &str) -> Option<JobRecord> {
        if key.is_empty() {
            return None;
        }
        let inner = self.lock();
        let id = inner.by_key.get(&owned_key(owner, key))?;
        inner.jobs.get(id).map(|job| job.snapshot())
    }

    /// Queues a job owned by `owner`; with `resume`, its run directory starts with that
    /// checkpoint (see `resume.rs`), so training continues after the checkpoint's epochs.
    pub fn submit(
        &self,
        spec_toml: &str,
        manifest_text: &ManifestText,
        owner: &str,
        key: &str,
        resume: Option<ResumePoint>,
    ) -> Result<SubmitOutcome> {
        let manifest_json = manifest_text.json.as_str();
        let mut inner = self.lock();
        if !inner.accepting {
            return Err(Error::ShuttingDown);
        }
        let owned_key = owned_key(owner, key);
        if !key.is_empty()
            && let Some(id) = inner.by_key.get(&owned_key)
            && let Some(job) = inner.jobs.get(id)
        {
            return Ok(SubmitOutcome {
                job: job.snapshot(),
                created: false,
            });
        }
        let spec = parse_spec(spec_toml)?;
        check_local_paths(&spec, &self.local_paths)?;
        check_dataset_prefixes(&spec, &self.dataset_prefixes)?;
        check_image_pixels(&spec, self.max_image_pixels)?;
        let manifest = parse_manifest(manifest_json)?;
        if let Some(url) = spec.data.object_store_url()
            && !manifest.entries.is_empty()
        {
            return Err(Error::InvalidArgument(format!(
                "the spec reads its dataset from {url}; the manifest must be empty (the worker scans the dataset)"
            )));
        }
        let mut digests: Vec<String> = manifest
            .unique_blobs()
            .iter()
            .map(|(d, _)| (*d).to_owned())
            .collect();
        if let Some(digest) = pretrained_blob(&spec) {
            digests.push(digest.to_owned());
        }
        let missing = self.context.blobs.missing(&digests)?;
        if let Some((first, _)) = missing.first() {
            return Err(Error::FailedPrecondition(format!(
                "{} of the dataset's {} files are not on the worker yet (first: {first}); upload them before submitting",
                missing.len(),
                digests.len()
            )));
        }
        if inner.queue.len() >= self.max_queued {
            return Err(Error::QueueFull(inner.queue.len()));
        }
        let id = new_job_id(&inner.jobs);
        let dir = self.context.dirs.jobs.join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        write_file(&dir.join(SPEC_FILE), spec_toml)?;
        write_file(&dir.join(MANIFEST_FILE), manifest_json)?;
        if let Some(resume) = &resume
            && let Err(error) = resume.install(&dir.join(super::job::RUN_DIR))
        {
            remove_refused_job_dir(&dir);
            return Err(error);
        }
        let record = JobRecord {
            id: id.clone(),
            name: spec.name.clone(),
            state: JobState::Queued,
            reason: String::new(),
            idempotency_key: key.to_owned(),
            created_at: now(),
            started_at: None,
            finished_at: None,
            device: String::new(),
            epochs_total: u32::try_from(spec.train.epochs).unwrap_or(0),
            epochs_done: resume.as_ref().map_or(0, |r| r.epochs_done),
            best_validation_accuracy: None,
            test_accuracy: None,
            last_sequence: 0,
            dataset_images: manifest.entries.len() as u64,
            dataset_bytes: manifest.total_bytes(),
            store_url: self.context.store.url().to_owned(),
            manifest_blob: manifest_text.blob_digest.clone(),
            crash_restarts: 0,
            owner: owner.to_owned(),
        };
        record.save(&dir)?;
        let job = Arc::new(Job::open(dir, record)?);
        job.emit(EventKind::Queued {
            position: inner.queue.len() as u32,
        });
        if let Some(resume) = &resume {
            job.emit(EventKind::Note {
                message: resume.note(),
            });
            tracing::info!(job = %id, from_job = %resume.from_job, epochs_done = resume.epochs_done, "job resumes another job's checkpoint");
        }
        inner.jobs.insert(id.clone(), job.clone());
        inner.queue.push_back(id.clone());
        if !key.is_empty() {
            inner.by_key.insert(owned_key, id.clone());
        }
        drop(inner);
        tracing::info!(job = %id, images = job.snapshot().dataset_images, "job queued");
        self.wake.notify_one();
        Ok(SubmitOutcome {
            job: job.snapshot(),
            created: true,
        })
    }

    /// Cancels a queued job at once, a running one at its next step. A job the scheduler has
    /// just taken is either cancelled here before it starts, or started first and then stopped
    /// at its next step: never both (see [`Job::transition`]).
    pub fn cancel(&self, id: &str) -> Result<JobRecord> {
        let job = self.job(id)?;
        let reason = "cancelled while queued";
        let cancelled_queued = job.transition(JobState::Queued, |r| {
            // Logged before the state shows it, so a follower never sees a finished job
            // without its last event.
            job.emit(EventKind::Finished {
                outcome: Outcome::Cancelled,
                reason: reason.into(),
                report: None,
            });
            r.state = JobState::Cancelled;
            r.reason = reason.into();
            r.finished_at = Some(now());
        })?;
        if cancelled_queued {
            self.lock().queue.retain(|queued| queued != id);
            return Ok(job.snapshot());
        }
        if job.snapshot().state == JobState::Running && !job.cancel.swap(true, Ordering::SeqCst) {
            job.emit(EventKind::Note {
                message: "cancel requested; stopping at the next step".into(),
            });
            tracing::info!(job = %id, "cancel requested");
        }
        Ok(job.snapshot())
    }

    /// Takes a finished job off the worker (blocking file IO): its record, folder and the blobs
    /// no remaining job names. A queued or running job is refused: cancel it first. New submits
    /// wait meanwhile, so none can come to rely on a blob being removed.
    pub fn remove(&self, id: &str) -> Result<Reclaimed> {
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
                state.as_str()
            )));
        }
        inner.jobs.remove(id);
        inner.by_key.retain(|_, job_id| job_id != id);
        let remaining: Vec<Arc<Job>> = inner.jobs.values().cloned().collect();
        let reclaimed = super::reclaim::reclaim(&self.context, &job, &remaining)?;
        drop(inner);
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

    /// Starts queued jobs whenever a device is free. Runs until the worker stops.
    pub async fn schedule(self: Arc<Self>) {
        let mut stopping = self.stopping.subscribe();
        loop {
            loop {
                let next = {
                    let mut inner = self.lock();
                    if !inner.accepting || inner.free_devices.is_empty() {
                        None
                    } else {
                        inner.queue.pop_front().and_then(|id| {
                            let job = inner.jobs.get(&id).cloned()?;
                            let device = inner.free_devices.remove(0);
                            inner.running += 1;
                            Some((job, device))
                        })
                    }
                };
                let Some((job, device)) = next else { break };
                let manager = self.clone();
                tokio::spawn(async move {
                    super::runner::run_job(&manager.context, &job, device).await;
                    let mut inner = manager.lock();
                    inner.free_devices.push(device);
                    inner.running -= 1;
                    let idle = inner.running == 0;
                    drop(inner);
                    if idle {
                        manager.idle.notify_waiters();
                    }
                    manager.wake.notify_one();
                });
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = stopping.wait_for(|s| *s) => return,
            }
        }
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

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// A job refused after its folder was made leaves nothing behind; if the folder cannot be
/// removed it is only logged: without a `state.json` a restart skips it.
fn remove_refused_job_dir(dir: &Path) {
    if let Err(error) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), %error, "folder of a refused job not removed");
    }
}

/// `YYYYMMDD-HHMMSS-xxxx`: sorts by creation time, readable in listings, unique on this worker.
fn new_job_id(existing: &BTreeMap<String, Arc<Job>>) -> String {
    use rand::Rng;
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    loop {
        let suffix: u16 = rand::rng().random();
        let id = format!("{}-{}-{suffix:04x}", &digits[..8], &digits[8..14]);
        if !existing.contains_key(&id) {
            return id;
        }
    }
}
