//! A head search on a frozen VGG16 (weights saved by PyTorch), run as one sweep, against one of
//! its trials run alone, each on a fresh worker with two training slots: the sweep computes the
//! backbone's features once and its eight trials read them, so it should cost about one
//! backbone pass plus eight head trainings. Prints both wall times (submit to the last trial's
//! end, upload and decode included for both) and their ratio, then how long `cancel SWEEP` takes
//! to end a sweep's running and queued trials.
//!
//!   cargo bench -p easel-e2e --bench sweep_shared_work
//!   EASEL_BENCH_PER_CLASS=40 cargo bench -p easel-e2e --bench sweep_shared_work   (quicker)

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use easel_e2e::{Worker, json_lines, sample_subset, write_spec};

/// Only ends a bench that would otherwise wait for ever.
const GUARD: Duration = Duration::from_secs(3600);

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The frozen-VGG16 spec every trial shares: 64x64 images, flips, a dense head.
fn head_search_spec(dir: &Path, data: &Path, name: &str) -> PathBuf {
    let weights = easel_test_support::torch_fixture("vgg16_legacy.pth");
    let spec = write_spec(dir, name, data, 3);
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("image_size = 28\n\n[model]", "image_size = 64\n\n[model]")
        .replace(
            "architecture = \"small_cnn\"",
            &format!(
                "architecture = \"vgg16\"\npretrained = \"{}\"\nfreeze_backbone = true\nhead = [64]",
                weights.display()
            ),
        )
        .replace("[augment]\nflip = false", "[augment]\nflip = true")
        .replace("optimizer = \"adam\"", "optimizer = \"sgd\"\nmomentum = 0.9");
    std::fs::write(&spec, text).unwrap();
    spec
}

fn two_slots(dir: &Path) -> Worker {
    Worker::start_with_env(dir, &[], &[("EASEL_MAX_CONCURRENT_JOBS", "2")])
}

/// Seconds from the start of `client submit` (upload included) until `done` holds.
fn timed(worker: &Worker, home: &Path, spec: &Path, id_key: &str, done: &str) -> (f64, String) {
    let started = Instant::now();
    let submitted = worker.submit_detached(home, spec, &[]);
    let id = submitted[id_key].as_str().unwrap().to_owned();
    worker.wait_for(home, &id, GUARD, |s| {
        s[done] == true
            || matches!(
                s["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
    });
    (started.elapsed().as_secs_f64(), id)
}

fn notes_of(worker: &Worker, home: &Path, job: &str) -> Vec<String> {
    json_lines(&worker.client_ok(home, &["watch", job, "--from", "0", "--json"]))
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

fn main() {
    let per_class = setting("EASEL_BENCH_PER_CLASS", 100) as usize;
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(tmp.path(), per_class);
    let images = per_class * 10;

    let alone_spec = head_search_spec(tmp.path(), &data, "alone");
    let alone_worker = two_slots(&tmp.path().join("alone-worker"));
    let (alone, job) = timed(&alone_worker, &home, &alone_spec, "job_id", "");
    let alone_state = alone_worker.status(&home, &job);
    assert_eq!(alone_state["state"], "succeeded", "{alone_state}");
    drop(alone_worker);

    let sweep_spec = head_search_spec(tmp.path(), &data, "search");
    let text = std::fs::read_to_string(&sweep_spec).unwrap();
    std::fs::write(
        &sweep_spec,
        format!(
            "{text}\n[sweep]\n[sweep.grid]\n\"train.learning_rate\" = [0.001, 0.002, 0.005, 0.01]\n\"model.head\" = [[64], [128, 64]]\n"
        ),
    )
    .unwrap();
    let sweep_worker = two_slots(&tmp.path().join("sweep-worker"));
    let (swept, sweep) = timed(&sweep_worker, &home, &sweep_spec, "sweep", "finished");
    let status = sweep_worker.status(&home, &sweep);
    let trials = status["trials"].as_array().unwrap();
    assert!(trials.iter().all(|t| t["state"] == "succeeded"), "{status}");
    let (mut computed, mut reused) = (0, 0);
    for trial in trials {
        let notes = notes_of(&sweep_worker, &home, trial["job"].as_str().unwrap());
        computed += notes
            .iter()
            .filter(|n| n.starts_with("features cached:"))
            .count();
        reused += notes
            .iter()
            .filter(|n| n.starts_with("frozen backbone features reused"))
            .count();
    }

    println!(
        "head search on a frozen VGG16, {images} images at 64x64 with flips, 3 epochs, 2 CPU training slots"
    );
    println!("  one trial alone:        {alone:8.1} s");
    println!("  sweep of {} trials:      {swept:8.1} s", trials.len());
    println!("  ratio sweep / one:      {:8.2}x", swept / alone);
    println!("  backbone passes:        {computed} (features read by {reused} trials)");

    // Cancel: a long sweep, two trials training and one queued.
    let long = write_spec(tmp.path(), "long", &data, 500);
    let text = std::fs::read_to_string(&long).unwrap();
    std::fs::write(
        &long,
        format!("{text}\n[sweep]\n[sweep.grid]\n\"train.learning_rate\" = [0.001, 0.002, 0.003]\n"),
    )
    .unwrap();
    let long_sweep = sweep_worker.submit_detached(&home, &long, &[])["sweep"]
        .as_str()
        .unwrap()
        .to_owned();
    sweep_worker.wait_for(&home, &long_sweep, GUARD, |s| {
        s["trials"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["state"] == "running" && t["epoch"].as_u64() >= Some(1))
            .count()
            == 2
    });
    let cancelled = Instant::now();
    sweep_worker.client_ok(&home, &["cancel", &long_sweep]);
    sweep_worker.wait_for(&home, &long_sweep, GUARD, |s| s["finished"] == true);
    println!(
        "  cancel SWEEP (2 running, 1 queued) to every trial ended: {:.2} s",
        cancelled.elapsed().as_secs_f64()
    );
}
