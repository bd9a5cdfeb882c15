//! A job continues on another machine: worker A trains with a `file://` store shared with worker
//! B, is killed once epoch 1's checkpoint is in the store, and its disk is wiped; B (a fresh data
//! dir, the same store) takes `client submit SPEC --resume-from JOB` and trains the remaining
//! epochs. Resuming from a job without a checkpoint, or with another spec, is refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use easel_e2e::{Worker, eventually_within, json_lines, sample_subset, state, write_spec};

const EPOCHS: u64 = 6;

/// Ends a test whose training would otherwise be waited for without end.
const TRAINING_HANG_GUARD: Duration = Duration::from_secs(300);

/// The demo spec with a checkpoint after every epoch.
fn checkpointing_spec(dir: &Path, name: &str, data: &Path, learning_rate: &str) -> PathBuf {
    let path = write_spec(dir, name, data, EPOCHS as u32);
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text.replace(
        "learning_rate = 0.002\n",
        &format!("learning_rate = {learning_rate}\ncheckpoint_every_epochs = 1\n"),
    );
    assert!(text.contains("checkpoint_every_epochs = 1"), "{text}");
    std::fs::write(&path, text).unwrap();
    path
}

fn submit(worker: &Worker, home: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["submit", "--detach", "--json", "--no-poc"];
    all.extend_from_slice(args);
    worker.client(home, &all)
}

fn job_id(output: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "submit failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&stdout)[0]["job_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_new_worker_resumes_a_job_from_the_store() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(tmp.path(), 20);
    let spec = checkpointing_spec(tmp.path(), "moving", &data, "0.002");
    let spec_arg = spec.to_str().unwrap();
    let store_dir = tmp.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store_url = format!("file://{}", store_dir.display());

    // Machine A: trains until its first checkpoint reached the store, then dies.
    let mut first = Worker::start_with(&tmp.path().join("a"), &["--store", &store_url]);
    let job = job_id(&submit(&first, &home, &[spec_arg]));
    let stored_checkpoint = store_dir.join(format!("jobs/{job}/checkpoints/last.ckpt"));
    eventually_within(
        TRAINING_HANG_GUARD,
        // Looked for often, so A dies soon after its first checkpoint, epochs before its end.
        Duration::from_millis(20),
        || stored_checkpoint.is_file().then_some(()),
        || {
            format!(
                "no checkpoint in the store; worker log:\n{}",
                first.log_text()
            )
        },
    );
    first.kill();
    std::fs::remove_dir_all(&first.data_dir).unwrap();

    // Machine B: a fresh disk, the same store.
    let second = Worker::start_with(&tmp.path().join("b"), &["--store", &store_url]);

    // A job the store knows nothing of is refused, and no job is created.
    let unknown = submit(
        &second,
        &home,
        &[spec_arg, "--resume-from", "20990101-000000-dead"],
    );
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("cannot resume from job `20990101-000000-dead`")
            && stderr.contains("holds no checkpoint"),
        "{stderr}"
    );
    // Another learning rate does not fit the checkpoint: refused, naming the key.
    let other = checkpointing_spec(tmp.path(), "other", &data, "0.01");
    let mismatched = submit(
        &second,
        &home,
        &[other.to_str().unwrap(), "--resume-from", &job],
    );
    assert!(!mismatched.status.success());
    let stderr = String::from_utf8_lossy(&mismatched.stderr);
    assert!(
        stderr.contains("made for another run") && stderr.contains("train.learning_rate"),
        "{stderr}"
    );
    assert_eq!(second.client_ok(&home, &["list", "--json"]).trim(), "[]");

    let resumed = job_id(&submit(&second, &home, &[spec_arg, "--resume-from", &job]));
    let status = second.wait_until_finished(&home, &resumed, TRAINING_HANG_GUARD);
    assert_eq!(
        state(&status),
        "succeeded",
        "{status}\nworker log:\n{}",
        second.log_text()
    );

    let events =
        json_lines(&second.client_ok(&home, &["watch", &resumed, "--from", "0", "--json"]));
    let started = events
        .iter()
        .find(|e| e["kind"] == "started")
        .unwrap_or_else(|| panic!("no started event: {events:?}"));
    let start_epoch = started["start_epoch"].as_u64().unwrap();
    assert!(
        (2..=EPOCHS).contains(&start_epoch),
        "start_epoch {start_epoch}: {started}"
    );
    let note = format!("resuming from job {job} at epoch {start_epoch}");
    assert!(
        events
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.starts_with(&note))),
        "no `{note}` note: {events:?}"
    );
    let trained: Vec<u64> = events
        .iter()
        .filter(|e| e["kind"] == "epoch")
        .map(|e| e["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(
        trained,
        (start_epoch..=EPOCHS).collect::<Vec<_>>(),
        "B trains only the remaining epochs"
    );

    // The resumed job's metrics hold the whole run: A's epochs from the checkpoint, then B's.
    let metrics_path = store_dir.join(format!("jobs/{resumed}/metrics.jsonl"));
    let metrics = json_lines(&std::fs::read_to_string(&metrics_path).unwrap());
    let epochs: Vec<u64> = metrics
        .iter()
        .map(|m| m["epoch"].as_u64().unwrap())
        .collect();
    assert_eq!(epochs, (1..=EPOCHS).collect::<Vec<_>>(), "{metrics:?}");
    assert!(
        store_dir
            .join(format!("jobs/{resumed}/report.json"))
            .is_file()
    );
}
