//! The whole remote flow with the real binaries, one behaviour per test: submit (local checks,
//! upload, queue) -> follow to completion -> fetch -> `client evaluate` reproduces the reported
//! test accuracy; fine-tuning from fetched weights uploads only the weights; a worker restart
//! keeps the job list and the finished artifacts.

use std::path::{Path, PathBuf};

use easel_e2e::{HANG_GUARD, Worker, json_lines, sample_splits, state, write_split_spec};

fn parse_time(text: &str) -> f64 {
    // RFC 3339 "YYYY-MM-DDTHH:MM:SS.mmmZ" on the same day: seconds since midnight suffice here.
    let clock = &text[11..text.len() - 1];
    let parts: Vec<f64> = clock.split(':').map(|p| p.parse().unwrap()).collect();
    parts[0] * 3600.0 + parts[1] * 60.0 + parts[2]
}

/// A finished job on `worker`: its id, the test accuracy its report gave, and the folder it was
/// fetched into.
struct Finished {
    job: String,
    reported: f64,
    out_dir: PathBuf,
}

/// Submits the sample splits, follows the job to the end and fetches it.
fn submit_and_fetch(worker: &Worker, home: &Path, tmp: &Path) -> (Finished, PathBuf, [PathBuf; 3]) {
    let roots = sample_splits(tmp, 24, 8, 8);
    let spec = write_split_spec(tmp, "flow", &roots, 3);
    let home = home.to_owned();
    // Submit with the local proof of concept, then follow to the end.
    let out = worker.client_ok(&home, &["submit", spec.to_str().unwrap()]);
    let job = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("job ")
                .and_then(|r| r.strip_suffix(" queued"))
        })
        .unwrap_or_else(|| panic!("no job id in: {out}"))
        .to_owned();
    assert!(out.contains("job succeeded"), "{out}");
    assert!(out.contains("val acc"), "no epoch table: {out}");

    let events = json_lines(&worker.client_ok(&home, &["watch", &job, "--from", "0", "--json"]));
    let queued = events.iter().find(|e| e["kind"] == "queued").unwrap();
    let first_epoch = events.iter().find(|e| e["kind"] == "epoch").unwrap();
    eprintln!(
        "submit -> first epoch event: {:.2} s",
        parse_time(first_epoch["time"].as_str().unwrap())
            - parse_time(queued["time"].as_str().unwrap())
    );
    let finished = events.last().unwrap();
    assert_eq!(finished["outcome"], "succeeded", "{finished}");
    let reported = finished["report"]["test_accuracy"]
        .as_f64()
        .expect("a test accuracy in the report");

    // Fetch: weights, metrics, report, classes, spec, plots; no checkpoints by default.
    let out_dir = tmp.join("fetched");
    let fetched = worker.client_ok(&home, &["fetch", &job, "--out", out_dir.to_str().unwrap()]);
    assert!(fetched.contains("weights: "), "{fetched}");
    for name in [
        "weights/best.safetensors",
        "weights/last.safetensors",
        "metrics.jsonl",
        "report.json",
        "classes.json",
        "spec.toml",
        "events.jsonl",
    ] {
        assert!(
            out_dir.join(name).is_file(),
            "{name} missing after fetch: {fetched}"
        );
    }
    assert!(!out_dir.join("checkpoints").exists());
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["test_accuracy"].as_f64(), Some(reported));

    (
        Finished {
            job,
            reported,
            out_dir,
        },
        spec,
        roots,
    )
}

#[test]
fn submit_follow_fetch_evaluate() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = Worker::start(&tmp.path().join("worker"));
    let (
        Finished {
            job,
            reported,
            out_dir,
        },
        _,
        roots,
    ) = submit_and_fetch(&worker, &home, tmp.path());

    // The fetched weights reproduce the reported accuracy on the test folder.
    let accuracy = worker.evaluated_accuracy(&home, &out_dir, &roots[2]);
    assert!(
        (accuracy - reported).abs() < 1e-6,
        "evaluate says {accuracy}, the run reported {reported}"
    );

    // The artifacts are in the local object store, report.json last.
    let stored = worker.data_dir.join("artifacts/jobs").join(&job);
    assert!(stored.join("report.json").is_file());
    assert!(stored.join("weights/best.safetensors").is_file());
}

#[test]
fn fine_tuning_from_fetched_weights_uploads_only_the_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = Worker::start(&tmp.path().join("worker"));
    let (Finished { out_dir, .. }, spec, _) = submit_and_fetch(&worker, &home, tmp.path());

    // Pretrained weights travel as a blob beside the (already uploaded) dataset: fine-tune from
    // the fetched weights.
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        "[model]\n",
        &format!(
            "[model]\npretrained = \"{}\"\n",
            out_dir.join("weights/best.safetensors").display()
        ),
    );
    let tuned = tmp.path().join("tuned.toml");
    std::fs::write(&tuned, text).unwrap();
    let summary = worker.submit_detached(&home, &tuned, &[]);
    assert_eq!(
        summary["plan"]["upload_files"], 1,
        "only the weights travel: {summary}"
    );
    let tuned_job = summary["job_id"].as_str().unwrap().to_owned();
    let done = worker.wait_for(&home, &tuned_job, HANG_GUARD, |s| {
        !matches!(state(s), "queued" | "running")
    });
    assert_eq!(state(&done), "succeeded", "{done}");
    let events =
        json_lines(&worker.client_ok(&home, &["watch", &tuned_job, "--from", "0", "--json"]));
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("pretrained backbone"))),
        "no note about the pretrained backbone: {events:?}"
    );
}

#[test]
fn a_restarted_worker_keeps_its_jobs_and_their_artifacts() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut worker = Worker::start(&tmp.path().join("worker"));
    let (Finished { job, out_dir, .. }, _, _) = submit_and_fetch(&worker, &home, tmp.path());

    // Restart: the same jobs with the same states, and the artifacts still fetchable.
    let before = worker.client_ok(&home, &["list", "--json"]);
    worker.stop();
    let worker = Worker::start(&worker.data_dir.clone());
    let after = worker.client_ok(&home, &["list", "--json"]);
    let (before, after): (serde_json::Value, serde_json::Value) = (
        serde_json::from_str(&before).unwrap(),
        serde_json::from_str(&after).unwrap(),
    );
    let ids = |v: &serde_json::Value| -> Vec<(String, String)> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|j| (j["id"].to_string(), j["state"].to_string()))
            .collect()
    };
    assert_eq!(ids(&before), ids(&after));
    let status = worker.status(&home, &job);
    assert_eq!(state(&status), "succeeded");
    let again = tmp.path().join("fetched-again");
    worker.client_ok(&home, &["fetch", &job, "--out", again.to_str().unwrap()]);
    assert_eq!(
        std::fs::read(again.join("weights/best.safetensors")).unwrap(),
        std::fs::read(out_dir.join("weights/best.safetensors")).unwrap()
    );
}
