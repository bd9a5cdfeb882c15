//! `download_job`: copies a job's artifacts into a folder, resuming partial files with ranged
//! gets, verifying sizes and (with `artifacts.json`) blake3 digests, renaming each file into place.

use std::path::{Path as FsPath, PathBuf};

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::keys::validate_artifact_name;
use crate::{ArtifactIndex, ArtifactInfo, ArtifactStore, Error, REPORT_NAME, Result};

#[derive(Clone, Debug, Serialize)]
pub struct DownloadReport {
    pub job: String,
    /// The job's `report.json` is in the store (all artifacts were written).
    pub complete: bool,
    pub files: Vec<DownloadedFile>,
    /// Bytes actually transferred (resumed and already present files count only what was fetched).
    pub bytes_transferred: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DownloadedFile {
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// Bytes of an earlier partial download that were kept (0 for a fresh download).
    pub resumed_from: u64,
    /// The file was already in place with the right size (and digest) and was left alone.
    pub already_present: bool,
    /// Its blake3 was checked against `artifacts.json`.
    pub digest_verified: bool,
}

impl ArtifactStore {
    /// Downloads the named artifacts (all of them when `names` is empty) into `out_dir`.
    /// Unfinished files are kept as `<name>.part` and resumed by the next call.
    pub async fn download_job(
        &self,
        job: &str,
        names: &[&str],
        out_dir: &FsPath,
    ) -> Result<DownloadReport> {
        let stored = self.list_artifacts(job).await?;
        if stored.is_empty() {
            return Err(Error::NotFound {
                url: self.url().to_owned(),
                key: crate::job_prefix(job),
            });
        }
        let complete = stored.iter().any(|a| a.name == REPORT_NAME);
        let wanted: Vec<&ArtifactInfo> = if names.is_empty() {
            stored.iter().collect()
        } else {
            names
                .iter()
                .map(|name| {
                    validate_artifact_name(name)?;
                    stored
                        .iter()
                        .find(|a| a.name == *name)
                        .ok_or_else(|| Error::NotFound {
                            url: self.url().to_owned(),
                            key: format!("{}{name}", crate::job_prefix(job)),
                        })
                })
                .collect::<Result<_>>()?
        };
        let index = self.read_index(job).await?;
        let mut report = DownloadReport {
            job: job.to_owned(),
            complete,
            files: Vec::new(),
            bytes_transferred: 0,
        };
        for artifact in wanted {
            let key = self.key(job, &artifact.name)?;
            let target = out_dir.join(&artifact.name);
            let expected_digest = expected_digest(index.as_ref(), artifact);
            let outcome = self
                .download_object(&key, artifact.size, expected_digest, &target)
                .await?;
            report.bytes_transferred += outcome.transferred;
            report.files.push(DownloadedFile {
                name: artifact.name.clone(),
                path: target,
                size: artifact.size,
                resumed_from: outcome.resumed_from,
                already_present: outcome.already_present,
                digest_verified: outcome.digest_verified,
            });
        }
        tracing::info!(
            job,
            files = report.files.len(),
            bytes = report.bytes_transferred,
            "job downloaded"
        );
        Ok(report)
    }

    /// Copies one object of `size` bytes to `target`: skips a file already in place, resumes
    /// `<target>.part`, checks size and digest, then renames into place.
    pub(crate) async fn download_object(
        &self,
        key: &Path,
        size: u64,
        expected_digest: Option<&str>,
        target: &FsPath,
    ) -> Result<ObjectDownload> {
        let mut partial = target.as_os_str().to_owned();
        partial.push(".part");
        let partial = PathBuf::from(partial);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(Error::io("cannot create folder", parent))?;
        }
        let mut outcome = ObjectDownload::default();

        if file_len(target).await == Some(size) {
            let matches = match expected_digest {
                Some(expected) => hash_file(target).await? == expected,
                None => true,
            };
            if matches {
                outcome.already_present = true;
                outcome.digest_verified = expected_digest.is_some();
                return Ok(outcome);
            }
        }

        // A resumed file whose digest is wrong may hold bytes of an older object: start over once.
        for fresh_start in [false, true] {
            if fresh_start {
                remove_if_present(&partial).await?;
            }
            let kept = match file_len(&partial).await {
                Some(len) if len <= size => len,
                Some(_) => {
                    remove_if_present(&partial).await?;
                    0
                }
                None => 0,
            };
            outcome.resumed_from = kept;
            outcome.transferred += self.fetch_range(key, kept, size, &partial).await?;

            let actual = file_len(&partial).await.unwrap_or(0);
            if actual != size {
                return Err(Error::SizeMismatch {
                    url: self.url().to_owned(),
                    key: key.to_string(),
                    expected: size,
                    actual,
                });
            }
            if let Some(expected) = expected_digest {
                let actual = hash_file(&partial).await?;
                if actual != expected {
                    if kept > 0 && !fresh_start {
                        tracing::warn!(key = %key, "resumed download failed its digest check, restarting");
                        continue;
                    }
                    remove_if_present(&partial).await?;
                    return Err(Error::DigestMismatch {
                        url: self.url().to_owned(),
                        key: key.to_string(),
                        expected: expected.to_owned(),
                        actual,
                    });
                }
                outcome.digest_verified = true;
            }
            break;
        }
        tokio::fs::rename(&partial, target)
            .await
            .map_err(Error::io("cannot move downloaded file into place", target))?;
        Ok(outcome)
    }

    /// Appends bytes `from..to` of the object to `partial`; returns how many were written.
    async fn fetch_range(&self, key: &Path, from: u64, to: u64, partial: &FsPath) -> Result<u64> {
        // Create the file even for an empty object, so it can be renamed into place.
        let mut out = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(partial)
            .await
            .map_err(Error::io("cannot open partial download", partial))?;
        if from >= to {
            return Ok(0);
        }
        let options = GetOptions::new().with_range(Some(GetRange::Bounded(from..to)));
        let result = self
            .inner
            .get_opts(key, options)
            .await
            .map_err(|e| self.error(key, e))?;
        let mut stream = result.into_stream();
        let mut written = 0u64;
        // Every chunk is written before the next is awaited, so an interrupted download keeps
        // the bytes it received and the next call resumes after them.
        while let Some(chunk) = stream.try_next().await.map_err(|e| self.error(key, e))? {
            out.write_all(&chunk)
                .await
                .map_err(Error::io("cannot write partial download", partial))?;
            written += chunk.len() as u64;
        }
        out.flush()
            .await
            .map_err(Error::io("cannot write partial download", partial))?;
        out.sync_all()
            .await
            .map_err(Error::io("cannot sync partial download", partial))?;
        Ok(written)
    }
}

#[derive(Debug, Default)]
pub(crate) struct ObjectDownload {
    pub resumed_from: u64,
    pub already_present: bool,
    pub digest_verified: bool,
    pub transferred: u64,
}

fn expected_digest<'a>(
    index: Option<&'a ArtifactIndex>,
    artifact: &ArtifactInfo,
) -> Option<&'a str> {
    let entry = index?.get(&artifact.name)?;
    if entry.size == artifact.size {
        Some(entry.blake3.as_str())
    } else {
        // Rewritten after the index was made (a resumed job still running): sizes only.
        tracing::warn!(name = %artifact.name, "artifact changed since artifacts.json was written; checking size only");
        None
    }
}

async fn file_len(path: &FsPath) -> Option<u64> {
    tokio::fs::metadata(path)
        .await
        .ok()
        .filter(|m| m.is_file())
        .map(|m| m.len())
}

async fn remove_if_present(path: &FsPath) -> Result<()> {
    match tokio::fs::remove_file(path).await {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io("cannot remove partial download", path)(e))
        }
        _ => Ok(()),
    }
}

async fn hash_file(path: &FsPath) -> Result<String> {
    let path = path.to_path_buf();
    let for_error = path.clone();
    tokio::task::spawn_blocking(move || {
        easel_digest::digest_file(&path).map_err(Error::io("cannot read downloaded file", &path))
    })
    .await
    .map_err(|e| Error::Io {
        action: "cannot hash downloaded file",
        path: for_error,
        source: e.into(),
    })?
}
