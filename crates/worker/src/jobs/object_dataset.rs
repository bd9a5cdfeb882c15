//! A dataset already in object storage (`data.path = "s3://bucket/prefix"`): the worker copies
//! the objects under the URL into `<data>/datasets/<blake3 of the url>/` (files already there
//! with the same size are kept, so a second job on the same dataset copies nothing; files whose
//! objects left the bucket are removed, so a job trains on what the bucket holds now), then
//! scans that folder like any folder-per-class dataset. Nothing was uploaded by the client.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use easel_dataset::{Manifest, ScanOptions};
use easel_spec::ExperimentSpec;
use easel_store::ArtifactStore;

use super::context::JobContext;
use super::job::Job;
use crate::storage::caches::Lease;
use crate::storage::space::human_bytes;
use easel_events::EventKind;

/// How often a long copy says how far it got.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// The scanned copy of an object-store dataset, ready to train on.
pub(crate) struct ObjectStoreDataset {
    pub manifest: Manifest,
    /// The copy's folder: the manifest's paths are relative to it.
    pub root: PathBuf,
    /// The scan's cap on one file, which reading the images keeps.
    pub max_file_bytes: u64,
    /// Keeps the copy from being trimmed while the job reads it.
    pub lease: Lease,
}

/// The local folder a dataset URL is copied into.
pub(crate) fn local_copy_dir(context: &JobContext, url: &str) -> PathBuf {
    context
        .dirs
        .datasets
        .join(blake3::hash(url.as_bytes()).to_hex().as_str())
}

/// Copies and scans the dataset at `url`; every failure names the URL (it becomes the job's
/// reason). The manifest is written as the job's `manifest.json`, as for an uploaded dataset.
pub(crate) async fn prepare(
    context: &JobContext,
    job: &Job,
    url: &str,
    spec: &ExperimentSpec,
) -> Result<ObjectStoreDataset, String> {
    let dest = local_copy_dir(context, url);
    let lease = context.caches.lease(&dest);
    job.emit(EventKind::Note {
        message: format!("dataset: copying {url} to the worker"),
    });
    let store = ArtifactStore::open(url, &context.store_options)
        .map_err(|e| format!("dataset {url} cannot be opened: {e}"))?;
    copy_objects(context, job, &store, url, &dest).await?;

    let options = ScanOptions {
        max_image_pixels: spec.data.max_image_pixels,
        ..ScanOptions::default()
    };
    let max_file_bytes = options.max_file_bytes;
    let roots = vec![dest.clone()];
    let report = tokio::task::spawn_blocking(move || easel_dataset::scan(&roots, &options))
        .await
        .map_err(|_| format!("dataset {url}: the scan stopped unexpectedly"))?
        .map_err(|e| format!("dataset {url} cannot be scanned: {e}"))?;
    let errors = report.errors();
    if !errors.is_empty() {
        return Err(format!("dataset {url} has problems: {}", errors.join("; ")));
    }
    // The scan's errors include a dataset with fewer than two classes.
    let manifest = report.manifest.clone();
    let manifest_path = job.manifest_path();
    std::fs::write(&manifest_path, manifest.to_json())
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    job.update_or_log(|record| {
        record.dataset_images = manifest.entries.len() as u64;
        record.dataset_bytes = manifest.total_bytes();
    });
    job.emit(EventKind::Note {
        message: format!(
            "dataset: {} images in {} classes read from {url}",
            manifest.entries.len(),
            manifest.classes.len()
        ),
    });
    Ok(ObjectStoreDataset {
        manifest,
        root: dest,
        max_file_bytes,
        lease,
    })
}

/// Brings `dest` to what the bucket at `url` lists now: missing objects copied, files of objects
/// no longer listed removed. Says how it went in the job's events.
async fn copy_objects(
    context: &JobContext,
    job: &Job,
    store: &ArtifactStore,
    url: &str,
    dest: &Path,
) -> Result<(), String> {
    let started = Instant::now();
    let mut last_said = started;
    // Two jobs on one dataset must not write (or remove) the same files at once.
    let _copying = context.dataset_copy.lock().await;
    let mirrored = store
        .mirror_to_dir_with_progress("", dest, |done, found| {
            // A large bucket takes minutes: say how far it got, now and then.
            if last_said.elapsed() >= PROGRESS_EVERY && done.files < found.files {
                last_said = Instant::now();
                job.emit(EventKind::Note {
                    message: format!(
                        "dataset: copied {} of {} files ({} of {})",
                        done.files,
                        found.files,
                        human_bytes(done.total_bytes),
                        human_bytes(found.total_bytes)
                    ),
                });
            }
        })
        .await
        .map_err(|error| match error {
            easel_store::Error::NotFound { .. } => format!(
                "dataset {url}: no objects found under this URL (expected one folder per class, \
                 e.g. {url}/cats/1.jpg)"
            ),
            other => format!("dataset {url} could not be read: {other}"),
        })?;
    tracing::info!(job = %job.id, %url, files = mirrored.files, bytes = mirrored.bytes_transferred, already_present = mirrored.already_present, "object-store dataset copied");
    let listed: HashSet<PathBuf> = mirrored.listed.iter().cloned().collect();
    let folder = dest.to_owned();
    let removed = tokio::task::spawn_blocking(move || remove_unlisted(&folder, &folder, &listed))
        .await
        .map_err(|_| format!("dataset {url}: tidying the copy stopped unexpectedly"))?
        .map_err(|e| format!("dataset {url}: {e}"))?;
    job.emit(EventKind::Note {
        message: format!(
            "dataset: {} files ({}) in place after {:.1} s: {} copied, {} already there",
            mirrored.files,
            human_bytes(mirrored.total_bytes),
            started.elapsed().as_secs_f64(),
            mirrored.files - mirrored.already_present,
            mirrored.already_present
        ),
    });
    if let Some(first) = removed.first() {
        tracing::info!(job = %job.id, %url, files = removed.len(), "copied files no longer in the bucket removed");
        job.emit(EventKind::Note {
            message: format!(
                "dataset: {} file{} no longer in {url} removed from the worker's copy (e.g. {})",
                removed.len(),
                if removed.len() == 1 { "" } else { "s" },
                first.display()
            ),
        });
    }
    Ok(())
}

/// Removes every file under `folder` whose path relative to `root` is not in `listed` (and the
/// folders that leaves empty); returns the removed files' relative paths. A file that cannot be
/// removed fails the copy: training on it would train on an object the bucket no longer holds.
fn remove_unlisted(
    root: &Path,
    folder: &Path,
    listed: &HashSet<PathBuf>,
) -> Result<Vec<PathBuf>, String> {
    let cannot = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
    let mut removed = Vec::new();
    for entry in std::fs::read_dir(folder).map_err(|e| cannot(folder, e))? {
        let path = entry.map_err(|e| cannot(folder, e))?.path();
        let relative = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        // Links are not followed: the copy holds none of its own making.
        let kind = std::fs::symlink_metadata(&path).map_err(|e| cannot(&path, e))?;
        if kind.is_dir() {
            removed.extend(remove_unlisted(root, &path, listed)?);
            if std::fs::read_dir(&path).is_ok_and(|mut left| left.next().is_none()) {
                std::fs::remove_dir(&path).map_err(|e| cannot(&path, e))?;
            }
        } else if !listed.contains(&relative) {
            std::fs::remove_file(&path).map_err(|e| cannot(&path, e))?;
            removed.push(relative);
        }
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::named_tokens::ADMIN_NAME;
    use crate::jobs::manager::{JobManager, ManagerSettings};
    use crate::jobs::submission::ManifestText;
    use std::path::Path;
    use std::sync::Arc;

    fn manager(dir: &Path) -> Arc<JobManager> {
        JobManager::open(ManagerSettings::for_tests(dir)).unwrap()
    }

    /// A job reading its dataset from `url` (so with an empty manifest), submitted as the admin.
    fn submit_bucket(manager: &JobManager, url: &str) -> Arc<Job> {
        let submitted = manager
            .submit_text(&spec(url), &ManifestText::plain(EMPTY_MANIFEST), ADMIN_NAME)
            .unwrap();
        manager.job(&submitted.job.id).unwrap()
    }

    /// `classes` folders of three 12x12 PNGs each (different pixels, so no duplicates).
    fn dataset(root: &Path, classes: &[&str]) -> String {
        for (c, class) in classes.iter().enumerate() {
            std::fs::create_dir_all(root.join(class)).unwrap();
            for i in 0..3u8 {
                let shade = (c as u8) * 60 + i * 10;
                image::GrayImage::from_pixel(12, 12, image::Luma([shade]))
                    .save(root.join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        format!("file://{}", root.display())
    }

    fn spec(url: &str) -> String {
        format!("name = \"o\"\n[data]\npath = \"{url}\"\n[train]\nepochs = 1\n")
    }

    const EMPTY_MANIFEST: &str = r#"{"classes":[],"entries":[]}"#;

    #[tokio::test]
    async fn a_bucket_dataset_is_copied_scanned_and_written_as_the_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let url = dataset(&dir.path().join("bucket/digits"), &["one", "two"]);
        let manager = manager(&dir.path().join("worker"));
        let job = submit_bucket(&manager, &url);
        let parsed = easel_spec::parse_experiment(&spec(&url), "x").unwrap();

        let dataset = prepare(manager.context(), &job, &url, &parsed)
            .await
            .unwrap();
        assert_eq!(dataset.manifest.classes, ["one", "two"]);
        assert_eq!(dataset.manifest.entries.len(), 6);
        let written =
            Manifest::from_json(&std::fs::read_to_string(job.manifest_path()).unwrap()).unwrap();
        assert_eq!(written, dataset.manifest);
        assert_eq!(job.snapshot().dataset_images, 6);
        assert!(
            local_copy_dir(manager.context(), &url)
                .join("two/2.png")
                .is_file()
        );
        let notes: Vec<String> = job
            .log
            .after(0)
            .into_iter()
            .filter_map(|event| match event.kind {
                EventKind::Note { message } => Some(message),
                _ => None,
            })
            .collect();
        assert!(
            notes.contains(&format!("dataset: 6 images in 2 classes read from {url}")),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.starts_with("dataset: 6 files (")
                    && n.ends_with("6 copied, 0 already there")),
            "{notes:?}"
        );

        // A second job on the same dataset finds the copy in place.
        let again = prepare(manager.context(), &job, &url, &parsed)
            .await
            .unwrap();
        assert_eq!(again.manifest, dataset.manifest);
    }

    /// The job's note events, in order.
    fn notes(job: &Job) -> Vec<String> {
        job.log
            .after(0)
            .into_iter()
            .filter_map(|event| match event.kind {
                EventKind::Note { message } => Some(message),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn objects_deleted_from_the_bucket_leave_the_copy_and_the_next_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = dir.path().join("bucket/digits");
        let url = dataset(&bucket, &["one", "two", "three"]);
        let manager = manager(&dir.path().join("worker"));
        let parsed = easel_spec::parse_experiment(&spec(&url), "x").unwrap();
        let first = submit_bucket(&manager, &url);
        let before = prepare(manager.context(), &first, &url, &parsed)
            .await
            .unwrap();
        assert_eq!(before.manifest.entries.len(), 9);
        drop(before);

        // Removed from the bucket: one image, and a whole class.
        std::fs::remove_file(bucket.join("two/2.png")).unwrap();
        std::fs::remove_dir_all(bucket.join("three")).unwrap();
        let next = submit_bucket(&manager, &url);
        let after = prepare(manager.context(), &next, &url, &parsed)
            .await
            .unwrap();
        assert_eq!(after.manifest.classes, ["one", "two"]);
        let paths: Vec<&str> = after
            .manifest
            .entries
            .iter()
            .map(|entry| entry.path.as_str())
            .collect();
        assert_eq!(
            paths,
            [
                "one/0.png",
                "one/1.png",
                "one/2.png",
                "two/0.png",
                "two/1.png"
            ]
        );
        let copy = local_copy_dir(manager.context(), &url);
        assert!(!copy.join("two/2.png").exists());
        assert!(
            !copy.join("three").exists(),
            "the emptied class folder goes too"
        );
        let notes = notes(&next);
        assert!(
            notes.contains(&format!(
                "dataset: 4 files no longer in {url} removed from the worker's copy (e.g. three/0.png)"
            )),
            "{notes:?}"
        );
        assert!(
            notes
                .iter()
                .any(|n| n.ends_with("0 copied, 5 already there")),
            "{notes:?}"
        );
    }

    #[tokio::test]
    async fn one_class_or_a_non_empty_manifest_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let url = dataset(&dir.path().join("bucket/single"), &["only"]);
        let manager = manager(&dir.path().join("worker"));
        let job = submit_bucket(&manager, &url);
        let parsed = easel_spec::parse_experiment(&spec(&url), "x").unwrap();
        let error = prepare(manager.context(), &job, &url, &parsed)
            .await
            .err()
            .unwrap();
        assert_eq!(
            error,
            format!(
                "dataset {url} has problems: a classifier needs at least 2 classes with images; found 1"
            )
        );

        let digest = blake3::hash(b"x").to_hex();
        let manifest = format!(
            r#"{{"classes":["a"],"entries":[{{"path":"a/1.png","class":0,"size":1,"digest":"{digest}"}}]}}"#
        );
        let refused = manager
            .submit_text(&spec(&url), &ManifestText::plain(&manifest), ADMIN_NAME)
            .err()
            .unwrap();
        assert!(
            refused.to_string().contains("the manifest must be empty"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_job_makes_room_for_its_decoded_cache_from_the_least_recently_used_caches() {
        let dir = tempfile::tempdir().unwrap();
        let url = dataset(&dir.path().join("bucket/digits"), &["one", "two"]);
        let old_url = dataset(&dir.path().join("bucket/old"), &["a", "b"]);
        let mut settings = ManagerSettings::for_tests(&dir.path().join("worker"));
        // Room for the datasets' copies, not for another decoded cache beside them.
        settings.cache_max_bytes = 4 << 10;
        let manager = JobManager::open(settings).unwrap();
        let parsed = easel_spec::parse_experiment(&spec(&url), "x").unwrap();
        let old_job = submit_bucket(&manager, &old_url);
        drop(
            prepare(manager.context(), &old_job, &old_url, &parsed)
                .await
                .unwrap(),
        );
        let stale_cache = manager.context().dirs.cache.join("decoded-stale.u8");
        std::fs::write(&stale_cache, [0; 3000]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));

        let job = submit_bucket(&manager, &url);
        let dataset = prepare(manager.context(), &job, &url, &parsed)
            .await
            .unwrap();
        let _lease = crate::jobs::staging::lease_decoded_cache(
            manager.context(),
            &job,
            &dataset.manifest,
            &parsed,
        );

        // The unleased old copy and the stale cache went, oldest first; this job's copy stayed.
        assert!(!local_copy_dir(manager.context(), &old_url).exists());
        assert!(!stale_cache.exists());
        assert!(
            local_copy_dir(manager.context(), &url)
                .join("two/2.png")
                .is_file()
        );
        let said = job.log.after(0).into_iter().any(|event| {
            matches!(event.kind, EventKind::Note { ref message }
                if message.starts_with("caches: 2 least recently used entries removed to make room"))
        });
        assert!(said, "{:?}", job.log.after(0));
    }
}
