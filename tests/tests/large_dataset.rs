//! A dataset far past what one message can carry: 200,000 tiny generated PNGs submit (the
//! manifest travels as a blob, blob queries go in batches), train one epoch on CPU, and fetch;
//! a resubmit of the same data uploads nothing.

use std::time::{Duration, Instant};

use easel_e2e::{Worker, noise_dataset, state};

const PER_CLASS: usize = 100_000;

#[test]
fn two_hundred_thousand_images_submit_train_and_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let started = Instant::now();
    let data = noise_dataset(tmp.path(), PER_CLASS, 2, 5);
    eprintln!(
        "generated {} images in {:.1} s",
        2 * PER_CLASS,
        started.elapsed().as_secs_f64()
    );
    let spec = tmp.path().join("large.toml");
    std::fs::write(
        &spec,
        format!(
            r#"name = "large"

[data]
path = "{}"
validation_split = 0.05
test_split = 0.05
image_size = 16

[model]
architecture = "small_cnn"

[train]
epochs = 1
batch_size = 512
precision = "fp32"

[augment]
flip = false
"#,
            data.display()
        ),
    )
    .unwrap();
    let worker = Worker::start(&tmp.path().join("worker"));

    let started = Instant::now();
    let summary = worker.submit_detached(&home, &spec, &[]);
    eprintln!(
        "scanned and uploaded in {:.1} s: {summary}",
        started.elapsed().as_secs_f64()
    );
    // Every image (random pixels: all distinct); the manifest travels beside them.
    let files = 2 * PER_CLASS as u64;
    assert_eq!(summary["plan"]["files"].as_u64(), Some(files), "{summary}");
    assert_eq!(
        summary["plan"]["upload_files"].as_u64(),
        Some(files),
        "{summary}"
    );
    let job = summary["job_id"].as_str().unwrap().to_owned();
    let done = worker.wait_until_finished(&home, &job, Duration::from_secs(900));
    assert_eq!(state(&done), "succeeded", "{done}\n{}", worker.log_text());
    assert_eq!(
        done["dataset_images"].as_u64(),
        Some(2 * PER_CLASS as u64),
        "{done}"
    );
    eprintln!(
        "submitted and trained in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let out = tmp.path().join("fetched");
    worker.client_ok(&home, &["fetch", &job, "--out", out.to_str().unwrap()]);
    assert!(out.join("weights/best.safetensors").is_file());
    eprintln!("fetched in {:.1} s", started.elapsed().as_secs_f64());

    let started = Instant::now();
    let again = worker.submit_detached(&home, &spec, &[]);
    eprintln!("resubmitted in {:.1} s", started.elapsed().as_secs_f64());
    assert_eq!(again["plan"]["upload_files"].as_u64(), Some(0), "{again}");
    assert_eq!(again["plan"]["upload_bytes"].as_u64(), Some(0), "{again}");
    assert_eq!(again["manifest"]["bytes_sent"].as_u64(), Some(0), "{again}");
    assert!(
        summary["manifest"]["bytes"].as_u64().unwrap() > 4 << 20,
        "the manifest alone is past the old message limit: {summary}"
    );
}
