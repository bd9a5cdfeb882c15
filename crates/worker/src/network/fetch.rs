//! Serving a job's artifacts to `client fetch`: from the worker's run directory when the file is
//! still there, else from the object store. Each comes with its size and blake3 so the client
//! verifies what it wrote.

use std::path::PathBuf;

use bytes::Bytes;
use easel_store::{ArtifactStore, INDEX_NAME, REPORT_NAME};

use crate::error::{Error, Result};
use crate::jobs::job::{EVENTS_FILE, Job};
use crate::jobs::{EventKind, JobState};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactEntry {
    pub name: String,
    pub size: u64,
    pub blake3: String,
}

pub enum ArtifactBody {
    File(PathBuf),
    Bytes(Bytes),
}

/// Names of what the job has stored so far (plus its event log).
fn artifact_names(job: &Job) -> Vec<String> {
    let mut names = vec![EVENTS_FILE.to_owned()];
    for event in job.log.after(0) {
        if let EventKind::ArtifactStored { name, .. } = event.kind
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    if job.snapshot().state == JobState::Succeeded {
        for name in [INDEX_NAME, REPORT_NAME] {
            if !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
        }
    }
    names
}

/// Every artifact of `job` with its size and digest.
pub async fn list(job: &Job, store: &ArtifactStore) -> Result<Vec<ArtifactEntry>> {
    let mut entries = Vec::new();
    for name in artifact_names(job) {
        let (entry, _) = open(job, store, &name).await?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Where the artifact's bytes come from, with its size and digest.
pub async fn open(
    job: &Job,
    store: &ArtifactStore,
    name: &str,
) -> Result<(ArtifactEntry, ArtifactBody)> {
    easel_store::validate_artifact_name(name).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let local = if name == EVENTS_FILE {
        job.log.path().to_owned()
    } else {
        job.run_dir().join(name)
    };
    if local.is_file() && name != INDEX_NAME {
        let path = local.clone();
        let (size, blake3) = tokio::task::spawn_blocking(move || hash_file(&path)).await??;
        return Ok((
            ArtifactEntry {
                name: name.to_owned(),
                size,
                blake3,
            },
            ArtifactBody::File(local),
        ));
    }
    if !artifact_names(job).iter().any(|n| n == name) {
        return Err(Error::ArtifactNotFound {
            job: job.id.clone(),
            name: name.to_owned(),
        });
    }
    let bytes = store.get_bytes(&job.id, name).await?;
    let entry = ArtifactEntry {
        name: name.to_owned(),
        size: bytes.len() as u64,
        blake3: easel_digest::digest_bytes(&bytes),
    };
    Ok((entry, ArtifactBody::Bytes(bytes)))
}

fn hash_file(path: &std::path::Path) -> Result<(u64, String)> {
    easel_digest::digest_file_sized(path).map_err(|e| Error::io(path, e))
}
