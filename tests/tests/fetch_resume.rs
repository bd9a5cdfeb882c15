//! `client fetch` from the worker resumes a download cut off earlier: the bytes already
//! written stay and only the rest travels; leftover bytes that are not a part of the file are
//! thrown away and the file comes whole.

use std::path::Path;
use std::time::Duration;

use easel_e2e::{Worker, json_lines, sample_subset, state, write_spec};

const WEIGHTS: &str = "weights/best.safetensors";

/// `client fetch JOB --out DIR --json`: the entry of the best weights.
fn fetch_weights(worker: &Worker, home: &Path, job: &str, out: &Path) -> serde_json::Value {
    let printed = worker.client_ok(
        home,
        &["fetch", job, "--out", out.to_str().unwrap(), "--json"],
    );
    let summary = json_lines(&printed).swap_remove(0);
    summary["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == WEIGHTS)
        .cloned()
        .unwrap_or_else(|| panic!("no {WEIGHTS} among {summary}"))
}

/// Where a cut-off download of the weights keeps its bytes under `out`.
fn partial_of(out: &Path, whole: &[u8]) -> std::path::PathBuf {
    let digest = blake3::hash(whole).to_hex().to_string();
    out.join(format!("{WEIGHTS}.{}.part", &digest[..16]))
}

#[test]
fn a_cut_off_fetch_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(tmp.path(), 12);
    let spec = write_spec(tmp.path(), "resumable", &data, 1);
    let worker = Worker::start(&tmp.path().join("worker"));
    let job = worker.submit_detached(&home, &spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let status = worker.wait_until_finished(&home, &job, Duration::from_secs(300));
    assert_eq!(state(&status), "succeeded", "{status}");

    let first = tmp.path().join("first");
    let entry = fetch_weights(&worker, &home, &job, &first);
    assert_eq!(entry["resumed_bytes"], 0, "{entry}");
    let whole = std::fs::read(first.join(WEIGHTS)).unwrap();
    assert!(whole.len() > 1000, "{} bytes", whole.len());

    // The first half on disk, as a download cut off there leaves it: only the rest travels.
    let again = tmp.path().join("again");
    let partial = partial_of(&again, &whole);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    let half = whole.len() / 2;
    std::fs::write(&partial, &whole[..half]).unwrap();
    let entry = fetch_weights(&worker, &home, &job, &again);
    assert_eq!(entry["resumed_bytes"], half as u64, "{entry}");
    assert_eq!(entry["size"], whole.len() as u64, "{entry}");
    assert_eq!(std::fs::read(again.join(WEIGHTS)).unwrap(), whole);
    assert!(!partial.exists(), "the partial became the file");

    // Bytes that are not the file's own beginning fail the check, are dropped, and the file
    // is fetched whole.
    let spoiled = tmp.path().join("spoiled");
    let partial = partial_of(&spoiled, &whole);
    std::fs::create_dir_all(partial.parent().unwrap()).unwrap();
    std::fs::write(&partial, vec![0u8; half]).unwrap();
    let entry = fetch_weights(&worker, &home, &job, &spoiled);
    assert_eq!(entry["resumed_bytes"], 0, "{entry}");
    assert_eq!(std::fs::read(spoiled.join(WEIGHTS)).unwrap(), whole);
    assert!(!partial.exists());
}
