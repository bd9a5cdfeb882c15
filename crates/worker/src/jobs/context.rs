//! What a job's run needs from the worker, and nothing about the queue: the artifact store and
//! its retry policy, the uploaded blobs, and the worker's folders. The manager owns one and hands
//! it to runs, resumes and uploads.

use std::path::{Path, PathBuf};

use easel_store::{ArtifactStore, RetryPolicy, StoreOptions};

use crate::error::{Error, Result};
use crate::storage::blobs::BlobStore;
use crate::storage::caches::CacheRoom;

pub struct JobContext {
    pub store: ArtifactStore,
    /// Credentials and endpoint for datasets read from object storage (`data.path = "s3://…"`),
    /// which may live in another bucket than the artifacts.
    pub store_options: StoreOptions,
    pub retry: RetryPolicy,
    pub blobs: BlobStore,
    pub dirs: WorkerDirs,
    /// The decoded caches and copied datasets, trimmed to their room.
    pub caches: std::sync::Arc<CacheRoom>,
    /// Held while a dataset is copied: two jobs on one dataset must not write the same files.
    pub dataset_copy: tokio::sync::Mutex<()>,
    /// `queue.restart_pause_seconds`: the first wait before a job the worker died under resumes.
    pub restart_pause: std::time::Duration,
    /// Where runs train: in a supervised child process, or on a thread of this one.
    pub training: crate::training::Training,
    /// Judges sweep trials by their sweep's early-stop rule after each epoch.
    pub referee: super::sweep::Referee,
    /// `price_per_hour`: what the machine costs, for each run's report page.
    pub price_per_hour: Option<f64>,
}

/// The folders under the worker's data directory.
pub struct WorkerDirs {
    /// One folder per job: record, spec, manifest, events, run directory.
    pub jobs: PathBuf,
    /// The engine's decoded-image caches, shared by jobs.
    pub cache: PathBuf,
    /// Checkpoints being fetched for `resume_from_job`, before their job exists.
    pub staging: PathBuf,
    /// Copies of object-store datasets, one folder per dataset URL.
    pub datasets: PathBuf,
    /// One record per sweep (`jobs/sweep/record.rs`).
    pub sweeps: PathBuf,
}

impl WorkerDirs {
    /// Creates the folders under `data_dir`; what is staged belonged to submits that never
    /// finished and is removed.
    pub fn create(data_dir: &Path) -> Result<WorkerDirs> {
        let dirs = WorkerDirs {
            jobs: data_dir.join("jobs"),
            cache: data_dir.join("cache"),
            staging: data_dir.join("staging"),
            datasets: data_dir.join("datasets"),
            sweeps: data_dir.join(super::sweep::record::SWEEPS_DIR),
        };
        if let Err(error) = std::fs::remove_dir_all(&dirs.staging)
            && error.kind() != std::io::ErrorKind::NotFound
        {
            return Err(Error::io(&dirs.staging, error));
        }
        for dir in [
            &dirs.jobs,
            &dirs.cache,
            &dirs.staging,
            &dirs.datasets,
            &dirs.sweeps,
        ] {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        Ok(dirs)
    }
}
