//! `mirror_to_dir`: copies every object under the store's URL into a local folder, e.g. a
//! dataset already in the bucket (`s3://bucket/datasets/pets`) that a worker trains on.

use std::path::{Path as FsPath, PathBuf};

use futures::TryStreamExt;
use object_store::path::Path;
use serde::Serialize;

use crate::{ArtifactStore, Error, Result};

#[derive(Clone, Debug, Default, Serialize)]
pub struct MirrorReport {
    /// Objects found under the prefix.
    pub files: usize,
    pub total_bytes: u64,
    /// Bytes fetched by this call (files already in place with the right size are skipped).
    pub bytes_transferred: u64,
    pub already_present: usize,
}

impl ArtifactStore {
    /// Copies every object under `<store url>/<prefix>` (the whole store when `prefix` is empty)
    /// into `dest`, keeping relative paths. Files already there with the right size are kept,
    /// partial ones resumed, each new file renamed into place once complete. Store objects carry
    /// no digest here, so sizes are what is verified.
    pub async fn mirror_to_dir(&self, prefix: &str, dest: &FsPath) -> Result<MirrorReport> {
        let root = self.prefixed_path(prefix);
        let objects: Vec<_> = self
            .inner
            .list(Some(&root))
            .map_err(|e| self.error(&root, e))
            .try_collect()
            .await?;
        if objects.is_empty() {
            return Err(Error::NotFound {
                url: self.url().to_owned(),
                key: root.to_string(),
            });
        }
        let mut report = MirrorReport::default();
        for meta in objects {
            let Some(relative) = local_relative_path(&root, &meta.location) else {
                continue;
            };
            let outcome = self
                .download_object(&meta.location, meta.size, None, &dest.join(relative))
                .await?;
            report.files += 1;
            report.total_bytes += meta.size;
            report.bytes_transferred += outcome.transferred;
            report.already_present += usize::from(outcome.already_present);
        }
        tracing::info!(url = %self.url(), files = report.files, bytes = report.bytes_transferred, "prefix mirrored");
        Ok(report)
    }
}

/// The object's path below `root` as a relative file path. `object_store` paths never hold `.`,
/// `..` or empty segments, so the result stays inside the destination folder.
fn local_relative_path(root: &Path, location: &Path) -> Option<PathBuf> {
    let parts: PathBuf = location
        .prefix_match(root)?
        .map(|part| part.as_ref().to_owned())
        .collect();
    (!parts.as_os_str().is_empty()).then_some(parts)
}
