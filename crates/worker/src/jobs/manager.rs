//! The job manager: submit, queue, schedule onto devices, cancel, follow. Plain domain types in
//! and out; the gRPC adapter (`grpc.rs`) translates.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use easel_dataset::Manifest;
use easel_spec::ExperimentSpec;
use easel_spec::worker::DeviceName;
use easel_store::{ArtifactStore, RetryPolicy, StoreOptions};
use tokio::sync::{Notify, mpsc, watch};

use super::events::{EventKind, EventRecord, Outcome};
use super::log::EventLog;
use super::record::{JobRecord, JobState};
use super::resume::ResumePoint;
use crate::blobs::BlobStore;
use crate::error::{Error, Result};

/// One job known to this worker.
pub struct Job {
    pub id: String,
    pub dir: PathBuf,
    pub record: Mutex<JobRecord>,
    pub log: EventLog,
    /// Checked by the engine every step.
    pub cancel: Arc<AtomicBool>,
    /// Set with `cancel` when the worker stops: the job is re-queued, not cancelled.
    pub interrupted: AtomicBool,
}

impl Job {
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

    pub fn run_dir(&self) -> PathBuf {
        self.dir.join("run")
    }

    pub fn emit(&self, kind: EventKind) {
        if let Err(error) = self.log.append(kind) {
            tracing::error!(job = %self.id, %error, "event not persisted");
        }
    }
}

pub struct SubmitOutcome {
    pub job: JobRecord,
    pub created: bool,
}

pub(crate) struct Inner {
    pub jobs: BTreeMap<String, Arc<Job>>,
    pub queue: VecDeque<String>,
    pub by_key: HashMap<String, String>,
    pub free_devices: Vec<DeviceName>,
    pub running: usize,
    pub accepting: bool,
}

pub struct JobManager {
    pub(crate) jobs_dir: PathBuf,
    pub(crate) cache_dir: PathBuf,
    /// Checkpoints being fetched for `resume_from_job`, before their job exists.
    pub(crate) staging_dir: PathBuf,
    pub blobs: BlobStore,
    pub store: ArtifactStore,
    /// Credentials and endpoint for datasets read from object storage (`data.path = "s3://…"`),
    /// which may live in another bucket than the artifacts.
    pub(crate) store_options: StoreOptions,
    /// Copies of object-store datasets, one folder per dataset URL.
    pub(crate) datasets_dir: PathBuf,
    /// Held while a dataset is copied.
    pub(crate) dataset_copy: tokio::sync::Mutex<()>,
    pub(crate) retry: RetryPolicy,
    max_queued: usize,
    pub(crate) inner: Mutex<Inner>,
    pub(crate) wake: Notify,
    idle: Notify,
    stopping: watch::Sender<bool>,
}

pub struct ManagerSettings {
    pub data_dir: PathBuf,
    pub store: ArtifactStore,
    pub store_options: StoreOptions,
    pub devices: Vec<DeviceName>,
    pub max_queued: usize,
    pub max_chunk_bytes: u64,
    pub max_blob_bytes: u64,
    pub retry: RetryPolicy,
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
            max_chunk_bytes: 1 << 20,
            max_blob_bytes: 1 << 30,
            retry: RetryPolicy::default(),
        }
    }
}

impl JobManager {
    /// Opens the data dir, reloading every job (see `recover.rs` for what a restart does).
    pub fn open(settings: ManagerSettings) -> Result<Arc<JobManager>> {
        let jobs_dir = settings.data_dir.join("jobs");
        let cache_dir = settings.data_dir.join("cache");
        let staging_dir = settings.data_dir.join("staging");
        let datasets_dir = settings.data_dir.join("datasets");
        // Whatever is staged belonged to submits that never finished.
        let _ = std::fs::remove_dir_all(&staging_dir);
        for dir in [&jobs_dir, &cache_dir, &staging_dir, &datasets_dir] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let blobs = BlobStore::open(
            settings.data_dir.join("blobs"),
            settings.max_chunk_bytes,
            settings.max_blob_bytes,
        )?;
        let recovered = super::recover::load_jobs(&jobs_dir)?;
        let manager = JobManager {
            jobs_dir,
            cache_dir,
            staging_dir,
            blobs,
            store: settings.store,
            store_options: settings.store_options,
            datasets_dir,
            dataset_copy: tokio::sync::Mutex::new(()),
            retry: settings.retry,
            max_queued: settings.max_queued,
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

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn job(&self, id: &str) -> Result<Arc<Job>> {
        self.lock()
            .jobs
            .get(id)
            .cloned()
            .ok_or_else(|| Error::JobNotFound(id.to_owned()))
    }

    pub fn get(&self, id: &str) -> Result<JobRecord> {
        Ok(self.job(id)?.snapshot())
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<JobRecord> {
        let jobs: Vec<Arc<Job>> = self.lock().jobs.values().cloned().collect();
        let mut records: Vec<JobRecord> = jobs.iter().map(|j| j.snapshot()).collect();
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        records
    }

    /// The job an idempotency key already named, if any.
    pub fn existing(&self, key: &str) -> Option<JobRecord> {
        if key.is_empty() {
            return None;
        }
        let inner = self.lock();
        let id = inner.by_key.get(key)?;
        inner.jobs.get(id).map(|job| job.snapshot())
    }

    /// Queues a job; with `resume`, its run directory starts with that checkpoint (see
    /// `resume.rs`), so training continues after the checkpoint's epochs.
    pub fn submit(
        &self,
        spec_toml: &str,
        manifest_json: &str,
        key: &str,
        resume: Option<ResumePoint>,
    ) -> Result<SubmitOutcome> {
        let mut inner = self.lock();
        if !inner.accepting {
            return Err(Error::ShuttingDown);
        }
        if !key.is_empty()
            && let Some(id) = inner.by_key.get(key)
            && let Some(job) = inner.jobs.get(id)
        {
            return Ok(SubmitOutcome {
                job: job.snapshot(),
                created: false,
            });
        }
        let spec = parse_spec(spec_toml)?;
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
        let missing = self.blobs.missing(&digests)?;
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
        let dir = self.jobs_dir.join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        write_file(&dir.join("spec.toml"), spec_toml)?;
        write_file(&dir.join("manifest.json"), manifest_json)?;
        if let Some(resume) = &resume
            && let Err(error) = resume.install(&dir.join("run"))
        {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(error);
        }
        let record = JobRecord {
            id: id.clone(),
            name: spec.name.clone(),
            state: JobState::Queued,
            reason: String::new(),
            idempotency_key: key.to_owned(),
            created_at: super::now(),
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
            store_url: self.store.url().to_owned(),
        };
        record.save(&dir)?;
        let job = Arc::new(Job {
            id: id.clone(),
            log: EventLog::open(dir.join("events.jsonl"))?,
            dir,
            record: Mutex::new(record),
            cancel: Arc::default(),
            interrupted: AtomicBool::new(false),
        });
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
            inner.by_key.insert(key.to_owned(), id.clone());
        }
        drop(inner);
        tracing::info!(job = %id, images = job.snapshot().dataset_images, "job queued");
        self.wake.notify_one();
        Ok(SubmitOutcome {
            job: job.snapshot(),
            created: true,
        })
    }

    /// Cancels a queued job at once, a running one at its next step.
    pub fn cancel(&self, id: &str) -> Result<JobRecord> {
        let job = self.job(id)?;
        let mut inner = self.lock();
        let state = job.snapshot().state;
        match state {
            JobState::Queued => {
                inner.queue.retain(|queued| queued != id);
                drop(inner);
                job.emit(EventKind::Finished {
                    outcome: Outcome::Cancelled,
                    reason: "cancelled while queued".into(),
                    report: None,
                });
                job.update(|r| {
                    r.state = JobState::Cancelled;
                    r.reason = "cancelled while queued".into();
                    r.finished_at = Some(super::now());
                })
            }
            JobState::Running => {
                drop(inner);
                if !job.cancel.swap(true, Ordering::SeqCst) {
                    job.emit(EventKind::Note {
                        message: "cancel requested; stopping at the next step".into(),
                    });
                    tracing::info!(job = %id, "cancel requested");
                }
                Ok(job.snapshot())
            }
            _ => Ok(job.snapshot()),
        }
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
                    super::runner::run_job(&manager, &job, device).await;
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

    /// Stops accepting jobs, interrupts running ones (they checkpoint and are re-queued), and
    /// waits until none runs. `Watch` streams end.
    pub async fn shutdown(&self) {
        let running: Vec<Arc<Job>> = {
            let mut inner = self.lock();
            inner.accepting = false;
            inner
                .jobs
                .values()
                .filter(|j| j.snapshot().state == JobState::Running)
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

    /// The second signal: stop without waiting for a checkpoint.
    pub fn is_accepting(&self) -> bool {
        self.lock().accepting
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }
}

/// Parses and validates a submitted spec (its data paths name the client's folders and are not
/// checked here: the manifest replaces them).
pub(crate) fn parse_spec(text: &str) -> Result<ExperimentSpec> {
    easel_spec::parse_experiment(text, "submitted spec")
        .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Parses and checks a submitted dataset manifest.
pub(crate) fn parse_manifest(text: &str) -> Result<Manifest> {
    let manifest = Manifest::from_json(text)
        .map_err(|e| Error::InvalidArgument(format!("dataset manifest: {e}")))?;
    manifest
        .validate()
        .map_err(|e| Error::InvalidArgument(format!("dataset manifest: {e}")))?;
    Ok(manifest)
}

/// The blob digest a submitted spec's `model.pretrained = "blob:<digest>"` names.
pub(crate) fn pretrained_blob(spec: &ExperimentSpec) -> Option<&str> {
    spec.model
        .pretrained
        .as_ref()?
        .to_str()?
        .strip_prefix("blob:")
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
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
