//! Job control against the real worker: the access token and the client's config file; cancel a
//! running job (the next queued one starts) and watch from a sequence number; restarts.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use easel_e2e::{
    HANG_GUARD, Worker, client_with, eventually, json_lines, sample_subset, state, write_spec,
};

const REFUSED: &str =
    "the worker refused the token (wrong or missing): pass --token or set EASEL_TOKEN";

#[test]
fn the_token_is_checked_and_the_config_file_names_worker_and_token() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = Worker::start(&tmp.path().join("worker"));

    // Wrong and missing tokens are refused with the message saying what to do; the right one works.
    for env in [
        vec![
            ("EASEL_WORKER", worker.address.as_str()),
            ("EASEL_TOKEN", "0000"),
        ],
        vec![("EASEL_WORKER", worker.address.as_str())],
    ] {
        let output = client_with(&home, &["list"], &env);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(REFUSED), "{stderr}");
    }
    let listed = worker.client_ok(&home, &["list", "--json"]);
    assert_eq!(listed.trim(), "[]");
    // The client config file names the worker and token when neither flag nor variable does.
    let config = home.join(".config/easel/client.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    std::fs::write(
        &config,
        format!(
            "worker = \"{}\"\ntoken = \"{}\"\n",
            worker.address, worker.token
        ),
    )
    .unwrap();
    let output = client_with(&home, &["list", "--json"], &[]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::remove_file(&config).unwrap();
}

#[test]
fn cancel_and_watch() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(tmp.path(), 12);
    let long = write_spec(tmp.path(), "long", &data, 500);
    let short = write_spec(tmp.path(), "short", &data, 1);
    let worker = Worker::start(&tmp.path().join("worker"));

    let submit = |spec: &std::path::Path| -> String {
        worker.submit_detached(&home, spec, &[])["job_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let running = submit(&long);
    let queued = submit(&short);
    worker.wait_for(&home, &running, HANG_GUARD, |s| {
        s["epochs_done"].as_u64() >= Some(1)
    });
    assert_eq!(state(&worker.status(&home, &queued)), "queued");

    // Cancel: the running job ends `cancelled` at its next step and the queued one starts.
    let asked = Instant::now();
    let out = worker.client_ok(&home, &["cancel", &running]);
    assert!(out.contains("cancel requested"), "{out}");
    let cancelled = worker.wait_for(&home, &running, HANG_GUARD, |s| state(s) != "running");
    assert_eq!(state(&cancelled), "cancelled", "{cancelled}");
    eprintln!("cancel took {:.2} s", asked.elapsed().as_secs_f64());
    let next = worker.wait_for(&home, &queued, HANG_GUARD, |s| state(s) != "queued");
    assert!(matches!(state(&next), "running" | "succeeded"), "{next}");
    let done = worker.wait_for(&home, &queued, Duration::from_secs(180), |s| {
        state(s) != "running"
    });
    assert_eq!(state(&done), "succeeded", "{done}");

    // Watch from N yields exactly the events after N (the full log from 0 is the reference).
    // Watching a job that did not succeed exits with failure, so scripts can tell.
    let watch = |args: &[&str]| {
        let output = worker.client(&home, args);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        json_lines(&String::from_utf8(output.stdout).unwrap())
    };
    let all = watch(&["watch", &running, "--from", "0", "--json"]);
    assert!(all.len() > 4, "{all:?}");
    let sequences: Vec<u64> = all
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=all.len() as u64).collect::<Vec<_>>());
    assert_eq!(all.last().unwrap()["kind"], "finished");
    assert_eq!(all.last().unwrap()["outcome"], "cancelled");
    let n = 3;
    let after = watch(&["watch", &running, "--from", &n.to_string(), "--json"]);
    assert_eq!(after, all[n..].to_vec());
    // Without --from, watch re-attaches after the last event this machine saw: nothing is repeated.
    let output = worker.client(&home, &["watch", &running, "--json"]);
    assert!(
        output.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// A fresh worker under `dir` training a job of `epochs` epochs on the sample, returned (with the
/// client's home and the job id) once two epochs are done; a checkpoint is written every epoch
/// (the spec's default).
fn two_epochs_into(dir: &Path, name: &str, epochs: u32) -> (Worker, PathBuf, String) {
    let home = dir.join("home");
    let data = sample_subset(dir, 12);
    let spec = write_spec(dir, name, &data, epochs);
    let worker = Worker::start(&dir.join("worker"));
    let job = worker.submit_detached(&home, &spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    worker.wait_for(&home, &job, HANG_GUARD, |s| {
        s["epochs_done"].as_u64() >= Some(2)
    });
    (worker, home, job)
}

/// The `start_epoch` of every `started` event: one per run of the job.
fn start_epochs(events: &[serde_json::Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["kind"] == "started")
        .map(|e| e["start_epoch"].as_u64().unwrap())
        .collect()
}

#[test]
fn sigterm_checkpoints_and_a_restart_resumes_the_job() {
    let tmp = tempfile::tempdir().unwrap();
    // Long enough that SIGTERM lands mid-run even on a fast machine.
    let (mut worker, home, job) = two_epochs_into(tmp.path(), "resumed", 20);

    // SIGTERM: the running job stops at a step, keeps its checkpoint and is queued again.
    worker.stop();
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(worker.data_dir.join("jobs").join(&job).join("state.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state(&record), "queued", "{record}");

    // The restarted worker lists it and resumes it from the checkpoint to success.
    let worker = Worker::start(&worker.data_dir.clone());
    let done = worker.wait_for(&home, &job, Duration::from_secs(180), |s| {
        !matches!(state(s), "queued" | "running")
    });
    assert_eq!(state(&done), "succeeded", "{done}");
    let events = json_lines(&worker.client_ok(&home, &["watch", &job, "--from", "0", "--json"]));
    let starts = start_epochs(&events);
    assert_eq!(starts.len(), 2, "{events:?}");
    // `start_epoch` is the first epoch a run trains: 1 when fresh, later when resumed.
    assert_eq!(starts[0], 1);
    assert!(starts[1] >= 3, "resumed at epoch {}", starts[1]);
    assert!(
        events
            .iter()
            .any(|e| e["kind"] == "finished" && e["outcome"] == "interrupted")
    );
}

#[test]
fn a_crash_requeues_a_running_job_that_has_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut worker, home, job) = two_epochs_into(tmp.path(), "crashed", 500);
    worker.kill();

    let worker = Worker::start(&worker.data_dir.clone());
    worker.wait_for(&home, &job, HANG_GUARD, |s| {
        state(s) == "running" && s["epochs_done"].as_u64() >= Some(3)
    });
    worker.client_ok(&home, &["cancel", &job]);
    let cancelled = worker.wait_for(&home, &job, HANG_GUARD, |s| state(s) != "running");
    assert_eq!(state(&cancelled), "cancelled", "{cancelled}");
    let output = worker.client(&home, &["watch", &job, "--from", "0", "--json"]);
    let events = json_lines(&String::from_utf8(output.stdout).unwrap());
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("worker restarted"))),
        "{events:?}"
    );
    let starts = start_epochs(&events);
    assert_eq!(starts.len(), 2, "{events:?}");
    assert!(starts[1] >= 2, "resumed at epoch {}", starts[1]);
}

/// The job's `events.jsonl` on the worker, as written so far.
fn event_log(worker: &Worker, job: &str) -> String {
    let events = worker.data_dir.join("jobs").join(job).join("events.jsonl");
    std::fs::read_to_string(events).unwrap_or_default()
}

/// Waits until the job's `events.jsonl` on the worker holds `times` events whose text contains
/// `text`.
fn wait_for_message(worker: &Worker, job: &str, text: &str, times: usize) {
    eventually(
        || (event_log(worker, job).matches(text).count() >= times).then_some(()),
        || {
            format!(
                "no `{text}` in the job's events; log:\n{}",
                worker.log_text()
            )
        },
    );
}

/// The first pause before a job the worker died under runs again, in the test below: longer than
/// `Worker::stop` and `Worker::wait_for` wait before failing a test as hung, so a stop or a
/// cancel that waited the pause out fails the test whatever the machine's speed.
const LONG_PAUSE_SECONDS: u64 = 600;
const _: () = assert!(LONG_PAUSE_SECONDS > 2 * HANG_GUARD.as_secs());

#[test]
fn a_stop_or_a_cancel_during_the_pause_after_a_crash_ends_it_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut worker, home, job) = two_epochs_into(tmp.path(), "paused", 500);
    worker.kill();
    let pause = LONG_PAUSE_SECONDS.to_string();
    let long_pause = [("EASEL_RESTART_PAUSE_SECONDS", pause.as_str())];
    let waiting = format!("waiting {LONG_PAUSE_SECONDS} s first");

    // A SIGTERM during the pause stops the worker without waiting it out, the job still queued
    // to resume and not started again.
    let mut worker = Worker::start_with_env(&worker.data_dir.clone(), &[], &long_pause);
    wait_for_message(&worker, &job, &waiting, 1);
    worker.stop();
    let events = json_lines(&event_log(&worker, &job));
    assert_eq!(
        start_epochs(&events).len(),
        1,
        "the job ran again before the stop: {events:?}"
    );
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(worker.data_dir.join("jobs").join(&job).join("state.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state(&record), "queued", "{record}");

    // A clean stop is no crash: the next start pauses as long again, and a cancel ends the job.
    let worker = Worker::start_with_env(&worker.data_dir.clone(), &[], &long_pause);
    wait_for_message(&worker, &job, "the job resumes at its next start", 1);
    wait_for_message(&worker, &job, &format!("(restart 1): {waiting}"), 2);
    worker.client_ok(&home, &["cancel", &job]);
    let cancelled = worker.wait_for(&home, &job, HANG_GUARD, |s| {
        !matches!(state(s), "queued" | "running")
    });
    assert_eq!(state(&cancelled), "cancelled", "{cancelled}");
    assert!(
        cancelled["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cancelled while queued")),
        "{cancelled}"
    );
}
