//! Sweeps with the real binaries: one submit queues every trial of a `[sweep]` spec, the
//! dataset is uploaded and decoded once, the leaderboard names the best, `fetch --best` gives
//! weights that `client evaluate` scores as reported; a worker restart mid-sweep resumes the
//! trials from their checkpoints; `cancel SWEEP` ends every trial; the median rule stops a
//! trial that falls behind and keeps what it trained.

use std::path::{Path, PathBuf};
use std::time::Duration;

use easel_e2e::{
    HANG_GUARD, Worker, json_lines, sample_splits, sample_subset, write_spec, write_split_spec,
};

/// Long enough for a sweep of several trials on a loaded 2-core machine; only ends a test that
/// would otherwise wait for ever.
const SWEEP_GUARD: Duration = Duration::from_secs(900);

/// A worker with two CPU training slots, at a price an hour (its runs' pages show their cost).
fn two_slot_worker(dir: &Path) -> Worker {
    let config = dir.join("worker.toml");
    std::fs::write(&config, "price_per_hour = 3.6\n").unwrap();
    Worker::start_with_env(
        &dir.join("worker"),
        &["--config", config.to_str().unwrap()],
        &[("EASEL_MAX_CONCURRENT_JOBS", "2")],
    )
}

/// `spec` with `sweep` (a `[sweep]` table and its grid) appended.
fn with_sweep(spec: PathBuf, sweep: &str) -> PathBuf {
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{text}\n{sweep}")).unwrap();
    spec
}

/// `spec` training 8 images a step, so two epochs take the learning trials well past chance.
fn small_batches(spec: PathBuf) -> PathBuf {
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replacen("batch_size = 32", "batch_size = 8", 1)).unwrap();
    spec
}

/// `status SWEEP --json` once every trial is over.
fn wait_until_done(worker: &Worker, home: &Path, sweep: &str) -> serde_json::Value {
    worker.wait_for(home, sweep, SWEEP_GUARD, |s| s["finished"] == true)
}

fn trial_events(worker: &Worker, home: &Path, job: &str) -> Vec<serde_json::Value> {
    json_lines(&worker.client_ok(home, &["watch", job, "--from", "0", "--json"]))
}

fn notes(events: &[serde_json::Value]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

fn jobs_of(status: &serde_json::Value) -> Vec<String> {
    status["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["job"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_two_by_two_grid_on_two_slots_uploads_and_decodes_once_and_its_best_scores_as_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = two_slot_worker(tmp.path());
    let roots = sample_splits(tmp.path(), 24, 8, 8);
    let spec = with_sweep(
        write_split_spec(tmp.path(), "grid", &roots, 2),
        "[sweep]\nmetric = \"val_accuracy\"\n\n[sweep.grid]\n\
         \"train.learning_rate\" = [0.001, 0.003]\n\"train.batch_size\" = [16, 32]\n",
    );

    let submitted = worker.submit_detached(&home, &spec, &[]);
    let sweep = submitted["sweep"].as_str().unwrap().to_owned();
    assert!(sweep.starts_with("sweep-"), "{submitted}");
    assert_eq!(
        submitted["trials"].as_array().unwrap().len(),
        4,
        "{submitted}"
    );
    // Every file of the dataset crossed the wire once, for all four trials.
    assert_eq!(submitted["plan"]["present_files"], 0, "{submitted}");
    assert_eq!(
        submitted["upload"]["files"], submitted["plan"]["files"],
        "{submitted}"
    );
    assert_eq!(
        submitted["upload"]["bytes_sent"], submitted["plan"]["upload_bytes"],
        "{submitted}"
    );

    let done = wait_until_done(&worker, &home, &sweep);
    let trials = done["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "{done}");
    for trial in trials {
        assert_eq!(trial["state"], "succeeded", "{done}");
        assert_eq!(trial["epoch"], 2, "{done}");
        assert_eq!(trial["device"], "cpu", "{done}");
        assert!(trial["seconds"].as_f64().is_some(), "{done}");
    }
    let metrics: Vec<f64> = trials
        .iter()
        .map(|t| t["metric"].as_f64().unwrap())
        .collect();
    assert!(
        metrics.windows(2).all(|w| w[0] >= w[1]),
        "not best first: {metrics:?}"
    );
    assert_eq!(done["best"], trials[0]["job"], "{done}");
    let mut varied: Vec<String> = trials.iter().map(|t| t["params"].to_string()).collect();
    varied.sort();
    varied.dedup();
    assert_eq!(varied.len(), 4, "{varied:?}");

    // One trial decoded the images; the other three read its cache and say whose it was.
    let jobs = jobs_of(&done);
    let decoded_by: Vec<&String> = jobs
        .iter()
        .filter(|job| {
            notes(&trial_events(&worker, &home, job))
                .iter()
                .any(|n| n.contains("decoded and cached"))
        })
        .collect();
    assert_eq!(decoded_by.len(), 1, "{jobs:?}");
    for job in jobs.iter().filter(|job| *job != decoded_by[0]) {
        let notes = notes(&trial_events(&worker, &home, job));
        let reused = format!(
            "reused from the decoded cache (job {} decoded them)",
            decoded_by[0]
        );
        assert!(
            notes.iter().any(|n| n.contains(&reused)),
            "{job}: {notes:?}"
        );
    }

    // The best trial's weights score on the test folder what its run reported.
    let best_dir = tmp.path().join("best");
    worker.client_ok(
        &home,
        &[
            "fetch",
            &sweep,
            "--best",
            "--out",
            best_dir.to_str().unwrap(),
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(best_dir.join("report.json")).unwrap())
            .unwrap();
    let reported = report["test_accuracy"].as_f64().unwrap();
    let accuracy = worker.evaluated_accuracy(&home, &best_dir, &roots[2]);
    assert!(
        (accuracy - reported).abs() < 1e-6,
        "evaluate {accuracy}, reported {reported}"
    );

    // The whole sweep: every trial's folder, the table and the plot.
    let all_dir = tmp.path().join("all");
    worker.client_ok(
        &home,
        &["fetch", &sweep, "--out", all_dir.to_str().unwrap()],
    );
    let csv = std::fs::read_to_string(all_dir.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    assert!(
        csv.starts_with("trial,job,train.batch_size,train.learning_rate,state"),
        "{csv}"
    );
    let svg = std::fs::read_to_string(all_dir.join("sweep.svg")).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.matches("<polyline").count() == 4,
        "{svg}"
    );
    for (number, job) in trials
        .iter()
        .map(|t| (t["number"].as_u64().unwrap(), &t["job"]))
    {
        let dir = all_dir.join(format!("trial-{number:02}-{}", job.as_str().unwrap()));
        assert!(
            dir.join("weights/best.safetensors").is_file(),
            "{}",
            dir.display()
        );
    }
    // The sweep's page, in a real browser: a row per trial, each linked to its own report page
    // (fetched beside it), and nothing loaded from anywhere.
    let page = all_dir.join("sweep.html");
    let shot =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("../test-artifacts/sweep.png");
    let loaded = easel_test_support::load_in_chromium(&page, &shot, 1280, 1400);
    assert!(loaded.console.is_empty(), "console: {:#?}", loaded.console);
    assert!(
        loaded.page_requests.is_empty(),
        "{:?}",
        loaded.page_requests
    );
    assert_eq!(loaded.dom.matches(r#"<tr class="trial">"#).count(), 4);
    let links: Vec<&str> = loaded
        .dom
        .split(r#"href=""#)
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert_eq!(links.len(), 4, "{links:?}");
    for link in links {
        let page = std::fs::read_to_string(all_dir.join(link))
            .unwrap_or_else(|e| panic!("{link} is not a fetched report: {e}"));
        assert!(
            page.contains(r#"id="cost""#) && page.contains("at 3.60 an hour"),
            "{link} shows no cost at the worker's price"
        );
    }
    assert_eq!(
        worker
            .client_ok(&home, &["report", all_dir.to_str().unwrap()])
            .trim(),
        page.display().to_string()
    );

    let listed = worker.client_ok(&home, &["list"]);
    let line = listed
        .lines()
        .find(|line| line.starts_with(&sweep))
        .unwrap_or_else(|| panic!("no line for {sweep}: {listed}"));
    assert!(
        line.contains("4/4") && line.contains("trials done"),
        "{line}"
    );
    worker.client_ok(&home, &["rm", &sweep]);
    let gone = worker.client(&home, &["status", &jobs[0], "--json"]);
    assert!(!gone.status.success(), "a removed sweep's trial is gone");
    assert!(!worker.client(&home, &["status", &sweep]).status.success());
}

#[test]
fn a_sweep_carries_on_across_a_worker_restart_without_training_any_trial_from_the_start_again() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut worker = two_slot_worker(tmp.path());
    let data = sample_subset(tmp.path(), 12);
    let spec = with_sweep(
        write_spec(tmp.path(), "restarted", &data, 20),
        "[sweep]\n[sweep.grid]\n\"train.learning_rate\" = [0.001, 0.002, 0.003]\n",
    );
    let sweep = worker.submit_detached(&home, &spec, &[])["sweep"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = worker.wait_for(&home, &sweep, HANG_GUARD, |s| {
        s["trials"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["epoch"].as_u64() >= Some(2))
    });

    // SIGTERM mid-sweep: running trials checkpoint and are queued again.
    worker.stop();
    let worker = Worker::start_with_env(
        &worker.data_dir.clone(),
        &[],
        &[("EASEL_MAX_CONCURRENT_JOBS", "2")],
    );
    let done = wait_until_done(&worker, &home, &sweep);
    for trial in done["trials"].as_array().unwrap() {
        assert_eq!(trial["state"], "succeeded", "{done}");
        assert_eq!(trial["epoch"], 20, "{done}");
    }
    // Every trial the stop interrupted after an epoch (each epoch writes a checkpoint) resumed
    // after its last one; none started over from epoch 1.
    let mut interrupted = 0;
    for job in jobs_of(&before) {
        let events = trial_events(&worker, &home, &job);
        let Some(stop) = events
            .iter()
            .position(|e| e["kind"] == "finished" && e["outcome"] == "interrupted")
        else {
            continue;
        };
        interrupted += 1;
        let trained_before = events[..stop]
            .iter()
            .filter(|e| e["kind"] == "epoch")
            .map(|e| e["epoch"].as_u64().unwrap())
            .max()
            .unwrap_or(0);
        let resumed_at = events[stop..]
            .iter()
            .find(|e| e["kind"] == "started")
            .map(|e| e["start_epoch"].as_u64().unwrap())
            .unwrap_or_else(|| panic!("{job} never started again: {events:?}"));
        if trained_before >= 1 {
            assert_eq!(resumed_at, trained_before + 1, "{job}: {events:?}");
        }
    }
    assert!(interrupted >= 1, "the stop interrupted no trial: {before}");
}

#[test]
fn cancel_sweep_ends_every_trial_and_the_median_rule_stops_a_trial_that_falls_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = two_slot_worker(tmp.path());
    let data = sample_subset(tmp.path(), 20);

    // Trials 1 and 2 learn; trial 3's learning rate is too small to move it from chance. It
    // starts once a slot frees (max_concurrent = 2) and is judged at its second epoch.
    let judged = with_sweep(
        small_batches(write_spec(tmp.path(), "judged", &data, 8)),
        "[sweep]\nmax_concurrent = 2\nearly_stop = \"median\"\ngrace_epochs = 2\n\n\
         [sweep.grid]\n\"train.learning_rate\" = [0.003, 0.002, 1e-9]\n",
    );
    let sweep = worker.submit_detached(&home, &judged, &[])["sweep"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = wait_until_done(&worker, &home, &sweep);
    let trials = done["trials"].as_array().unwrap();
    let behind = trials.iter().find(|t| t["number"] == 3).unwrap();
    assert_eq!(behind["state"], "cancelled", "{done}");
    let reason = behind["error"].as_str().unwrap();
    assert!(
        reason.contains("median rule") && reason.contains("epoch 2"),
        "{reason}"
    );
    // Judged after epoch 2, it stops at its next step: well before its eighth epoch.
    assert!(behind["epoch"].as_u64().unwrap() < 8, "{done}");
    for ahead in trials.iter().filter(|t| t["number"] != 3) {
        assert_eq!(ahead["state"], "succeeded", "{done}");
    }
    // The stopped trial keeps what it trained.
    let kept = tmp.path().join("kept");
    let job = behind["job"].as_str().unwrap();
    worker.client_ok(&home, &["fetch", job, "--out", kept.to_str().unwrap()]);
    assert!(kept.join("weights/best.safetensors").is_file());
    assert!(kept.join("metrics.jsonl").is_file());

    // A long sweep: two trials train, one waits; cancel ends all three.
    let long = with_sweep(
        write_spec(tmp.path(), "long", &data, 500),
        "[sweep]\n[sweep.grid]\n\"train.learning_rate\" = [0.001, 0.002, 0.003]\n",
    );
    let sweep = worker.submit_detached(&home, &long, &[])["sweep"]
        .as_str()
        .unwrap()
        .to_owned();
    worker.wait_for(&home, &sweep, HANG_GUARD, |s| {
        let trials = s["trials"].as_array().unwrap();
        trials
            .iter()
            .filter(|t| t["state"] == "running" && t["epoch"].as_u64() >= Some(1))
            .count()
            == 2
    });
    let said = worker.client_ok(&home, &["cancel", &sweep]);
    assert!(said.contains("2 running stop at their next step"), "{said}");
    let cancelled = wait_until_done(&worker, &home, &sweep);
    for trial in cancelled["trials"].as_array().unwrap() {
        assert_eq!(trial["state"], "cancelled", "{cancelled}");
    }
    let reasons: Vec<&str> = cancelled["trials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["error"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("cancelled by request"))
            .count(),
        2,
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("cancelled while queued"))
            .count(),
        1,
        "{reasons:?}"
    );
}
