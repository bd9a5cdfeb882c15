//! `Submit` with `resume_from_job`: the checkpoint of an earlier job — possibly trained on a
//! machine that is gone — comes from the artifact store into the new job's run directory, once it
//! is known to fit the submitted spec and dataset, so the engine continues that run instead of
//! quietly training from scratch.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use easel_dataset::Manifest;
use easel_engine::artifacts::{CHECKPOINT, MANIFEST, SPEC};
use easel_engine::checkpoint;
use easel_spec::ExperimentSpec;
use easel_store::retry_transient;

use super::context::JobContext;
use super::submission::pretrained_blob;
use crate::error::{Error, Result};

/// A checkpoint fetched from the store and checked, staged on this worker's disk until its job
/// exists.
pub struct ResumePoint {
    pub from_job: String,
    /// Epochs the checkpoint holds; the new job starts with the next one.
    pub epochs_done: u32,
    staging: Staging,
}

impl ResumePoint {
    /// Moves the checkpoint to where the engine looks for it in `run_dir`.
    pub fn install(&self, run_dir: &Path) -> Result<()> {
        let target = run_dir.join(CHECKPOINT);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let staged = self.staging.dir.join(CHECKPOINT);
        std::fs::rename(&staged, &target).map_err(|e| Error::io(&target, e))
    }

    /// The event the new job starts its log with.
    pub fn note(&self) -> String {
        format!(
            "resuming from job {} at epoch {} (its checkpoint holds {} epoch(s))",
            self.from_job,
            self.epochs_done + 1,
            self.epochs_done
        )
    }
}

/// A folder removed when dropped: a refused or abandoned resume leaves nothing behind.
struct Staging {
    dir: PathBuf,
}

impl Staging {
    fn new(parent: &Path) -> Result<Staging> {
        let suffix: u64 = rand::random();
        let dir = parent.join(format!("resume-{suffix:016x}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Staging { dir })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Downloads `jobs/<from_job>/checkpoints/last.ckpt` from the worker's store and checks that it
/// was made for this spec and dataset.
pub(crate) async fn fetch(
    context: &JobContext,
    from_job: &str,
    spec: &ExperimentSpec,
    manifest: &Manifest,
) -> Result<ResumePoint> {
    easel_store::validate_job_id(from_job)
        .map_err(|e| Error::InvalidArgument(format!("resume from job: {e}")))?;
    let mut manifest = Cow::Borrowed(manifest);
    let refused = |why: String| {
        Error::FailedPrecondition(format!("cannot resume from job `{from_job}`: {why}"))
    };
    let store = &context.store;
    // A bucket dataset is scanned only when its job runs (its submit carries no manifest): the
    // earlier job's scan stands in for it here, and the run checks the checkpoint against its
    // own scan again (a bucket changed since then trains afresh, and says so).
    if spec.data.object_store_url().is_some()
        && manifest.entries.is_empty()
        && let Ok(bytes) = store.get_bytes(from_job, MANIFEST).await
        && let Ok(scanned) = Manifest::from_json(&String::from_utf8_lossy(&bytes))
    {
        manifest = Cow::Owned(scanned);
    }
    let staging = Staging::new(&context.dirs.staging)?;
    let downloaded = retry_transient(
        &context.retry,
        |_, _| {},
        || store.download_job(from_job, &[CHECKPOINT], &staging.dir),
    )
    .await;
    match downloaded {
        Ok(_) => {}
        Err(easel_store::Error::NotFound { .. }) => {
            return Err(refused(format!(
                "the artifact store {} holds no checkpoint of it ({}{CHECKPOINT}); only a job that \
                 wrote a checkpoint to this store can be resumed",
                store.url(),
                easel_store::job_prefix(from_job)
            )));
        }
        Err(error) => return Err(error.into()),
    }
    let path = staging.dir.join(CHECKPOINT);
    let state = tokio::task::spawn_blocking(move || checkpoint::read_state(&path))
        .await
        .map_err(|e| Error::Internal(format!("reading the checkpoint header: {e}")))?
        .map_err(|e| refused(e.to_string()))?;
    let identity = checkpoint::run_identity(spec, &manifest.digest(), pretrained_blob(spec));
    if state.identity != identity {
        let why = mismatch(context, from_job, spec, &manifest).await;
        return Err(refused(format!(
            "its checkpoint was made for another run: {why}; submit the spec and data of job \
             `{from_job}`, or submit without --resume-from to train from scratch"
        )));
    }
    tracing::info!(
        from_job,
        epochs_done = state.epoch,
        "checkpoint fetched for resuming"
    );
    Ok(ResumePoint {
        from_job: from_job.to_owned(),
        epochs_done: state.epoch,
        staging,
    })
}

/// What differs from the earlier job, read from the spec and manifest it stored.
async fn mismatch(
    context: &JobContext,
    from_job: &str,
    spec: &ExperimentSpec,
    manifest: &Manifest,
) -> String {
    let store = &context.store;
    if let Ok(bytes) = store.get_bytes(from_job, MANIFEST).await
        && let Ok(theirs) = Manifest::from_json(&String::from_utf8_lossy(&bytes))
        && theirs.digest() != manifest.digest()
    {
        return format!(
            "the dataset differs ({} images in {} classes now, {} images in {} classes then)",
            manifest.entries.len(),
            manifest.classes.len(),
            theirs.entries.len(),
            theirs.classes.len()
        );
    }
    if let Ok(bytes) = store.get_bytes(from_job, SPEC).await
        && let Ok(theirs) = toml::from_str::<ExperimentSpec>(&String::from_utf8_lossy(&bytes))
    {
        let keys = differing_keys(
            &checkpoint::training_settings(spec),
            &checkpoint::training_settings(&theirs),
        );
        if !keys.is_empty() {
            return format!("the spec differs in {}", keys.join(", "));
        }
        if spec.model.pretrained.is_some() || theirs.model.pretrained.is_some() {
            return "the pretrained weights differ".into();
        }
    }
    "the spec, dataset or pretrained weights differ".into()
}

/// Dotted keys whose values differ between two specs (`train.learning_rate`, ...).
fn differing_keys(ours: &ExperimentSpec, theirs: &ExperimentSpec) -> Vec<String> {
    fn flatten(prefix: &str, value: toml::Value, out: &mut BTreeMap<String, toml::Value>) {
        match value {
            toml::Value::Table(table) => {
                for (key, value) in table {
                    let path = if prefix.is_empty() {
                        key
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&path, value, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other);
            }
        }
    }
    let table = |spec: &ExperimentSpec| {
        let mut out = BTreeMap::new();
        if let Ok(value) = toml::Value::try_from(spec) {
            flatten("", value, &mut out);
        }
        out
    };
    let (ours, theirs) = (table(ours), table(theirs));
    let mut keys: Vec<String> = ours
        .keys()
        .chain(theirs.keys())
        .filter(|key| ours.get(*key) != theirs.get(*key))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::submission::{parse_manifest, parse_spec};

    /// [`fetch`] with the spec and manifest as a client sends them.
    async fn fetch_text(
        context: &JobContext,
        from_job: &str,
        spec_toml: &str,
        manifest_json: &str,
    ) -> Result<ResumePoint> {
        let spec = parse_spec(spec_toml)?;
        let manifest = parse_manifest(manifest_json)?;
        fetch(context, from_job, &spec, &manifest).await
    }
    use crate::jobs::manager::{JobManager, ManagerSettings};
    use easel_store::RetryPolicy;
    use std::sync::Arc;

    const SPEC_TOML: &str = "name = \"r\"\n[data]\npath = \"/laptop/data\"\n[train]\nepochs = 4\n";

    fn manifest_json() -> String {
        let digest = blake3::hash(b"image").to_hex().to_string();
        format!(
            r#"{{"classes":["a","b"],"entries":[
                {{"path":"a/1.png","class":0,"size":5,"digest":"{digest}"}},
                {{"path":"b/1.png","class":1,"size":5,"digest":"{digest}"}}]}}"#
        )
    }

    fn manager(dir: &Path) -> Arc<JobManager> {
        JobManager::open(ManagerSettings {
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            ..ManagerSettings::for_tests(dir)
        })
        .unwrap()
    }

    /// Stores a one-tensor checkpoint of `spec` + the test manifest after `epochs` epochs.
    async fn store_checkpoint(manager: &JobManager, job: &str, spec: &str, epochs: u32) {
        let store = manager.store();
        let spec = parse_spec(spec).unwrap();
        let manifest = parse_manifest(&manifest_json()).unwrap();
        let mut state =
            checkpoint::new_state(checkpoint::run_identity(&spec, &manifest.digest(), None));
        state.epoch = epochs;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.ckpt");
        let model = [("fc.bias".to_owned(), tch::Tensor::from_slice(&[0.5f32]))];
        checkpoint::write(&path, &state, &model, &[]).unwrap();
        store.put_file(job, CHECKPOINT, &path).await.unwrap();
        let resolved = toml::to_string(&spec).unwrap();
        store
            .put_bytes(job, SPEC, resolved.into_bytes().into())
            .await
            .unwrap();
        store
            .put_bytes(job, MANIFEST, manifest.to_json().into_bytes().into())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_stored_checkpoint_is_staged_and_installed() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(dir.path());
        store_checkpoint(&manager, "j1", SPEC_TOML, 2).await;
        // Submitted from another folder: data locations do not matter.
        let moved = SPEC_TOML.replace("/laptop/data", "/elsewhere/data");
        let point = fetch_text(manager.context(), "j1", &moved, &manifest_json())
            .await
            .unwrap();
        assert_eq!(point.epochs_done, 2);
        assert_eq!(
            point.note(),
            "resuming from job j1 at epoch 3 (its checkpoint holds 2 epoch(s))"
        );
        let run_dir = dir.path().join("run");
        point.install(&run_dir).unwrap();
        assert_eq!(
            checkpoint::read_state(&run_dir.join(CHECKPOINT))
                .unwrap()
                .epoch,
            2
        );
        let staging = point.staging.dir.clone();
        drop(point);
        assert!(!staging.exists(), "the staging folder is removed");
    }

    #[tokio::test]
    async fn a_bucket_dataset_job_resumes_on_the_scan_its_first_job_stored() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(dir.path());
        let bucket_spec = SPEC_TOML.replace("/laptop/data", "s3://photos/pets");
        store_checkpoint(&manager, "j1", &bucket_spec, 2).await;
        // The submit of a bucket dataset carries an empty manifest: the worker scans the bucket.
        let empty = r#"{"classes":[],"entries":[]}"#;
        let point = fetch_text(manager.context(), "j1", &bucket_spec, empty)
            .await
            .unwrap();
        assert_eq!(point.epochs_done, 2);
        // A folder dataset's empty manifest is still another dataset.
        let Err(error) = fetch_text(manager.context(), "j1", SPEC_TOML, empty).await else {
            panic!("resumed a run on an empty dataset");
        };
        assert!(error.to_string().contains("the dataset differs"), "{error}");
    }

    #[tokio::test]
    async fn a_missing_checkpoint_or_a_bad_job_id_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(dir.path());
        let Err(error) = fetch_text(manager.context(), "nope", SPEC_TOML, &manifest_json()).await
        else {
            panic!("resumed from a job that does not exist");
        };
        let message = error.to_string();
        assert!(
            message.contains("cannot resume from job `nope`"),
            "{message}"
        );
        assert!(message.contains("holds no checkpoint"), "{message}");
        assert!(matches!(error, Error::FailedPrecondition(_)));
        let Err(error) = fetch_text(manager.context(), "../x", SPEC_TOML, &manifest_json()).await
        else {
            panic!("accepted a job id with a path in it");
        };
        assert!(matches!(error, Error::InvalidArgument(_)), "{error}");
        let left: Vec<_> = std::fs::read_dir(&manager.context().dirs.staging)
            .unwrap()
            .collect();
        assert!(left.is_empty(), "staging folders left behind: {left:?}");
    }

    #[tokio::test]
    async fn a_checkpoint_of_another_spec_is_refused_naming_the_difference() {
        let dir = tempfile::tempdir().unwrap();
        let manager = manager(dir.path());
        store_checkpoint(&manager, "j1", SPEC_TOML, 1).await;
        let other = format!("{SPEC_TOML}learning_rate = 0.5\n");
        let Err(error) = fetch_text(manager.context(), "j1", &other, &manifest_json()).await else {
            panic!("resumed a checkpoint made for another learning rate");
        };
        let message = error.to_string();
        assert!(message.contains("made for another run"), "{message}");
        assert!(message.contains("train.learning_rate"), "{message}");
        assert!(!message.contains("data.path"), "{message}");
    }
}
