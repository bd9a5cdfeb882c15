//! A dataset far past what one message can carry: tiny generated PNGs whose long, random names
//! make a manifest larger than the old 4 MiB message limit even gzipped, and more of them than one
//! blob question may ask about (16,384), submit (the manifest travels as a blob, blob queries go
//! in batches), train one epoch on CPU, and fetch; a resubmit of the same data uploads nothing.
//!
//! CI runs the smallest dataset that proves that: 24,000 images. `just large-dataset` runs it
//! with 200,000 (`EASEL_LARGE_DATASET_IMAGES` sets the count).

use std::time::{Duration, Instant};

use easel_e2e::{Worker, noise_dataset_named, state};

/// Letters in each file's name: incompressible, about 165 bytes of gzipped manifest an image.
const NAME_CHARS: usize = 220;

fn images() -> usize {
    std::env::var("EASEL_LARGE_DATASET_IMAGES")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(24_000)
}

#[test]
fn a_dataset_past_one_message_and_one_blob_question_submits_trains_and_fetches() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    let started = Instant::now();
    let per_class = images() / 2;
    let data = noise_dataset_named(tmp.path(), per_class, 2, 5, NAME_CHARS);
    eprintln!(
        "generated {} images in {:.1} s",
        2 * per_class,
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
    let files = 2 * per_class as u64;
    assert!(
        files > easel_proto::protocol::MAX_DIGESTS_PER_QUERY as u64,
        "more images than one blob question may ask about"
    );
    assert_eq!(summary["plan"]["files"].as_u64(), Some(files), "{summary}");
    assert_eq!(
        summary["plan"]["upload_files"].as_u64(),
        Some(files),
        "{summary}"
    );
    let job = summary["job_id"].as_str().unwrap().to_owned();
    let done = worker.wait_until_finished(&home, &job, Duration::from_secs(900));
    assert_eq!(state(&done), "succeeded", "{done}\n{}", worker.log_text());
    assert_eq!(done["dataset_images"].as_u64(), Some(files), "{done}");
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
