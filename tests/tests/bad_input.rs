//! Bad data reaching the worker: an image whose header is fine but whose pixels are cut off
//! passes the laptop's header scan, fails decoding on the worker, and must fail that job with a
//! reason naming the file, while the worker goes on serving the next job; a training that dies
//! outright (an abort in native code) ends its job alone.

use easel_e2e::{HANG_GUARD, Worker, sample_subset, state, write_spec};

#[test]
fn a_truncated_image_fails_its_job_by_name_and_the_worker_serves_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let good = sample_subset(&tmp.path().join("good"), 8);
    let bad = sample_subset(&tmp.path().join("bad"), 8);
    let victim = std::fs::read_dir(bad.join("3-three"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let bytes = std::fs::read(&victim).unwrap();
    // PNG signature + IHDR (33 bytes) and a little more: the header reads, the pixels do not.
    std::fs::write(&victim, &bytes[..60.min(bytes.len() - 1)]).unwrap();
    let victim_name = victim.file_name().unwrap().to_str().unwrap().to_owned();

    let bad_spec = write_spec(tmp.path(), "bad", &bad, 1);
    let good_spec = write_spec(tmp.path(), "good", &good, 1);
    let worker = Worker::start(&tmp.path().join("worker"));

    let bad_job = worker.submit_detached(&home, &bad_spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = worker.wait_until_finished(&home, &bad_job, HANG_GUARD);
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = failed.to_string();
    assert!(
        reason.contains(&victim_name),
        "the failure names the broken file {victim_name}: {failed}"
    );

    let good_job = worker.submit_detached(&home, &good_spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = worker.wait_until_finished(&home, &good_job, HANG_GUARD);
    assert_eq!(state(&done), "succeeded", "{done}");
}

#[test]
fn a_blob_damaged_on_the_worker_is_moved_aside_and_the_next_submit_uploads_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(&tmp.path().join("data"), 8);
    let spec = write_spec(tmp.path(), "torn", &data, 1);
    let worker = Worker::start(&tmp.path().join("worker"));
    let submit = || {
        let job = worker.submit_detached(&home, &spec, &[])["job_id"]
            .as_str()
            .unwrap()
            .to_owned();
        worker.wait_until_finished(&home, &job, HANG_GUARD)
    };
    let first = submit();
    assert_eq!(state(&first), "succeeded", "{first}");

    // A power loss tears one image's blob; its decoded cache is gone too, so the next job reads
    // the blob again.
    let victim = std::fs::read_dir(data.join("3-three"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .min()
        .unwrap();
    let digest = blake3::hash(&std::fs::read(&victim).unwrap())
        .to_hex()
        .to_string();
    let blobs = worker.data_dir.join("blobs");
    let blob = blobs.join(&digest[..2]).join(&digest);
    let torn = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &torn[..torn.len() / 2]).unwrap();
    for cache in std::fs::read_dir(worker.data_dir.join("cache")).unwrap() {
        std::fs::remove_file(cache.unwrap().path()).unwrap();
    }

    let failed = submit();
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("damaged on the worker") && reason.contains("moved aside"),
        "{failed}"
    );
    assert!(!blob.exists());
    assert!(blobs.join("quarantine").join(&digest).exists());

    // The blob now counts as missing: the next submit uploads it, and the job trains.
    let again = submit();
    assert_eq!(state(&again), "succeeded", "{again}");
    assert_eq!(std::fs::read(&blob).unwrap(), torn);
}

#[test]
fn a_training_process_that_crashes_fails_its_job_alone_and_the_worker_serves_the_next() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(&tmp.path().join("data"), 8);
    let long_spec = write_spec(tmp.path(), "crashing", &data, 500);
    let short_spec = write_spec(tmp.path(), "after", &data, 1);
    let worker = Worker::start(&tmp.path().join("worker"));
    let worker_pid = worker.pid().unwrap();

    let crashing = worker.submit_detached(&home, &long_spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    worker.wait_for(&home, &crashing, HANG_GUARD, |s| {
        s["epochs_done"].as_u64() >= Some(1)
    });
    let trainers = worker.children();
    assert_eq!(trainers.len(), 1, "one training process per running job");
    // What an abort inside libtorch or a driver does to the process that runs it.
    let killed = std::process::Command::new("kill")
        .args(["-ABRT", &trainers[0].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let failed = worker.wait_until_finished(&home, &crashing, HANG_GUARD);
    assert_eq!(state(&failed), "failed", "{failed}");
    assert!(
        failed.to_string().contains("killed by signal 6 (SIGABRT"),
        "the reason says how the training died: {failed}"
    );

    let next = worker.submit_detached(&home, &short_spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = worker.wait_until_finished(&home, &next, HANG_GUARD);
    assert_eq!(state(&done), "succeeded", "{done}");
    assert_eq!(worker.pid(), Some(worker_pid));
    assert!(
        worker.children().is_empty(),
        "a finished job's training process is gone"
    );
}

#[test]
fn a_torchscript_archive_as_pretrained_fails_its_job_and_its_code_never_runs() {
    use easel_test_support::{TORCHSCRIPT_CODE_MARKER, torch_fixture};
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(&tmp.path().join("data"), 8);
    let spec = write_spec(tmp.path(), "torchscript", &data, 1);
    let text = std::fs::read_to_string(&spec).unwrap().replace(
        "architecture = \"small_cnn\"\n",
        &format!(
            "architecture = \"small_cnn\"\npretrained = \"{}\"\n",
            torch_fixture("torchscript_setstate.pt").display()
        ),
    );
    std::fs::write(&spec, text).unwrap();
    let worker = Worker::start(&tmp.path().join("worker"));

    // `submit_detached` skips the laptop's proof of concept: the file goes to the worker as it is.
    let job = worker.submit_detached(&home, &spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let failed = worker.wait_until_finished(&home, &job, HANG_GUARD);
    assert_eq!(state(&failed), "failed", "{failed}");
    let reason = failed["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("TorchScript archive") && reason.contains("never runs code"),
        "{failed}"
    );
    let log = worker.log_text();
    assert!(
        !log.contains(TORCHSCRIPT_CODE_MARKER) && !reason.contains(TORCHSCRIPT_CODE_MARKER),
        "the archive's code ran on the worker: {log}"
    );
}

#[test]
fn a_worker_whose_data_dir_holds_a_damaged_event_log_starts_serves_and_fails_that_job() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let data = sample_subset(&tmp.path().join("data"), 8);
    let spec = write_spec(tmp.path(), "damaged", &data, 1);
    let mut worker = Worker::start(&tmp.path().join("worker"));
    let first = worker.submit_detached(&home, &spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = worker.wait_until_finished(&home, &first, HANG_GUARD);
    assert_eq!(state(&done), "succeeded", "{done}");
    worker.stop();

    // Invalid bytes in the middle and a torn last line (a byte of a two-byte character).
    let events = worker
        .data_dir
        .join("jobs")
        .join(&first)
        .join("events.jsonl");
    let mut text = std::fs::read(&events).unwrap();
    let second_line = text.iter().position(|&b| b == b'\n').unwrap() + 1;
    text.splice(
        second_line..second_line,
        b"\xff\xfe not an event\n".iter().copied(),
    );
    text.push(0xC3);
    std::fs::write(&events, text).unwrap();

    let worker = Worker::start(&worker.data_dir.clone());
    let status = worker.wait_until_finished(&home, &first, HANG_GUARD);
    assert_eq!(state(&status), "failed", "{status}");
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("events.jsonl was damaged")
            && reason.contains("line 2: invalid UTF-8")
            && reason.contains("a torn last line"),
        "{status}"
    );
    // Its readable events are still there to watch.
    let watched = worker.client_ok(&home, &["watch", &first, "--from", "0", "--json"]);
    assert!(watched.contains("\"kind\":\"epoch\""), "{watched}");

    let next = worker.submit_detached(&home, &spec, &[])["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let served = worker.wait_until_finished(&home, &next, HANG_GUARD);
    assert_eq!(state(&served), "succeeded", "{served}");
}
