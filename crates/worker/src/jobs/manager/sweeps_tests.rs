//! The worker refuses a bad sweep whole, naming every problem, even one sent past `validate`.

use std::path::Path;

use super::super::{JobManager, ManagerSettings};
use crate::access::named_tokens::ADMIN_NAME;
use crate::error::Error;
use crate::jobs::record::Submitter;
use crate::jobs::submission::ManifestText;

const BASE: &str = "name = \"search\"\n[data]\npath = \"/client/images\"\n[train]\nepochs = 1\n";

fn manager(dir: &Path, change: impl FnOnce(&mut ManagerSettings)) -> std::sync::Arc<JobManager> {
    let mut settings = ManagerSettings::for_tests(&dir.join("worker"));
    change(&mut settings);
    JobManager::open(settings).unwrap()
}

/// A one-image dataset, its blob where the worker keeps uploads.
fn dataset(manager: &JobManager) -> ManifestText {
    let digest = blake3::hash(b"image").to_hex().to_string();
    let blob = easel_dataset::blob_path(manager.blobs().dir(), &digest).unwrap();
    std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
    std::fs::write(&blob, b"image").unwrap();
    ManifestText::plain(&format!(
        r#"{{"classes":["a"],"entries":[{{"path":"a/0.png","class":0,"size":5,"digest":"{digest}"}}]}}"#
    ))
}

fn submitter(key: &str) -> Submitter {
    Submitter {
        owner: ADMIN_NAME.to_owned(),
        idempotency_key: key.to_owned(),
    }
}

/// The sweep's refusal, after checking nothing was queued or written.
fn refused(manager: &JobManager, grid: &str) -> Error {
    let text = format!("{BASE}[sweep]\n[sweep.grid]\n{grid}\n");
    let error = match manager.submit_sweep(&text, dataset(manager), &submitter("")) {
        Ok(outcome) => panic!("accepted: {:?}", outcome.sweep),
        Err(error) => error,
    };
    let inner = manager.lock();
    assert!(inner.jobs.is_empty() && inner.queue.is_empty() && inner.sweeps.is_empty());
    drop(inner);
    let dirs = &manager.context.dirs;
    assert_eq!(std::fs::read_dir(&dirs.jobs).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(&dirs.sweeps).unwrap().count(), 0);
    error
}

#[test]
fn a_bad_sweep_is_refused_whole_with_every_problem_named() {
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(dir.path(), |s| s.max_trials_per_sweep = 3);
    let cases = [
        ("\"train.batch_size\" = []", "an empty list tries nothing"),
        ("\"train.bach_size\" = [16]", "bach_size"),
        ("\"train.epochs\" = [\"three\"]", "train.epochs"),
        (
            "\"train.batch_size\" = [8, 16, 32, 64]",
            "4 trials is more than the 3",
        ),
    ];
    for (grid, named) in cases {
        let error = refused(&manager, grid);
        assert!(
            matches!(error, Error::InvalidArgument(_)),
            "{grid}: {error:?}"
        );
        assert!(error.to_string().contains(named), "{grid}: {error}");
    }
    // One value breaking one trial names that trial, and the other trials are not queued.
    let error = refused(&manager, "\"train.batch_size\" = [16, 0]").to_string();
    assert!(error.contains("trial 2 (train.batch_size = 0)"), "{error}");
    assert!(!error.contains("trial 1"), "{error}");
}

#[test]
fn a_sweep_larger_than_the_room_in_the_queue_queues_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(dir.path(), |s| s.max_queued = 3);
    let error = refused(&manager, "\"train.batch_size\" = [8, 16, 32, 64]");
    assert!(matches!(error, Error::ResourceExhausted(_)), "{error:?}");
    assert!(error.to_string().contains("4 trials do not fit"), "{error}");
}

#[test]
fn a_retried_sweep_submit_returns_the_sweep_it_queued_and_a_restart_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{BASE}[sweep]\nmax_concurrent = 1\n[sweep.grid]\n\"train.batch_size\" = [8, 16]\n"
    );
    let first = {
        let manager = manager(dir.path(), |_| {});
        let first = manager
            .submit_sweep(&text, dataset(&manager), &submitter("k"))
            .unwrap();
        assert!(first.created);
        let again = manager
            .submit_sweep(&text, dataset(&manager), &submitter("k"))
            .unwrap();
        assert!(!again.created);
        assert_eq!(again.sweep.id, first.sweep.id);
        assert_eq!(manager.lock().queue.len(), 2);
        first.sweep
    };
    let restarted = manager(dir.path(), |_| {});
    let found = restarted
        .existing_sweep(&submitter("k"))
        .expect("the sweep survives a restart");
    assert_eq!(*found, *first);
    let standings = restarted.standings(&found);
    assert_eq!(standings.rows.len(), 2);
    assert!(
        standings
            .rows
            .iter()
            .all(|row| row.job.sweep_id == first.id)
    );
    assert_eq!(
        standings.rows[0].trial.params,
        [("train.batch_size".to_owned(), "8".to_owned())]
    );
}

#[test]
fn a_sweep_at_its_max_concurrent_trials_lets_the_next_job_in_the_queue_start_first() {
    let dir = tempfile::tempdir().unwrap();
    let manager = manager(dir.path(), |_| {});
    let text = format!(
        "{BASE}[sweep]\nmax_concurrent = 1\n[sweep.grid]\n\"train.batch_size\" = [8, 16]\n"
    );
    let sweep = manager
        .submit_sweep(&text, dataset(&manager), &submitter(""))
        .unwrap()
        .sweep;
    let alone = manager
        .submit_text(BASE, &dataset(&manager), ADMIN_NAME)
        .unwrap()
        .job
        .id;
    let mut inner = manager.lock();
    let first = super::super::scheduler::next_runnable(&mut inner).unwrap();
    assert_eq!(first.id, sweep.trials[0].job);
    // As the scheduler counts it: the sweep's one allowed trial trains.
    inner.running_by_sweep.insert(sweep.id.clone(), 1);
    let next = super::super::scheduler::next_runnable(&mut inner).unwrap();
    assert_eq!(next.id, alone, "the second trial waits for the first");
    assert_eq!(
        inner.queue.iter().collect::<Vec<_>>(),
        [&sweep.trials[1].job]
    );
    inner.running_by_sweep.clear();
    let last = super::super::scheduler::next_runnable(&mut inner).unwrap();
    assert_eq!(last.id, sweep.trials[1].job);
}

#[test]
fn trials_of_a_sweep_the_worker_stopped_queueing_fail_at_the_next_start_instead_of_running_unseen()
{
    let dir = tempfile::tempdir().unwrap();
    let text = format!("{BASE}[sweep]\n[sweep.grid]\n\"train.batch_size\" = [8, 16]\n");
    let sweep = {
        let manager = manager(dir.path(), |_| {});
        manager
            .submit_sweep(&text, dataset(&manager), &submitter(""))
            .unwrap()
            .sweep
    };
    // As if the worker had stopped after writing the trials' folders, before the sweep's record
    // was complete: its id claimed by an empty file.
    let record = dir
        .path()
        .join("worker/sweeps")
        .join(format!("{}.json", sweep.id));
    std::fs::write(&record, b"").unwrap();

    let restarted = manager(dir.path(), |_| {});
    assert!(!record.exists(), "the empty claim is removed");
    assert!(restarted.lock().queue.is_empty());
    for trial in &sweep.trials {
        let job = restarted.get(&trial.job).unwrap();
        assert_eq!(job.state, crate::jobs::record::JobState::Failed, "{job:?}");
        assert!(job.reason.contains("never fully queued"), "{}", job.reason);
    }
}
