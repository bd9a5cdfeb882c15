//! `ArtifactStore`: per-job artifact keys over one object store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetResult, ObjectStore, ObjectStoreExt, PutPayload};
use serde::Serialize;

use crate::keys::{job_prefix, validate_artifact_name, validate_job_id};
use crate::open::open_backend;
use crate::{Error, REPORT_NAME, Result, StoreOptions};

/// One stored artifact of a job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ArtifactInfo {
    /// Relative to the job, e.g. `weights/best.safetensors`.
    pub name: String,
    pub size: u64,
    pub last_modified: SystemTime,
}

/// A job found in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredJob {
    pub job_id: String,
    /// `report.json` is present: every artifact was written.
    pub complete: bool,
    /// Number of stored objects of the job.
    pub artifacts: usize,
    pub total_bytes: u64,
    pub last_modified: SystemTime,
}

/// Size and blake3 of what this process uploaded, so `artifacts.json` rarely needs to read
/// objects back.
pub(crate) type DigestRecord = Arc<Mutex<HashMap<(String, String), (u64, String)>>>;

#[derive(Clone)]
pub struct ArtifactStore {
    pub(crate) inner: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
    pub(crate) digests: DigestRecord,
}

impl std::fmt::Debug for ArtifactStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArtifactStore")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ArtifactStore {
    /// Opens `file:///dir` (the folder is created), a bare local path, `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` or `memory://` (a fresh in-process store).
    /// Opening does no network IO; the first request reports bad credentials or endpoints.
    pub fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let backend = open_backend(url, options)?;
        tracing::debug!(url = %backend.url, "artifact store opened");
        Ok(Self {
            inner: backend.store,
            prefix: backend.prefix,
            url: backend.url,
            digests: Arc::default(),
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The full object key of an artifact, e.g. `team/jobs/j1/weights/best.safetensors`.
    pub fn key(&self, job: &str, name: &str) -> Result<Path> {
        validate_job_id(job)?;
        validate_artifact_name(name)?;
        Ok(self.prefixed(&format!("{}{name}", job_prefix(job))))
    }

    /// `<store prefix>/<relative>` as an object path (segments are taken as given).
    pub(crate) fn prefixed_path(&self, relative: &str) -> Path {
        self.prefixed(relative)
    }

    fn prefixed(&self, relative: &str) -> Path {
        let relative = relative.trim_end_matches('/');
        if self.prefix.as_ref().is_empty() {
            Path::from(relative)
        } else {
            Path::from(format!("{}/{relative}", self.prefix.as_ref()))
        }
    }

    fn job_root(&self, job: &str) -> Result<Path> {
        validate_job_id(job)?;
        Ok(self.prefixed(&job_prefix(job)))
    }

    pub(crate) fn error(&self, key: &Path, source: object_store::Error) -> Error {
        Error::backend(&self.url, key.as_ref(), source)
    }

    /// Stores `bytes` in one atomic PUT. Putting `report.json` first writes `artifacts.json`.
    pub async fn put_bytes(&self, job: &str, name: &str, bytes: Bytes) -> Result<()> {
        let key = self.key(job, name)?;
        if name == REPORT_NAME {
            self.write_index(job).await?;
        }
        let digest = easel_digest::digest_bytes(&bytes);
        let size = bytes.len() as u64;
        self.inner
            .put(&key, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| self.error(&key, e))?;
        self.record_digest(job, name, size, digest);
        tracing::debug!(job, name, size, "artifact stored");
        Ok(())
    }

    pub async fn get_bytes(&self, job: &str, name: &str) -> Result<Bytes> {
        let (key, result) = self.get_object(job, name).await?;
        result.bytes().await.map_err(|e| self.error(&key, e))
    }

    /// Starts reading one artifact; the key comes back for naming later read errors.
    async fn get_object(&self, job: &str, name: &str) -> Result<(Path, GetResult)> {
        let key = self.key(job, name)?;
        let result = self
            .inner
            .get(&key)
            .await
            .map_err(|e| self.error(&key, e))?;
        Ok((key, result))
    }

    /// Every artifact of the job, sorted by name; empty when the job has none.
    pub async fn list_artifacts(&self, job: &str) -> Result<Vec<ArtifactInfo>> {
        let root = self.job_root(job)?;
        let mut artifacts: Vec<ArtifactInfo> = self
            .inner
            .list(Some(&root))
            .map_err(|e| self.error(&root, e))
            .try_filter_map(|meta| {
                let name = meta.location.prefix_match(&root).map(|parts| {
                    parts
                        .map(|p| p.as_ref().to_owned())
                        .collect::<Vec<_>>()
                        .join("/")
                });
                std::future::ready(Ok(name.filter(|n| !n.is_empty()).map(|name| {
                    ArtifactInfo {
                        name,
                        size: meta.size,
                        last_modified: meta.last_modified.into(),
                    }
                })))
            })
            .try_collect()
            .await?;
        artifacts.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(artifacts)
    }

    /// Deletes every artifact of the job; returns how many there were.
    pub async fn delete_job(&self, job: &str) -> Result<u64> {
        let artifacts = self.list_artifacts(job).await?;
        for artifact in &artifacts {
            let key = self.key(job, &artifact.name)?;
            self.inner
                .delete(&key)
                .await
                .map_err(|e| self.error(&key, e))?;
        }
        tracing::debug!(job, artifacts = artifacts.len(), "job's artifacts deleted");
        Ok(artifacts.len() as u64)
    }

    /// Every job under `<prefix>/jobs/`, sorted by id.
    pub async fn list_jobs(&self) -> Result<Vec<StoredJob>> {
        let root = self.prefixed("jobs");
        let mut jobs: BTreeMap<String, StoredJob> = BTreeMap::new();
        let mut listing = self.inner.list(Some(&root));
        while let Some(meta) = listing.try_next().await.map_err(|e| self.error(&root, e))? {
            let Some(mut parts) = meta.location.prefix_match(&root) else {
                continue;
            };
            let (Some(job), Some(first)) = (parts.next(), parts.next()) else {
                continue;
            };
            let modified: SystemTime = meta.last_modified.into();
            let entry = jobs
                .entry(job.as_ref().to_owned())
                .or_insert_with(|| StoredJob {
                    job_id: job.as_ref().to_owned(),
                    complete: false,
                    artifacts: 0,
                    total_bytes: 0,
                    last_modified: modified,
                });
            entry.artifacts += 1;
            entry.total_bytes += meta.size;
            entry.last_modified = entry.last_modified.max(modified);
            if first.as_ref() == REPORT_NAME && parts.next().is_none() {
                entry.complete = true;
            }
        }
        Ok(jobs.into_values().collect())
    }

    pub(crate) fn record_digest(&self, job: &str, name: &str, size: u64, blake3: String) {
        let mut digests = self
            .digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        digests.insert((job.to_owned(), name.to_owned()), (size, blake3));
    }

    pub(crate) fn recorded_digest(&self, job: &str, name: &str, size: u64) -> Option<String> {
        let digests = self
            .digests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        digests
            .get(&(job.to_owned(), name.to_owned()))
            .filter(|(recorded_size, _)| *recorded_size == size)
            .map(|(_, digest)| digest.clone())
    }

    /// Hashes a stored object by streaming it (used for artifacts another process uploaded).
    pub(crate) async fn hash_stored(&self, job: &str, name: &str) -> Result<(u64, String)> {
        let (key, result) = self.get_object(job, name).await?;
        let mut stream = result.into_stream();
        let mut digest = easel_digest::Digester::default();
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.error(&key, e))? {
            digest.update(&chunk);
        }
        Ok((digest.len(), digest.finish()))
    }
}
