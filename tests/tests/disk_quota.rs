//! The worker's disk under control with the real binaries: a submit that cannot fit the
//! worker's upload quota is refused before any byte moves, and `client rm` frees the space it
//! reports.

use easel_digest::folder_bytes;
use easel_e2e::{HANG_GUARD, Worker, noise_dataset, sample_subset, state, write_spec};

#[test]
fn a_submit_larger_than_the_quota_is_refused_before_any_byte_moves() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    // 2 x 30 noise images of 48x48: about 420 kB, against a 100 kB quota.
    let data = noise_dataset(tmp.path(), 30, 48, 11);
    let spec = write_spec(tmp.path(), "too-big", &data, 1);
    let worker = Worker::start_with_env(
        &tmp.path().join("worker"),
        &[],
        &[("EASEL_MAX_STORED_BYTES", "100000")],
    );
    let output = worker.client(&home, &["submit", spec.to_str().unwrap(), "--no-poc"]);
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{said}");
    assert!(
        said.contains("does not fit on the worker")
            && said.contains("nothing was uploaded")
            && said.contains("client rm"),
        "{said}"
    );
    assert_eq!(
        folder_bytes(&worker.data_dir.join("blobs")),
        0,
        "no byte of the refused dataset reached the worker"
    );
}

#[test]
fn client_rm_frees_the_space_it_reports() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(tmp.path(), 12);
    let spec = write_spec(tmp.path(), "removable", &data, 1);
    let worker = Worker::start(&tmp.path().join("worker"));
    let job = worker.submit_detached(&home, &spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = worker.wait_until_finished(&home, &job, HANG_GUARD);
    assert_eq!(state(&done), "succeeded", "{done}");

    let held = |w: &Worker| {
        folder_bytes(&w.data_dir.join("blobs")) + folder_bytes(&w.data_dir.join("jobs"))
    };
    let before = held(&worker);
    let removed: serde_json::Value =
        serde_json::from_str(&worker.client_ok(&home, &["rm", &job, "--json"])).unwrap();
    let freed = removed["freed_bytes"].as_u64().unwrap();
    assert!(freed > 0, "{removed}");
    assert_eq!(before - held(&worker), freed, "{removed}");
    assert_eq!(folder_bytes(&worker.data_dir.join("blobs")), 0, "{removed}");

    // The job is gone from the worker; its artifacts stay in the store and fetch from there.
    let status = worker.client(&home, &["status", &job]);
    assert!(!status.status.success());
    let store = format!("file://{}", worker.data_dir.join("artifacts").display());
    let out = tmp.path().join("fetched");
    worker.client_ok(
        &home,
        &[
            "fetch",
            &job,
            "--store",
            &store,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(out.join("weights/best.safetensors").is_file());

    // A resubmit uploads the dataset again and runs.
    let again = worker.submit_detached(&home, &spec, &[]);
    assert!(
        again["plan"]["upload_files"].as_u64().unwrap() > 0,
        "{again}"
    );
}
