//! Taking a finished job's space back: its folder, and the blobs (images, manifest, pretrained
//! weights) that no remaining job names. A blob another job still names stays, so removing one
//! job never breaks another; blobs uploaded for a submit that never came are left for the user
//! to resubmit (nothing removes a blob no job ever named).

use std::collections::HashSet;
use std::sync::Arc;

use super::context::JobContext;
use super::job::Job;
use super::submission::{parse_manifest, pretrained_blob};
use crate::error::{Error, Result};
use easel_digest::folder_bytes;

/// What removing a job freed on the worker's disk.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reclaimed {
    pub job_folder_bytes: u64,
    pub blobs_removed: u64,
    pub blob_bytes: u64,
}

impl Reclaimed {
    pub fn freed_bytes(&self) -> u64 {
        self.job_folder_bytes + self.blob_bytes
    }
}

/// Every blob `job` reads: its dataset's files, its manifest and its pretrained weights. A job
/// whose spec or manifest cannot be read names none (it could not have run either).
pub fn blobs_named_by(job: &Job) -> HashSet<String> {
    let mut named = HashSet::new();
    let manifest_blob = job.snapshot().manifest_blob;
    if !manifest_blob.is_empty() {
        named.insert(manifest_blob);
    }
    if let Ok(text) = std::fs::read_to_string(job.manifest_path()) {
        named.insert(easel_digest::digest_bytes(text.as_bytes()));
        if let Ok(manifest) = parse_manifest(&text) {
            named.extend(manifest.entries.into_iter().map(|entry| entry.digest));
        }
    }
    // The spec the job parsed once (read from its folder only if no one has needed it yet).
    if let Ok(spec) = job.spec()
        && let Some(digest) = pretrained_blob(&spec)
    {
        named.insert(digest.to_owned());
    }
    named
}

/// Deletes `removed`'s folder and the blobs only it named (blocking file IO). `remaining` are
/// the jobs still on the worker; the caller keeps new submits out meanwhile.
pub fn reclaim(context: &JobContext, removed: &Job, remaining: &[Arc<Job>]) -> Result<Reclaimed> {
    let mut unused = blobs_named_by(removed);
    for job in remaining {
        if unused.is_empty() {
            break;
        }
        for digest in blobs_named_by(job) {
            unused.remove(&digest);
        }
    }
    let mut reclaimed = Reclaimed {
        job_folder_bytes: folder_bytes(&removed.dir),
        ..Reclaimed::default()
    };
    std::fs::remove_dir_all(&removed.dir).map_err(|e| Error::io(&removed.dir, e))?;
    for digest in unused {
        let bytes = context.blobs.remove(&digest)?;
        if bytes > 0 {
            reclaimed.blobs_removed += 1;
            reclaimed.blob_bytes += bytes;
        }
    }
    Ok(reclaimed)
}
