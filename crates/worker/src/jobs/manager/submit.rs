//! Accepting a submitted job: its reach checked against the worker's allowances, every blob it
//! names checked present, its folder written, and only then a moment under the manager's lock
//! to put it in the queue.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use easel_events::{EventKind, now};
use easel_spec::ExperimentSpec;

use super::{Inner, JobManager, SubmitOutcome};
use crate::error::{Error, Result};
use crate::jobs::job::{Job, MANIFEST_FILE, SPEC_FILE};
use crate::jobs::record::{JobRecord, JobState, Submitter};
use crate::jobs::resume::ResumePoint;
use crate::jobs::submission::{
    Submission, check_dataset_prefixes, check_image_pixels, check_local_paths,
};

impl JobManager {
    /// Queues a job for `submitter`; with `resume`, its run directory starts with that
    /// checkpoint (see `resume.rs`), so training continues after the checkpoint's epochs.
    /// Blocking: it stats every blob the job names and writes the job's folder, all outside the
    /// manager's lock, which only ever guards the tables in memory (so `status`, `watch` and
    /// `list` answer while a large dataset's submit is checked).
    pub fn submit(
        &self,
        submission: Submission,
        submitter: &Submitter,
        resume: Option<ResumePoint>,
    ) -> Result<SubmitOutcome> {
        if let Some(job) = self.existing(submitter) {
            return Ok(SubmitOutcome {
                job,
                created: false,
            });
        }
        self.check_reach(&submission.spec)?;
        // A job being removed keeps submits out until its blobs are gone, so none comes to rely
        // on a blob that is about to go (see `remove`).
        let _blobs_in_use = self.blobs_in_use.read().unwrap_or_else(|e| e.into_inner());
        self.check_blobs_uploaded(&submission)?;
        #[cfg(test)]
        self.pause_for_tests();
        let position = self.room_in_queue()?;
        let job = self.create_job(&submission, submitter, resume.as_ref(), position, "")?;
        let mut inner = self.lock();
        let refused = if let Some(error) = self.refusal(&inner) {
            Some(Err(error))
        } else if let Some(id) = submitter.owned_key().and_then(|k| inner.by_key.get(&k)) {
            // A retry of the same submit got here first.
            inner.jobs.get(id).map(|first| {
                Ok(SubmitOutcome {
                    job: first.snapshot(),
                    created: false,
                })
            })
        } else {
            None
        };
        if let Some(answer) = refused {
            drop(inner);
            remove_refused_job_dir(&job.dir);
            return answer;
        }
        let id = job.id.clone();
        inner.jobs.insert(id.clone(), job.clone());
        inner.queue.push_back(id.clone());
        if let Some(key) = submitter.owned_key() {
            inner.by_key.insert(key, id.clone());
        }
        drop(inner);
        tracing::info!(job = %id, images = job.snapshot().dataset_images, "job queued");
        self.wake.notify_one();
        Ok(SubmitOutcome {
            job: job.snapshot(),
            created: true,
        })
    }

    /// Refuses a spec that reaches past what this worker allows: its own folders, buckets,
    /// image sizes.
    pub(super) fn check_reach(&self, spec: &ExperimentSpec) -> Result<()> {
        check_local_paths(spec, &self.local_paths)?;
        check_dataset_prefixes(spec, &self.dataset_prefixes)?;
        check_image_pixels(spec, self.max_image_pixels)
    }

    /// Every blob the job names is on the worker (one stat each: a large dataset's are many).
    pub(super) fn check_blobs_uploaded(&self, submission: &Submission) -> Result<()> {
        let digests = submission.blobs();
        let missing = self.context.blobs.missing(&digests)?;
        if let Some((first, _)) = missing.first() {
            return Err(Error::FailedPrecondition(format!(
                "{} of the dataset's {} files are not on the worker yet (first: {first}); upload them before submitting",
                missing.len(),
                digests.len()
            )));
        }
        Ok(())
    }

    /// The place a new job would take in the queue, when the worker takes one.
    fn room_in_queue(&self) -> Result<usize> {
        let inner = self.lock();
        match self.refusal(&inner) {
            Some(error) => Err(error),
            None => Ok(inner.queue.len()),
        }
    }

    /// Why the worker takes no new job now, if it does not: it is stopping, or its queue is full.
    pub(super) fn refusal(&self, inner: &Inner) -> Option<Error> {
        if !inner.accepting {
            Some(Error::ShuttingDown)
        } else if inner.queue.len() >= self.max_queued {
            Some(Error::QueueFull(inner.queue.len()))
        } else {
            None
        }
    }

    /// The new job's folder (spec and manifest as submitted, the resumed checkpoint, its
    /// record) and its first events; `sweep_id` names the sweep it is a trial of (empty: none).
    /// A job refused after this removes the folder again.
    pub(super) fn create_job(
        &self,
        submission: &Submission,
        submitter: &Submitter,
        resume: Option<&ResumePoint>,
        position: usize,
        sweep_id: &str,
    ) -> Result<Arc<Job>> {
        let (id, dir) = new_job_dir(&self.context.dirs.jobs)?;
        let created = (|| {
            write_file(&dir.join(SPEC_FILE), &submission.spec_toml)?;
            write_file(&dir.join(MANIFEST_FILE), &submission.manifest_text.json)?;
            if let Some(resume) = resume {
                resume.install(&dir.join(crate::jobs::job::RUN_DIR))?;
            }
            let mut record = new_record(&id, submission, submitter, resume, self.store().url());
            record.sweep_id = sweep_id.to_owned();
            record.save(&dir)?;
            Job::open(dir.clone(), record)
        })();
        let job = match created {
            Ok(job) => job.with_spec(submission.spec.clone()),
            Err(error) => {
                remove_refused_job_dir(&dir);
                return Err(error);
            }
        };
        job.emit(EventKind::Queued {
            position: position as u32,
        });
        if let Some(resume) = resume {
            job.emit(EventKind::Note {
                message: resume.note(),
            });
            tracing::info!(job = %id, from_job = %resume.from_job, epochs_done = resume.epochs_done, "job resumes another job's checkpoint");
        }
        Ok(Arc::new(job))
    }
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}

/// A job refused after its folder was made leaves nothing behind. Its `state.json` goes first:
/// a restart skips a folder without one, so a folder that then cannot be removed (only logged)
/// never comes back as a job nobody was told about.
pub(super) fn remove_refused_job_dir(dir: &Path) {
    let record = dir.join(crate::jobs::record::STATE_FILE);
    if let Err(error) = std::fs::remove_file(&record)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %record.display(), %error, "record of a refused job not removed");
    }
    if let Err(error) = std::fs::remove_dir_all(dir) {
        tracing::warn!(dir = %dir.display(), %error, "folder of a refused job not removed");
    }
}

/// A new job's id and its folder, made here: `YYYYMMDD-HHMMSS-xxxx` sorts by creation time,
/// reads well in listings, and is unique on this worker (the folder is created only if new, so
/// two submits in one second never share one).
fn new_job_dir(jobs_dir: &Path) -> Result<(String, PathBuf)> {
    loop {
        let id = new_id("");
        let dir = jobs_dir.join(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((id, dir)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(Error::io(&dir, error)),
        }
    }
}

/// `<prefix>YYYYMMDD-HHMMSS-xxxx`, of now, with a random suffix.
pub(super) fn new_id(prefix: &str) -> String {
    use rand::Rng;
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let digits: String = stamp.chars().filter(char::is_ascii_digit).collect();
    let suffix: u16 = rand::rng().random();
    format!("{prefix}{}-{}-{suffix:04x}", &digits[..8], &digits[8..14])
}

/// A queued job's first record.
fn new_record(
    id: &str,
    submission: &Submission,
    submitter: &Submitter,
    resume: Option<&ResumePoint>,
    store_url: &str,
) -> JobRecord {
    JobRecord {
        id: id.to_owned(),
        name: submission.spec.name.clone(),
        state: JobState::Queued,
        reason: String::new(),
        idempotency_key: submitter.idempotency_key.clone(),
        created_at: now(),
        started_at: None,
        finished_at: None,
        device: String::new(),
        epochs_total: u32::try_from(submission.spec.train.epochs).unwrap_or(0),
        epochs_done: resume.map_or(0, |r| r.epochs_done),
        best_validation_accuracy: None,
        test_accuracy: None,
        last_sequence: 0,
        dataset_images: submission.manifest.entries.len() as u64,
        dataset_bytes: submission.manifest.total_bytes(),
        store_url: store_url.to_owned(),
        manifest_blob: submission.manifest_text.blob_digest.clone(),
        crash_restarts: 0,
        owner: submitter.owner.clone(),
        sweep_id: String::new(),
        best_validation_loss: None,
        slurm_job_id: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use super::super::{ManagerSettings, SubmitPause};
    use super::*;
    use crate::access::named_tokens::ADMIN_NAME;
    use crate::jobs::submission::ManifestText;

    /// Only fails a test that would otherwise wait for ever; nothing here is timed.
    const HANG_GUARD: Duration = Duration::from_secs(300);

    const SPEC: &str = "name = \"n\"\n[data]\npath = \"/client/images\"\n[train]\nepochs = 1\n";

    /// A manifest of `entries` one-byte images of one class, each its own blob, and the blobs
    /// put where the worker keeps them.
    fn uploaded_dataset(blobs: &Path, entries: usize, salt: &str) -> ManifestText {
        let mut json = String::from(r#"{"classes":["a"],"entries":["#);
        for index in 0..entries {
            let digest = blake3::hash(format!("{salt}{index}").as_bytes()).to_hex();
            let blob = easel_dataset::blob_path(blobs, &digest).unwrap();
            std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
            std::fs::write(&blob, b"x").unwrap();
            if index > 0 {
                json.push(',');
            }
            json.push_str(&format!(
                r#"{{"path":"a/{index}.png","class":0,"size":1,"digest":"{digest}"}}"#
            ));
        }
        json.push_str("]}");
        ManifestText::plain(&json)
    }

    #[test]
    fn the_status_of_another_job_answers_while_a_large_submit_is_being_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let manager =
            JobManager::open(ManagerSettings::for_tests(&dir.path().join("worker"))).unwrap();
        let blobs = manager.blobs().dir().to_owned();
        let small = uploaded_dataset(&blobs, 1, "small");
        let other = manager
            .submit_text(SPEC, &small, ADMIN_NAME)
            .unwrap()
            .job
            .id;
        let large = uploaded_dataset(&blobs, 200_000, "large");

        let (arrived_tx, arrived) = mpsc::channel();
        let (go_on, go_on_rx) = mpsc::channel();
        manager.pause_next_submit(SubmitPause {
            arrived: arrived_tx,
            go_on: go_on_rx,
        });
        let submitting = std::thread::spawn({
            let manager = manager.clone();
            move || manager.submit_text(SPEC, &large, ADMIN_NAME)
        });
        arrived
            .recv_timeout(HANG_GUARD)
            .expect("the large submit checks its 200,000 blobs");

        // The submit is held in the middle of being accepted, its manifest parsed and its
        // blobs checked: the status of another job answers all the same.
        let (status_tx, status) = mpsc::channel();
        std::thread::spawn({
            let manager = manager.clone();
            move || {
                let _ = status_tx.send(manager.get(&other));
            }
        });
        let answered = status
            .recv_timeout(HANG_GUARD)
            .expect("a status answers while a submit is being accepted")
            .unwrap();
        assert_eq!(answered.state, JobState::Queued);
        assert!(
            !submitting.is_finished(),
            "the large submit is still being accepted"
        );

        go_on.send(()).unwrap();
        let accepted = submitting.join().unwrap().unwrap();
        assert!(accepted.created);
        assert_eq!(accepted.job.dataset_images, 200_000);
    }
}
