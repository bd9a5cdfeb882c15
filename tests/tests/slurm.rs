//! The Slurm executor against a real one-node Slurm cluster (deploy/slurm.sh, started by
//! deploy/test.sh: slurmctld, slurmd and munge from Debian, two fake GPUs): each job and trial
//! is one Slurm job; a requeued job resumes from its checkpoint; a restarted worker follows its
//! Slurm jobs again instead of submitting them twice; cancel is scancel; a refused submit fails
//! its job with the cause while the worker serves on.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use easel_e2e::{HANG_GUARD, Worker, json_lines, sample_subset, state, write_spec};

/// Only ends a test that would otherwise wait for ever.
const SLURM_GUARD: Duration = Duration::from_secs(900);

/// The cluster's folder (its job completion log is there).
fn cluster_dir() -> PathBuf {
    let dir = std::env::var_os("EASEL_SLURM_DIR").expect(
        "EASEL_SLURM_DIR is not set: run the tests with deploy/test.sh, which starts a one-node \
         Slurm cluster (deploy/slurm.sh)",
    );
    PathBuf::from(dir)
}

/// A worker whose jobs run as Slurm jobs on partition `gpu`, one fake GPU each, with `slurm`
/// added to its `[executor.slurm]` table.
fn slurm_worker(dir: &Path, slurm: &str) -> Worker {
    cluster_dir();
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("worker.toml");
    std::fs::write(
        &config,
        format!(
            "[executor]\nkind = \"slurm\"\n\n[executor.slurm]\npoll_seconds = 1\n\
             gpus_per_job = 1\n{slurm}\n"
        ),
    )
    .unwrap();
    Worker::start_with(&dir.join("worker"), &["--config", config.to_str().unwrap()])
}

fn slurm(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap();
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The job completion log's lines for Slurm jobs named `easel-<job>`.
fn completed_runs(job: &str) -> Vec<String> {
    std::fs::read_to_string(cluster_dir().join("jobcomp.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&format!("Name=easel-{job} ")))
        .map(str::to_owned)
        .collect()
}

fn events(worker: &Worker, home: &Path, job: &str) -> Vec<serde_json::Value> {
    json_lines(&worker.client_ok(home, &["watch", job, "--from", "0", "--json"]))
}

fn start_epochs(events: &[serde_json::Value]) -> Vec<u64> {
    events
        .iter()
        .filter(|e| e["kind"] == "started")
        .map(|e| e["start_epoch"].as_u64().unwrap())
        .collect()
}

/// The id of the job `spec` makes, submitted without waiting for it.
fn submitted_job(worker: &Worker, home: &Path, spec: &Path) -> String {
    worker.submit_detached(home, spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The job's Slurm folder in the worker's data dir, once the job was submitted to Slurm.
fn slurm_dir_once_submitted(worker: &Worker, job: &str) -> PathBuf {
    let slurm_dir = worker.data_dir.join("jobs").join(job).join("slurm");
    easel_e2e::eventually(
        || slurm_dir.join("slurm-job-id").is_file().then_some(()),
        || format!("the job was never submitted: {}", worker.log_text()),
    );
    slurm_dir
}

fn with_sweep(spec: PathBuf, grid: &str) -> PathBuf {
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, format!("{text}\n[sweep]\n[sweep.grid]\n{grid}\n")).unwrap();
    spec
}

#[test]
fn a_sweep_runs_each_trial_as_a_slurm_job_and_status_names_it() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = slurm_worker(tmp.path(), "partition = \"gpu\"");
    let data = sample_subset(tmp.path(), 8);
    let spec = with_sweep(
        write_spec(tmp.path(), "slurm-sweep", &data, 2),
        "\"train.learning_rate\" = [0.001, 0.003]\n\"train.batch_size\" = [16, 32]",
    );
    let sweep = worker.submit_detached(&home, &spec, &[])["sweep"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = worker.wait_for(&home, &sweep, SLURM_GUARD, |s| s["finished"] == true);
    let trials = done["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 4, "{done}");
    let mut slurm_jobs = Vec::new();
    for trial in trials {
        assert_eq!(trial["state"], "succeeded", "{done}\n{}", worker.log_text());
        let slurm_job = trial["slurm_job_id"].as_str().unwrap().to_owned();
        let job = trial["job"].as_str().unwrap();
        let runs = completed_runs(job);
        assert_eq!(runs.len(), 1, "{job}: {runs:?}");
        assert!(
            runs[0].contains(&format!("JobId={slurm_job} "))
                && runs[0].contains("JobState=COMPLETED"),
            "{runs:?}"
        );
        let status = worker.client_ok(&home, &["status", job]);
        assert!(
            status.contains(&format!("slurm     job {slurm_job}")),
            "{status}"
        );
        slurm_jobs.push(slurm_job);
    }
    slurm_jobs.sort();
    slurm_jobs.dedup();
    assert_eq!(slurm_jobs.len(), 4, "one Slurm job per trial");
}

#[test]
fn a_requeued_job_resumes_from_its_checkpoint_and_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = slurm_worker(tmp.path(), "");
    let data = sample_subset(tmp.path(), 8);
    let spec = write_spec(tmp.path(), "requeued", &data, 30);
    let job = submitted_job(&worker, &home, &spec);
    let running = worker.wait_for(&home, &job, HANG_GUARD, |s| {
        s["epochs_done"].as_u64() >= Some(3)
    });
    let slurm_job = running["slurm_job_id"].as_str().unwrap().to_owned();
    slurm(&["scontrol", "requeue", &slurm_job]);

    let done = worker.wait_for(&home, &job, SLURM_GUARD, |s| {
        !matches!(state(s), "queued" | "running")
    });
    assert_eq!(state(&done), "succeeded", "{done}\n{}", worker.log_text());
    let events = events(&worker, &home, &job);
    let starts = start_epochs(&events);
    assert_eq!(starts.len(), 2, "{starts:?}");
    // The epochs trained before the requeue, each checkpointed, were kept: at most the epoch
    // under way was lost.
    let requeued_at = events
        .iter()
        .position(|e| e["kind"] == "started" && e["start_epoch"] == starts[1])
        .unwrap();
    let trained_before = events[..requeued_at]
        .iter()
        .filter(|e| e["kind"] == "epoch")
        .map(|e| e["epoch"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(starts[1], trained_before + 1, "{events:?}");
    assert!(
        events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("preempted, requeued"))),
        "{events:?}"
    );
}

#[test]
fn a_restarted_worker_follows_its_slurm_jobs_again_without_submitting_them_twice() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut worker = slurm_worker(tmp.path(), "");
    let data = sample_subset(tmp.path(), 8);
    let spec = with_sweep(
        write_spec(tmp.path(), "followed", &data, 20),
        "\"train.learning_rate\" = [0.001, 0.002]",
    );
    let sweep = worker.submit_detached(&home, &spec, &[])["sweep"]
        .as_str()
        .unwrap()
        .to_owned();
    worker.wait_for(&home, &sweep, HANG_GUARD, |s| {
        s["trials"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["epoch"].as_u64() >= Some(2))
    });
    // A crash: no chance to say anything to Slurm. The jobs train on.
    worker.kill();
    let config = tmp.path().join("worker.toml");
    let worker = Worker::start_with(
        &tmp.path().join("worker"),
        &["--config", config.to_str().unwrap()],
    );
    let done = worker.wait_for(&home, &sweep, SLURM_GUARD, |s| s["finished"] == true);
    for trial in done["trials"].as_array().unwrap() {
        assert_eq!(trial["state"], "succeeded", "{done}\n{}", worker.log_text());
        let job = trial["job"].as_str().unwrap();
        assert_eq!(completed_runs(job).len(), 1, "{job} ran as one Slurm job");
        assert_eq!(
            start_epochs(&events(&worker, &home, job)),
            [1],
            "{job} trained once"
        );
    }
}

#[test]
fn a_job_that_finished_while_the_worker_was_down_is_not_run_again() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let mut worker = slurm_worker(tmp.path(), "");
    let data = sample_subset(tmp.path(), 4);
    let spec = write_spec(tmp.path(), "finished-meanwhile", &data, 1);
    let job = submitted_job(&worker, &home, &spec);
    slurm_dir_once_submitted(&worker, &job);
    worker.kill();
    // The Slurm job trains on and ends while no worker watches.
    easel_e2e::eventually_within(
        SLURM_GUARD,
        Duration::from_millis(200),
        || (!completed_runs(&job).is_empty()).then_some(()),
        || format!("the Slurm job never completed: {}", worker.log_text()),
    );
    let config = tmp.path().join("worker.toml");
    let worker = Worker::start_with(
        &tmp.path().join("worker"),
        &["--config", config.to_str().unwrap()],
    );
    let done = worker.wait_until_finished(&home, &job, SLURM_GUARD);
    assert_eq!(state(&done), "succeeded", "{done}\n{}", worker.log_text());
    assert_eq!(completed_runs(&job).len(), 1, "{job} ran as one Slurm job");
}

#[test]
fn cancel_ends_the_slurm_job() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = slurm_worker(tmp.path(), "");
    let data = sample_subset(tmp.path(), 8);
    let spec = write_spec(tmp.path(), "cancelled", &data, 500);
    let job = submitted_job(&worker, &home, &spec);
    let running = worker.wait_for(&home, &job, HANG_GUARD, |s| {
        s["epochs_done"].as_u64() >= Some(1)
    });
    let slurm_job = running["slurm_job_id"].as_str().unwrap().to_owned();
    worker.client_ok(&home, &["cancel", &job]);
    let done = worker.wait_for(&home, &job, HANG_GUARD, |s| state(s) != "running");
    assert_eq!(state(&done), "cancelled", "{done}");
    // Slurm lists a cancelled job as completing (CG) until its node has cleaned up after it:
    // wait for it to leave the queue, not for a moment that may come first.
    easel_e2e::eventually_within(
        HANG_GUARD,
        Duration::from_millis(200),
        || {
            slurm(&["squeue", "-h", "-j", &slurm_job])
                .trim()
                .is_empty()
                .then_some(())
        },
        || {
            format!(
                "squeue lists it still: {}",
                slurm(&["squeue", "-h", "-j", &slurm_job])
            )
        },
    );
}

#[test]
fn a_refused_submit_fails_its_job_with_the_cause_and_the_worker_serves_on() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(tmp.path(), 4);
    let spec = write_spec(tmp.path(), "refused", &data, 1);

    let no_partition = slurm_worker(&tmp.path().join("a"), "partition = \"no-such-partition\"");
    let job = submitted_job(&no_partition, &home, &spec);
    let failed = no_partition.wait_until_finished(&home, &job, HANG_GUARD);
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("sbatch failed") && reason.contains("partition"),
        "{reason}"
    );
    no_partition.client_ok(&home, &["list"]);

    let empty = tmp.path().join("no-slurm-here");
    std::fs::create_dir_all(&empty).unwrap();
    let no_sbatch = slurm_worker(
        &tmp.path().join("b"),
        &format!("bin_dir = \"{}\"", empty.display()),
    );
    let job = submitted_job(&no_sbatch, &home, &spec);
    let failed = no_sbatch.wait_until_finished(&home, &job, HANG_GUARD);
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(reason.contains("sbatch` was not found"), "{reason}");
    no_sbatch.client_ok(&home, &["list"]);
}

/// A compute node that cannot see the worker's data dir, simulated: the job waits a few seconds
/// before it may start (`--begin`), and meanwhile its request disappears from the shared folder.
#[test]
fn a_node_that_cannot_read_the_data_dir_fails_the_job_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let worker = slurm_worker(tmp.path(), "extra_args = [\"--begin=now+5\"]");
    let data = sample_subset(tmp.path(), 4);
    let spec = write_spec(tmp.path(), "unseen", &data, 1);
    let job = submitted_job(&worker, &home, &spec);
    let slurm_dir = slurm_dir_once_submitted(&worker, &job);
    std::fs::rename(
        slurm_dir.join("request.json"),
        slurm_dir.join("elsewhere.json"),
    )
    .unwrap();
    let failed = worker.wait_until_finished(&home, &job, HANG_GUARD);
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap();
    assert!(
        reason.contains("its compute node could not read the job's files")
            && reason.contains("Slurm job "),
        "{reason}"
    );
    worker.client_ok(&home, &["list"]);
}

#[test]
fn up_with_slurm_starts_a_loopback_worker_that_a_submit_reaches_through_the_clients_own_tunnel() {
    use easel_e2e::sshd::{Sshd, Supervised, free_port};
    use easel_e2e::{client_with, machine_pytorch, pack_bundle, submit_detached_with};

    let tmp = tempfile::tempdir().unwrap();
    let slurm_conf = std::env::var("SLURM_CONF").expect("SLURM_CONF (deploy/test.sh sets it)");
    let sshd = Sshd::start(
        &tmp.path().join("sshd"),
        &[
            ("PYTHONPATH", machine_pytorch().to_str().unwrap()),
            ("SLURM_CONF", slurm_conf.as_str()),
        ],
    );
    let archive = pack_bundle(tmp.path());
    let home = tmp.path().join("laptop");
    let easel_dir = tmp.path().join("login/.easel");
    let _cleanup = Supervised(easel_dir.join("data/worker.pid"));
    let port = free_port().to_string();
    let env = [("EASEL_SSH", sshd.ssh_command.as_str())];
    let up = client_with(
        &home,
        &[
            "up",
            "box",
            "--slurm",
            "--partition",
            "gpu",
            "--bundle",
            archive.to_str().unwrap(),
            "--remote-dir",
            easel_dir.to_str().unwrap(),
            "--port",
            &port,
        ],
        &env,
    );
    let said = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(
        up.status.success(),
        "{said}\n{}",
        String::from_utf8_lossy(&up.stderr)
    );
    for line in [
        "slurm-wlm",
        "listening on the machine's loopback port",
        "submitting jobs to Slurm",
        "through an SSH tunnel to 127.0.0.1:",
        "[6/6] profile saved as worker `box`",
    ] {
        assert!(said.contains(line), "missing {line:?} in:\n{said}");
    }
    let worker_config = std::fs::read_to_string(easel_dir.join("worker.toml")).unwrap();
    for line in [
        format!("listen = \"127.0.0.1:{port}\""),
        "kind = \"slurm\"".to_owned(),
        "partition = \"gpu\"".to_owned(),
    ] {
        assert!(worker_config.contains(&line), "{line} in {worker_config}");
    }
    let config = std::fs::read_to_string(home.join(".config/easel/client.toml")).unwrap();
    assert!(config.contains("tunnel = true"), "{config}");

    // Nothing but the profile: the client opens its own SSH forward to the loopback worker.
    let data = sample_subset(tmp.path(), 4);
    let spec = write_spec(tmp.path(), "tunnelled", &data, 1);
    let job = submit_detached_with(&home, &spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let watched = client_with(&home, &["watch", &job], &[]);
    let watched = String::from_utf8_lossy(&watched.stdout).into_owned();
    assert!(watched.contains("submitted to Slurm as job"), "{watched}");
    assert!(watched.contains("succeeded"), "{watched}");
}
