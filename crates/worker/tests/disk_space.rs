//! The worker's disk under control, in process: it says what it can take, refuses an upload
//! past its quota before writing a byte, refuses a disk that fills mid-upload without keeping
//! half a blob (and keeps serving), and `RemoveJob` frees exactly what only that job used.

mod common;

use std::path::{Path, PathBuf};

use common::{Client, InProcess, chunk, missing, one_per_message, submit, upload_dataset};
use easel_proto::protocol::MAX_DIGESTS_PER_QUERY;
use easel_proto::v1 as pb;
use tonic::Code;

async fn available(client: &mut Client) -> u64 {
    client
        .missing_blobs(pb::MissingBlobsRequest { digests: vec![] })
        .await
        .unwrap()
        .into_inner()
        .available_bytes
}

fn content(length: usize, seed: u32) -> Vec<u8> {
    (0..length as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(seed) >> 13) as u8)
        .collect()
}

fn partial_upload(data_dir: &Path, digest: &str) -> PathBuf {
    data_dir.join("blobs/partial").join(digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_says_what_it_can_take_and_refuses_an_oversized_query() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.upload.max_stored_bytes = 50_000;
    })
    .await;
    let mut client = worker.authorized().await;
    assert_eq!(available(&mut client).await, 50_000);

    let too_many = vec!["0".repeat(64); MAX_DIGESTS_PER_QUERY + 1];
    let refused = client
        .missing_blobs(pb::MissingBlobsRequest { digests: too_many })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("in batches"),
        "{}",
        refused.message()
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_past_the_quota_is_refused_before_a_byte_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.upload.max_stored_bytes = 20_000;
    })
    .await;
    let mut client = worker.authorized().await;
    let fits = content(15_000, 1);
    client
        .upload_blobs(one_per_message(vec![chunk(&fits, 0, fits.len())]))
        .await
        .unwrap();
    assert_eq!(available(&mut client).await, 5_000);

    let too_big = content(10_000, 2);
    let digest = easel_digest::digest_bytes(&too_big);
    let refused = client
        .upload_blobs(one_per_message(vec![chunk(&too_big, 0, 4_000)]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    let message = refused.message();
    assert!(
        message.contains("needs 10.0 kB but the worker can take 5000 bytes")
            && message.contains("upload.max_stored_bytes")
            && message.contains("client rm"),
        "{message}"
    );
    assert_eq!(missing(&mut client, &digest).await, Some(0));
    assert!(!partial_upload(&dir.path().join("data"), &digest).exists());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_chunk_claiming_a_larger_blob_is_checked_against_the_quota_again() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.upload.max_stored_bytes = 20_000;
    })
    .await;
    let mut client = worker.authorized().await;
    let blob = content(10_000, 4);
    let digest = easel_digest::digest_bytes(&blob);
    client
        .upload_blobs(one_per_message(vec![chunk(&blob, 0, 4_000)]))
        .await
        .unwrap();
    assert_eq!(available(&mut client).await, 10_000);

    // The first chunk held 10 kB; the next says the blob is 1 MB, fifty times the quota.
    let mut grown = chunk(&blob, 4_000, 4_000);
    grown.total_size = 1_000_000;
    let refused = client
        .upload_blobs(one_per_message(vec![grown]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused
            .message()
            .contains("needs 1.0 MB but the worker can take 20.0 kB")
            && refused.message().contains("upload.max_stored_bytes"),
        "{}",
        refused.message()
    );
    assert_eq!(missing(&mut client, &digest).await, Some(4_000));

    // The honest rest of it is taken.
    client
        .upload_blobs(one_per_message(vec![chunk(&blob, 4_000, 6_000)]))
        .await
        .unwrap();
    assert_eq!(missing(&mut client, &digest).await, None);
    assert_eq!(available(&mut client).await, 10_000);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_uploads_still_count_against_the_quota_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let quota = |config: &mut easel_spec::worker::WorkerConfig| {
        config.upload.max_stored_bytes = 20_000;
    };
    let worker = InProcess::start_configured(dir.path(), quota).await;
    let mut client = worker.authorized().await;
    let first = content(15_000, 5);
    let first_digest = easel_digest::digest_bytes(&first);
    client
        .upload_blobs(one_per_message(vec![chunk(&first, 0, 8_000)]))
        .await
        .unwrap();
    assert_eq!(available(&mut client).await, 5_000);
    worker.stop().await;

    // Restarted on the same data: the 8 kB written still count.
    let worker = InProcess::start_configured(dir.path(), quota).await;
    let mut client = worker.authorized().await;
    assert_eq!(available(&mut client).await, 12_000);
    let second = content(10_000, 6);
    client
        .upload_blobs(one_per_message(vec![chunk(&second, 0, second.len())]))
        .await
        .unwrap();
    assert_eq!(available(&mut client).await, 2_000);

    // Resuming the first needs its whole size again, which no longer fits.
    let refused = client
        .upload_blobs(one_per_message(vec![chunk(&first, 8_000, 7_000)]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused
            .message()
            .contains("needs 15.0 kB but the worker can take 10.0 kB"),
        "{}",
        refused.message()
    );
    assert_eq!(missing(&mut client, &first_digest).await, Some(8_000));
    assert!(blob_bytes(&dir.path().join("data")) <= 20_000 + 100);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_a_job_finds_damaged_stops_counting_against_the_quota() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let quota = 1_000_000;
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.upload.max_stored_bytes = quota;
    })
    .await;
    let mut client = worker.authorized().await;
    let manifest = upload_dataset(&mut client, 4).await;
    let stored = blob_bytes(&data_dir);
    assert_eq!(available(&mut client).await, quota - stored);

    // One image torn on disk (same length, one byte changed), as a power loss leaves it.
    let blobs = data_dir.join("blobs");
    let manifest_text =
        std::fs::read_to_string(easel_dataset::blob_path(&blobs, &manifest).unwrap()).unwrap();
    let image = &easel_dataset::Manifest::from_json(&manifest_text)
        .unwrap()
        .entries[0]
        .digest;
    let image_path = easel_dataset::blob_path(&blobs, image).unwrap();
    let mut torn = std::fs::read(&image_path).unwrap();
    let torn_len = torn.len() as u64;
    torn[torn_len as usize / 2] ^= 0xff;
    std::fs::write(&image_path, &torn).unwrap();

    // The training run reads it, finds it damaged and moves it aside.
    let job = submit(&mut client, &manifest, 1).await;
    wait_until_finished(&mut client, &job.id).await;
    assert!(!image_path.exists(), "the damaged blob was not moved aside");
    assert_eq!(available(&mut client).await, quota - (stored - torn_len));
    let quarantine = blobs.join(easel_dataset::QUARANTINE_DIR);
    assert_eq!(std::fs::read_dir(&quarantine).unwrap().count(), 0);
    assert_eq!(blob_bytes(&data_dir), stored - torn_len);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_chunk_claiming_a_larger_blob_cannot_take_the_disk_below_its_floor() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(dir.path().join("disk"), 8 << 20);
    let data_dir = disk.0.join("data");
    let floor = 4 << 20;
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.data_dir = data_dir.clone();
        config.upload.min_free_bytes = floor;
    })
    .await;
    let mut client = worker.authorized().await;
    let megabyte = 1 << 20;
    let blob = content(2 * megabyte, 7);
    let digest = easel_digest::digest_bytes(&blob);
    client
        .upload_blobs(one_per_message(vec![chunk(&blob, 0, megabyte)]))
        .await
        .unwrap();

    // Held 2 MiB of the 4 MiB above the floor; the next chunk says 64 MiB.
    let mut grown = chunk(&blob, megabyte, megabyte);
    grown.total_size = 64 << 20;
    let refused = client
        .upload_blobs(one_per_message(vec![grown]))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("needs 67.1 MB")
            && refused.message().contains("upload.min_free_bytes"),
        "{}",
        refused.message()
    );
    assert_eq!(missing(&mut client, &digest).await, Some(megabyte as u64));
    worker.stop().await;
    drop(disk);
}

/// A small tmpfs of its own, unmounted when dropped.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: PathBuf, bytes: u64) -> SmallDisk {
        std::fs::create_dir_all(&at).unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&at)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "could not mount a {bytes}-byte tmpfs at {} (this test needs root to make a small \
             disk to fill)",
            at.display()
        );
        SmallDisk(at)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes `path` until the disk under it is full.
fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let block = vec![0xabu8; 64 << 10];
    while file
        .write_all(&block)
        .and_then(|()| file.sync_data())
        .is_ok()
    {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_mid_upload_is_refused_and_the_worker_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let disk = SmallDisk::mount(dir.path().join("disk"), 8 << 20);
    let data_dir = disk.0.join("data");
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.data_dir = data_dir.clone();
        config.upload.min_free_bytes = 0;
    })
    .await;
    let mut client = worker.authorized().await;
    let blob = content(4 << 20, 3);
    let digest = easel_digest::digest_bytes(&blob);
    let megabyte = 1 << 20;
    client
        .upload_blobs(one_per_message(vec![chunk(&blob, 0, megabyte)]))
        .await
        .unwrap();
    assert_eq!(missing(&mut client, &digest).await, Some(megabyte as u64));

    // Something else on the machine takes the rest of the disk.
    let filler = disk.0.join("filler");
    fill(&filler);
    let refused = client
        .upload_blobs(one_per_message(vec![chunk(&blob, megabyte, megabyte)]))
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Code::ResourceExhausted,
        "{}",
        refused.message()
    );
    assert!(
        refused.message().contains("disk filled up") && refused.message().contains(&digest),
        "{}",
        refused.message()
    );
    assert_eq!(
        missing(&mut client, &digest).await,
        Some(0),
        "nothing of a half-written blob is kept"
    );
    assert!(!partial_upload(&data_dir, &digest).exists());

    // Space back: the same worker takes the whole blob.
    std::fs::remove_file(&filler).unwrap();
    let chunks: Vec<_> = (0..4)
        .map(|i| chunk(&blob, i * megabyte, megabyte))
        .collect();
    let done = client
        .upload_blobs(one_per_message(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.completed, 1);
    assert_eq!(missing(&mut client, &digest).await, None);
    worker.stop().await;
    drop(disk);
}

async fn wait_until_finished(client: &mut Client, id: &str) -> pb::JobState {
    common::finished_job(client, id).await.state()
}

fn blob_bytes(data_dir: &Path) -> u64 {
    easel_digest::folder_bytes(&data_dir.join("blobs"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_job_frees_what_only_it_used() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let worker = InProcess::start(dir.path()).await;
    let mut client = worker.authorized().await;
    let manifest = upload_dataset(&mut client, 4).await;
    let first = submit(&mut client, &manifest, 1).await;
    let second = submit(&mut client, &manifest, 1).await;

    // Still running or queued: refused.
    let refused = client
        .remove_job(pb::RemoveJobRequest {
            job_id: second.id.clone(),
            artifacts: false,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("cancel it first"),
        "{}",
        refused.message()
    );

    assert_eq!(
        wait_until_finished(&mut client, &first.id).await,
        pb::JobState::Succeeded
    );
    assert_eq!(
        wait_until_finished(&mut client, &second.id).await,
        pb::JobState::Succeeded
    );
    let stored = blob_bytes(&data_dir);
    assert!(stored > 0);

    // The other job still names every blob: only the folder goes.
    let shared = client
        .remove_job(pb::RemoveJobRequest {
            job_id: first.id.clone(),
            artifacts: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(shared.blobs_removed, 0);
    assert!(shared.job_folder_bytes > 0);
    assert!(!data_dir.join("jobs").join(&first.id).exists());
    assert_eq!(blob_bytes(&data_dir), stored);
    let gone = client
        .get_job(pb::GetJobRequest {
            job_id: first.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // The last job using them: 8 images and the manifest go, as reported; artifacts only when asked.
    let last = client
        .remove_job(pb::RemoveJobRequest {
            job_id: second.id.clone(),
            artifacts: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(last.blobs_removed, 9);
    assert_eq!(last.blob_bytes, stored);
    assert_eq!(blob_bytes(&data_dir), 0);
    assert_eq!(last.freed_bytes, last.job_folder_bytes + last.blob_bytes);
    assert!(last.artifacts_removed > 0);
    assert!(
        !dir.path()
            .join("artifacts/jobs")
            .join(&second.id)
            .join("report.json")
            .exists()
    );
    assert!(
        dir.path()
            .join("artifacts/jobs")
            .join(&first.id)
            .join("report.json")
            .exists()
    );
    worker.stop().await;
}
