//! A dataset already in the bucket (`data.path = "s3://bucket/datasets/digits"`): the client
//! uploads nothing, the worker copies the objects from the loopback S3 server (SeaweedFS),
//! scans them into the job's manifest and trains.
//!
//! Uses the shared server named by EASEL_TEST_S3_ENDPOINT (+ _BUCKET, _ACCESS_KEY_ID,
//! _SECRET_ACCESS_KEY), started by `deploy/seaweedfs.sh start DIR`; fails when it is absent
//! unless EASEL_SKIP_S3=1 says to skip.

use std::path::{Path, PathBuf};
use std::time::Duration;

use easel_e2e::s3::S3;
use easel_e2e::{HANG_GUARD, Worker, sample_subset, state, write_spec};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutPayload};

const PER_CLASS: usize = 8;

/// Every file under `root` as (path relative to it, '/'-separated; full path).
fn files_under(root: &Path) -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    for class in std::fs::read_dir(root).unwrap().map(|e| e.unwrap().path()) {
        for file in std::fs::read_dir(&class)
            .unwrap()
            .map(|e| e.unwrap().path())
        {
            let relative = format!(
                "{}/{}",
                class.file_name().unwrap().to_str().unwrap(),
                file.file_name().unwrap().to_str().unwrap()
            );
            files.push((relative, file));
        }
    }
    files.sort();
    files
}

/// Puts a folder-per-class dataset under `prefix` in the bucket; returns the number of files.
fn put_dataset(s3: &S3, prefix: &str, root: &Path) -> usize {
    let store = s3.bucket_store();
    let files = files_under(root);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            for (relative, path) in &files {
                let bytes = std::fs::read(path).unwrap();
                store
                    .put(
                        &ObjectPath::from(format!("{prefix}/{relative}")),
                        PutPayload::from(bytes),
                    )
                    .await
                    .unwrap();
            }
        });
    files.len()
}

/// The worker's S3 settings, with the test bucket allowed for datasets (none is by default).
fn worker_env<'a>(s3: &'a S3, allowed_prefix: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut env = s3.env().to_vec();
    env.push(("EASEL_DATASET_PREFIXES", allowed_prefix));
    env
}

#[test]
fn worker_trains_on_a_dataset_already_in_the_bucket() {
    let Some(s3) = S3::shared("S3 dataset test") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let local = sample_subset(tmp.path(), PER_CLASS);
    let url = format!("{}/digits", s3.unique_url("datasets"));
    let prefix = url.strip_prefix(&format!("s3://{}/", s3.bucket)).unwrap();
    let images = put_dataset(&s3, prefix, &local);
    std::fs::remove_dir_all(&local).unwrap();
    let spec = write_spec(tmp.path(), "s3-dataset", Path::new(&url), 1);

    let allowed = format!("s3://{}/", s3.bucket);
    let worker =
        Worker::start_with_env(&tmp.path().join("worker"), &[], &worker_env(&s3, &allowed));
    let output = worker.client(
        &home,
        &[
            "submit",
            spec.to_str().unwrap(),
            "--detach",
            "--json",
            "--no-poc",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "submit failed: {stderr}");
    assert!(
        stderr.contains(&format!(
            "dataset: {url} (read by the worker from object storage)"
        )),
        "{stderr}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["upload"]["bytes_sent"], 0, "{summary}");
    assert_eq!(summary["plan"]["upload_files"], 0, "{summary}");
    let job = summary["job_id"].as_str().unwrap().to_owned();

    let status = worker.wait_until_finished(&home, &job, Duration::from_secs(300));
    assert_eq!(
        state(&status),
        "succeeded",
        "{status}\nworker log:\n{}",
        worker.log_text()
    );
    assert_eq!(status["dataset_images"], images as u64, "{status}");

    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            worker
                .data_dir
                .join("jobs")
                .join(&job)
                .join("manifest.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["entries"].as_array().unwrap().len(), images);
    assert_eq!(manifest["classes"].as_array().unwrap().len(), 10);
    assert!(
        std::fs::read_to_string(worker.data_dir.join("jobs").join(&job).join("events.jsonl"))
            .unwrap()
            .contains(&format!(
                "dataset: {images} images in 10 classes read from {url}"
            )),
        "the job says where its dataset came from"
    );
}

#[test]
fn a_prefix_without_objects_fails_the_job_naming_the_url() {
    let Some(s3) = S3::shared("S3 dataset test") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let url = format!(
        "s3://{}/datasets-missing-{}/digits",
        s3.bucket,
        std::process::id()
    );
    let spec = write_spec(tmp.path(), "s3-missing", Path::new(&url), 1);
    let allowed = format!("s3://{}/", s3.bucket);
    let worker =
        Worker::start_with_env(&tmp.path().join("worker"), &[], &worker_env(&s3, &allowed));
    let summary = worker.submit_detached(&home, &spec, &[]);
    let job = summary["job_id"].as_str().unwrap().to_owned();
    let status = worker.wait_until_finished(&home, &job, HANG_GUARD);
    assert_eq!(state(&status), "failed", "{status}");
    let reason = status["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains(&format!("dataset {url}: no objects found under this URL")),
        "{reason}"
    );
}
