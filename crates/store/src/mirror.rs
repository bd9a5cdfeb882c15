//! `mirror_to_dir`: copies every object under the store's URL into a local folder, e.g. a
//! dataset already in the bucket (`s3://bucket/datasets/pets`) that a worker trains on. Objects
//! are fetched [`MIRROR_PARALLEL`] at a time (one request at a time leaves a bucket of small
//! images at a few files a second), and the caller hears of each one done.

use std::path::{Path as FsPath, PathBuf};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use serde::Serialize;

use crate::{ArtifactStore, Error, Result};

/// Objects fetched at once by a mirror.
pub const MIRROR_PARALLEL: usize = 16;

#[derive(Clone, Debug, Default, Serialize)]
pub struct MirrorReport {
    /// Objects copied or found in place so far (all those under the prefix once done).
    pub files: usize,
    pub total_bytes: u64,
    /// Bytes fetched by this call (files already in place with the right size are skipped).
    pub bytes_transferred: u64,
    pub already_present: usize,
    /// The relative path of every object the listing found (in the final report only), so a
    /// caller can tell which local files are no longer in the store.
    pub listed: Vec<PathBuf>,
}

impl ArtifactStore {
    /// Copies every object under `<store url>/<prefix>` (the whole store when `prefix` is empty)
    /// into `dest`, keeping relative paths. Files already there with the right size are kept,
    /// partial ones resumed, each new file renamed into place once complete. Store objects carry
    /// no digest here, so sizes are what is verified.
    pub async fn mirror_to_dir(&self, prefix: &str, dest: &FsPath) -> Result<MirrorReport> {
        self.mirror_to_dir_with_progress(prefix, dest, |_, _| {})
            .await
    }

    /// `mirror_to_dir`, calling `progress(done so far, everything found)` after each object.
    pub async fn mirror_to_dir_with_progress(
        &self,
        prefix: &str,
        dest: &FsPath,
        mut progress: impl FnMut(&MirrorReport, &MirrorReport),
    ) -> Result<MirrorReport> {
        let root = self.prefixed_path(prefix);
        let objects: Vec<_> = self
            .inner
            .list(Some(&root))
            .map_err(|e| self.error(&root, e))
            .try_collect()
            .await?;
        let wanted: Vec<(PathBuf, _)> = objects
            .into_iter()
            .filter_map(|meta| Some((local_relative_path(&root, &meta.location)?, meta)))
            .collect();
        if wanted.is_empty() {
            return Err(Error::NotFound {
                url: self.url().to_owned(),
                key: root.to_string(),
            });
        }
        let listed: Vec<PathBuf> = wanted
            .iter()
            .map(|(relative, _)| relative.clone())
            .collect();
        let found = MirrorReport {
            files: wanted.len(),
            total_bytes: wanted.iter().map(|(_, meta)| meta.size).sum(),
            ..MirrorReport::default()
        };
        let mut downloads = futures::stream::iter(wanted)
            .map(|(relative, meta)| async move {
                let outcome = self
                    .download_object(&meta.location, meta.size, None, &dest.join(relative))
                    .await?;
                Ok::<_, Error>((meta.size, outcome))
            })
            .buffer_unordered(MIRROR_PARALLEL);
        let mut report = MirrorReport::default();
        while let Some(done) = downloads.next().await {
            let (size, outcome) = done?;
            report.files += 1;
            report.total_bytes += size;
            report.bytes_transferred += outcome.transferred;
            report.already_present += usize::from(outcome.already_present);
            progress(&report, &found);
        }
        tracing::info!(url = %self.url(), files = report.files, bytes = report.bytes_transferred, "prefix mirrored");
        report.listed = listed;
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
