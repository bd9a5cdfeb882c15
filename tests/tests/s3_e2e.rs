//! The worker with an `s3://` artifact store on a real S3 server (SeaweedFS on loopback):
//! - after the worker is stopped and its data dir deleted, `client fetch --store` still gets the
//!   weights, metrics and report, and `client evaluate` reproduces the reported accuracy;
//! - when the S3 server goes down mid-job and comes back, the job ends `succeeded` with every
//!   artifact stored, or `failed` with a reason and no `report.json` — never succeeded with
//!   missing files.
//!
//! The first test uses the shared server named by EASEL_TEST_S3_ENDPOINT (+ _BUCKET,
//! _ACCESS_KEY_ID, _SECRET_ACCESS_KEY), started by `deploy/seaweedfs.sh start DIR`. The outage test
//! starts its own server on other ports through the same script. Both fail when S3 is not
//! available, unless EASEL_SKIP_S3=1 says to skip them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use easel_e2e::s3::{S3, skip_requested};
use easel_e2e::{
    Worker, client_with, json_lines, repo_root, sample_splits, state, write_split_spec,
};
use easel_test_support::S3Settings;

/// Artifacts every finished job must have in the store.
const REQUIRED: [&str; 6] = [
    "weights/best.safetensors",
    "weights/last.safetensors",
    "metrics.jsonl",
    "classes.json",
    "artifacts.json",
    "report.json",
];

fn job_id(summary: &serde_json::Value) -> String {
    summary["job_id"].as_str().unwrap().to_owned()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn fetch_from_s3_after_the_worker_is_gone() {
    let Some(s3) = S3::shared("S3 end-to-end test") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let roots = sample_splits(tmp.path(), 24, 8, 8);
    let spec = write_split_spec(tmp.path(), "s3-demo", &roots, 2);
    let url = s3.unique_url("e2e");

    let mut worker =
        Worker::start_with_env(&tmp.path().join("worker"), &["--store", &url], &s3.env());
    let job = job_id(&worker.submit_detached(&home, &spec, &[]));
    let status = worker.wait_until_finished(&home, &job, Duration::from_secs(300));
    assert_eq!(
        state(&status),
        "succeeded",
        "{status}\nworker log:\n{}",
        worker.log_text()
    );

    // The GPU machine goes away: worker stopped, its disk wiped.
    worker.stop();
    std::fs::remove_dir_all(&worker.data_dir).unwrap();

    let listed = client_with(&home, &["list", "--store", &url, "--json"], &s3.env());
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let jobs: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(jobs[0]["job_id"], job.as_str(), "{jobs}");
    assert_eq!(jobs[0]["complete"], true, "{jobs}");

    let out_dir = tmp.path().join("fetched");
    let fetched = client_with(
        &home,
        &[
            "fetch",
            &job,
            "--store",
            &url,
            "--out",
            out_dir.to_str().unwrap(),
        ],
        &s3.env(),
    );
    assert!(
        fetched.status.success(),
        "fetch --store failed: {}\n{}",
        String::from_utf8_lossy(&fetched.stderr),
        String::from_utf8_lossy(&fetched.stdout)
    );
    for name in REQUIRED {
        assert!(
            out_dir.join(name).is_file(),
            "{name} missing after fetch --store"
        );
    }

    // The weights from the bucket reproduce the accuracy the run reported.
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("report.json")).unwrap())
            .unwrap();
    let reported = report["test_accuracy"]
        .as_f64()
        .expect("test_accuracy in report.json");
    let evaluation = client_with(
        &home,
        &[
            "evaluate",
            out_dir.to_str().unwrap(),
            roots[2].to_str().unwrap(),
            "--json",
        ],
        &[],
    );
    assert!(
        evaluation.status.success(),
        "{}",
        String::from_utf8_lossy(&evaluation.stderr)
    );
    let evaluation: serde_json::Value = serde_json::from_slice(&evaluation.stdout).unwrap();
    let accuracy = evaluation["accuracy"].as_f64().unwrap();
    assert!(
        (accuracy - reported).abs() < 1e-6,
        "evaluate says {accuracy}, the run reported {reported}"
    );
}

/// One SeaweedFS server private to a test, on shifted ports; stopped when dropped.
struct PrivateServer {
    dir: PathBuf,
    s3: S3,
}

const PRIVATE_PORT_OFFSET: &str = "100";

impl PrivateServer {
    fn start(dir: &Path) -> PrivateServer {
        let printed = seaweedfs(&["start", dir.to_str().unwrap()]);
        // `start` shares a server it finds already on the ports; this test must own its server.
        assert!(
            dir.join("weed.pid").is_file(),
            "a SeaweedFS server left from an earlier run holds the private test ports \
             (S3 on 8333 + {PRIVATE_PORT_OFFSET}); stop it first"
        );
        let value = |name: &str| {
            printed
                .lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} not printed by deploy/seaweedfs.sh: {printed}"))
                .to_owned()
        };
        let s3 = S3(S3Settings {
            endpoint: value("EASEL_TEST_S3_ENDPOINT"),
            bucket: value("EASEL_TEST_S3_BUCKET"),
            access_key_id: value("EASEL_TEST_S3_ACCESS_KEY_ID"),
            secret_access_key: value("EASEL_TEST_S3_SECRET_ACCESS_KEY"),
        });
        PrivateServer {
            dir: dir.to_owned(),
            s3,
        }
    }

    fn stop(&self) {
        seaweedfs(&["stop", self.dir.to_str().unwrap()]);
    }

    fn restart(&self) {
        seaweedfs(&["start", self.dir.to_str().unwrap()]);
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("deploy/seaweedfs.sh"))
            .args(["stop", self.dir.to_str().unwrap()])
            .env("EASEL_SEAWEEDFS_PORT_OFFSET", PRIVATE_PORT_OFFSET)
            .status();
    }
}

fn seaweedfs(args: &[&str]) -> String {
    let output = Command::new("bash")
        .arg(repo_root().join("deploy/seaweedfs.sh"))
        .args(args)
        .env("EASEL_SEAWEEDFS_PORT_OFFSET", PRIVATE_PORT_OFFSET)
        .output()
        .expect("bash runs deploy/seaweedfs.sh");
    assert!(
        output.status.success(),
        "deploy/seaweedfs.sh {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The worker's own event log of a job (JSON lines), as written so far.
fn events(worker: &Worker, job: &str) -> Vec<serde_json::Value> {
    let path = worker.data_dir.join("jobs").join(job).join("events.jsonl");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // The last line may be half-written while the worker appends to it.
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    json_lines(complete)
}

fn wait_for_event(
    worker: &Worker,
    job: &str,
    timeout: Duration,
    wanted: impl Fn(&serde_json::Value) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if events(worker, job).iter().any(&wanted) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn s3_outage_mid_job_never_yields_a_succeeded_job_with_missing_files() {
    if skip_requested("S3 end-to-end test") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let server = PrivateServer::start(&tmp.path().join("seaweedfs"));
    let s3 = server.s3.clone();
    let home = tmp.path().join("home");
    let roots = sample_splits(tmp.path(), 24, 8, 8);
    let spec = write_split_spec(tmp.path(), "s3-outage", &roots, 4);
    let url = s3.unique_url("outage");

    let worker = Worker::start_with_env(&tmp.path().join("worker"), &["--store", &url], &s3.env());
    let job = job_id(&worker.submit_detached(&home, &spec, &[]));

    // Take S3 away once training is under way, and keep it away until an upload has noticed.
    let ends = |e: &serde_json::Value| e["kind"] == "finished";
    assert!(
        wait_for_event(&worker, &job, Duration::from_secs(180), |e| e["kind"]
            == "epoch"
            || ends(e)),
        "no epoch event; worker log:\n{}",
        worker.log_text()
    );
    server.stop();
    let stopped_at = Instant::now();
    let retried = wait_for_event(&worker, &job, Duration::from_secs(120), |e| {
        e["kind"] == "artifact_retry" || ends(e)
    });
    server.restart();
    eprintln!(
        "s3 was down for {:.1} s",
        stopped_at.elapsed().as_secs_f64()
    );
    assert!(
        retried,
        "the job neither retried an upload nor ended; worker log:\n{}",
        worker.log_text()
    );

    let status = worker.wait_until_finished(&home, &job, Duration::from_secs(300));
    let log = events(&worker, &job);
    let retries = log.iter().filter(|e| e["kind"] == "artifact_retry").count();
    let store = s3.store(&url);
    let runtime = runtime();
    let stored: Vec<String> = runtime
        .block_on(store.list_artifacts(&job))
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    match state(&status) {
        "succeeded" => {
            // The outage was seen (a retry event) and every artifact made it, digests intact.
            assert!(
                retries > 0,
                "a succeeded job must have retried through the outage: {log:?}"
            );
            for name in REQUIRED {
                assert!(
                    stored.iter().any(|n| n == name),
                    "{name} missing from the store: {stored:?}"
                );
            }
            let out = tmp.path().join("fetched");
            let report = runtime
                .block_on(store.download_job(&job, &[], &out))
                .unwrap();
            assert!(report.complete);
            let unverified: Vec<&str> = report
                .files
                .iter()
                .filter(|f| {
                    !f.digest_verified && f.name != "artifacts.json" && f.name != "report.json"
                })
                .map(|f| f.name.as_str())
                .collect();
            // events.jsonl may grow after the index was written; everything else is verified.
            assert!(
                unverified.iter().all(|n| *n == "events.jsonl"),
                "not verified: {unverified:?}"
            );
            eprintln!("outage: job succeeded after {retries} upload retries");
        }
        "failed" => {
            let reason = status["reason"].as_str().unwrap_or("");
            assert!(
                reason.contains("stor"),
                "a failed job says what was not stored: {status}"
            );
            assert!(
                !stored.iter().any(|n| n == "report.json"),
                "a failed job must not look complete: {stored:?}"
            );
            eprintln!("outage: job failed after {retries} upload retries: {reason}");
        }
        other => panic!(
            "job ended {other}: {status}\nworker log:\n{}",
            worker.log_text()
        ),
    }
}
