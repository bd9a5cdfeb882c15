//! Dataset shipping against the real worker: resumable chunked uploads, corrupted chunks
//! refused without leaving anything half-written, and a re-submit that uploads nothing.

use std::path::PathBuf;

use easel_e2e::{Worker, noise_dataset, write_spec};
use easel_proto::protocol::Credentials;
use easel_proto::v1 as pb;
use easel_proto::v1::worker_client::WorkerClient;
use tonic::Code;

const CHUNK: usize = 16 * 1024;

fn chunk(content: &[u8], offset: usize) -> pb::BlobChunk {
    let end = (offset + CHUNK).min(content.len());
    let data = content[offset..end].to_vec();
    pb::BlobChunk {
        digest: blake3::hash(content).to_hex().to_string(),
        total_size: content.len() as u64,
        offset: offset as u64,
        crc32c: easel_proto::protocol::chunk_checksum(&data),
        data,
    }
}

type Client = WorkerClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Credentials>,
>;

async fn connect(worker: &Worker) -> Client {
    let channel = tonic::transport::Endpoint::from_shared(worker.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    WorkerClient::with_interceptor(channel, Credentials::new(Some(&worker.token)).unwrap())
}

async fn upload(
    client: &mut Client,
    chunks: Vec<pb::BlobChunk>,
) -> Result<pb::UploadBlobsResponse, tonic::Status> {
    // Each chunk in a message of its own, as a client sends the pieces of a large blob.
    let messages = chunks.into_iter().map(|chunk| pb::BlobChunks {
        chunks: vec![chunk],
    });
    client
        .upload_blobs(tokio_stream::iter(messages))
        .await
        .map(|r| r.into_inner())
}

async fn committed(client: &mut Client, digest: &str) -> Option<u64> {
    let missing = client
        .missing_blobs(pb::MissingBlobsRequest {
            digests: vec![digest.to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
        .missing;
    missing.first().map(|m| m.committed_offset)
}

fn blob_file(worker: &Worker, digest: &str) -> PathBuf {
    worker
        .data_dir
        .join("blobs")
        .join(&digest[..2])
        .join(digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_off_upload_resumes_and_corruption_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let data = noise_dataset(tmp.path(), 3, 200, 7);
    let worker = Worker::start(&tmp.path().join("worker"));
    let mut client = connect(&worker).await;

    // Health needs no token; everything else does.
    let channel = tonic::transport::Endpoint::from_shared(worker.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: "easel.v1.Worker".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    let refused = WorkerClient::new(channel)
        .missing_blobs(pb::MissingBlobsRequest { digests: vec![] })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);

    // The largest image of the dataset, cut off after three chunks.
    let mut files: Vec<PathBuf> = ["a", "b"]
        .iter()
        .flat_map(|c| {
            std::fs::read_dir(data.join(c))
                .unwrap()
                .map(|e| e.unwrap().path())
        })
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    let content = std::fs::read(files.last().unwrap()).unwrap();
    assert!(
        content.len() > 5 * CHUNK,
        "test image too small: {}",
        content.len()
    );
    let digest = blake3::hash(&content).to_hex().to_string();
    let first_three: Vec<_> = (0..3).map(|i| chunk(&content, i * CHUNK)).collect();
    let response = upload(&mut client, first_three).await.unwrap();
    assert_eq!(response.incomplete[0].committed_offset, 3 * CHUNK as u64);
    assert_eq!(response.completed, 0);
    assert_eq!(
        committed(&mut client, &digest).await,
        Some(3 * CHUNK as u64)
    );

    // A corrupted chunk is refused; the committed offset and the partial file stay as they were,
    // and nothing appears in the blob store.
    let mut bad = chunk(&content, 3 * CHUNK);
    bad.data[100] ^= 0x55;
    let status = upload(&mut client, vec![bad]).await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss, "{status:?}");
    assert!(
        status.message().contains("corrupted"),
        "{}",
        status.message()
    );
    assert_eq!(
        committed(&mut client, &digest).await,
        Some(3 * CHUNK as u64)
    );
    let partial = worker.data_dir.join("blobs/partial").join(&digest);
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), 3 * CHUNK as u64);
    assert!(!blob_file(&worker, &digest).exists());

    // A chunk past the committed offset is refused with the offset to resume from.
    let status = upload(&mut client, vec![chunk(&content, 5 * CHUNK)])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        status
            .message()
            .contains(&format!("resume from {}", 3 * CHUNK)),
        "{}",
        status.message()
    );

    // Content that does not match its digest is discarded whole once complete.
    let lie = vec![9u8; CHUNK + 10];
    let mut lying: Vec<pb::BlobChunk> = vec![chunk(&lie, 0), chunk(&lie, CHUNK)];
    let claimed = blake3::hash(b"other content").to_hex().to_string();
    for c in &mut lying {
        c.digest = claimed.clone();
    }
    let status = upload(&mut client, lying).await.unwrap_err();
    assert_eq!(status.code(), Code::DataLoss);
    assert!(!blob_file(&worker, &claimed).exists());
    assert!(
        !worker
            .data_dir
            .join("blobs/partial")
            .join(&claimed)
            .exists()
    );
    assert_eq!(committed(&mut client, &claimed).await, Some(0));

    // The real client resumes the cut-off blob: only the bytes after the committed offset travel.
    let home = tmp.path().join("home");
    let spec = write_spec(tmp.path(), "noise", &data, 1);
    let total: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let chunk_arg = CHUNK.to_string();
    let summary = worker.submit_detached(&home, &spec, &["--chunk-bytes", &chunk_arg]);
    assert_eq!(
        summary["plan"]["resumed_bytes"],
        3 * CHUNK as u64,
        "{summary}"
    );
    assert_eq!(
        summary["upload"]["bytes_sent"],
        total - 3 * CHUNK as u64,
        "{summary}"
    );
    assert_eq!(
        summary["upload"]["bytes_written"],
        total - 3 * CHUNK as u64,
        "{summary}"
    );
    assert_eq!(std::fs::read(blob_file(&worker, &digest)).unwrap(), content);
    assert!(!partial.exists());
    let seconds = summary["upload"]["seconds"].as_f64().unwrap();
    eprintln!(
        "upload: {} bytes in {seconds:.3} s = {:.1} MB/s over loopback (16 KiB chunks)",
        total,
        (total - 3 * CHUNK as u64) as f64 / 1e6 / seconds
    );

    // Submitting the same data again uploads nothing.
    let again = worker.submit_detached(&home, &spec, &[]);
    assert_eq!(again["plan"]["upload_files"], 0, "{again}");
    assert_eq!(again["upload"]["bytes_sent"], 0, "{again}");
    assert_ne!(again["job_id"], summary["job_id"]);

    // The same idempotency key returns the same job.
    let first = worker.submit_detached(&home, &spec, &["--idempotency-key", "k1"]);
    let second = worker.submit_detached(&home, &spec, &["--idempotency-key", "k1"]);
    assert_eq!(first["job_id"], second["job_id"]);
    assert_eq!(first["created"], true);
    assert_eq!(second["created"], false);
}
