//! The worker's gRPC service in this process (`easel_worker::run` on 127.0.0.1:0): the access
//! token, the protocol version, resumable uploads and cancelling, each without a binary or a
//! training run beyond what it needs.

use std::path::Path;
use std::time::Duration;

use easel_proto::protocol::{Credentials, PROTOCOL_HEADER, PROTOCOL_VERSION, chunk_checksum};
use easel_proto::v1 as pb;
use easel_proto::v1::worker_client::WorkerClient;
use easel_spec::worker::WorkerConfig;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

type Client = WorkerClient<InterceptedService<Channel, Credentials>>;

/// A worker serving plaintext on loopback from `dir`, until the returned sender is dropped.
struct InProcess {
    address: String,
    token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    async fn start(dir: &Path) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let mut config = WorkerConfig {
            data_dir: dir.join("data"),
            devices: vec!["cpu".into()],
            ..WorkerConfig::default()
        };
        config.tls.enabled = false;
        config.store.url = format!("file://{}", dir.join("artifacts").display());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(easel_worker::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let token_path = dir.join("data/token");
        let token = loop {
            if let Ok(token) = std::fs::read_to_string(&token_path)
                && !token.trim().is_empty()
            {
                break token.trim().to_owned();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        InProcess {
            address,
            token,
            stop: Some(stop),
            served: Some(served),
        }
    }

    async fn client(&self, token: Option<&str>) -> Client {
        let channel = tonic::transport::Endpoint::from_shared(self.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        WorkerClient::with_interceptor(channel, Credentials::new(token).unwrap())
    }

    async fn authorized(&self) -> Client {
        self.client(Some(&self.token.clone())).await
    }

    /// Stops the worker the way a signal does and waits until it has.
    async fn stop(mut self) {
        drop(self.stop.take());
        let served = self.served.take().unwrap();
        tokio::time::timeout(Duration::from_secs(60), served)
            .await
            .expect("the worker stops within a minute")
            .unwrap()
            .unwrap();
    }
}

fn hello() -> pb::HelloRequest {
    pb::HelloRequest {
        protocol_version: PROTOCOL_VERSION,
        client_version: "test".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_without_the_right_token_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start(dir.path()).await;
    let missing = worker.client(None).await.hello(hello()).await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("missing"),
        "{}",
        missing.message()
    );
    let wrong = worker
        .client(Some("not-the-token"))
        .await
        .list_jobs(pb::ListJobsRequest {})
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    let listed = worker
        .authorized()
        .await
        .list_jobs(pb::ListJobsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.jobs.is_empty());
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_protocol_version_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start(dir.path()).await;
    let mut client = worker.authorized().await;
    let answer = client.hello(hello()).await.unwrap().into_inner();
    assert_eq!(answer.protocol_version, PROTOCOL_VERSION);

    // In the body of Hello...
    let refused = client
        .hello(pb::HelloRequest {
            protocol_version: 99,
            client_version: "future".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("protocol 99") && refused.message().contains("this worker"),
        "{}",
        refused.message()
    );
    // ...and in the header of any call.
    let mut request = tonic::Request::new(pb::ListJobsRequest {});
    request
        .metadata_mut()
        .insert(PROTOCOL_HEADER, "99".parse().unwrap());
    let mut raw = WorkerClient::new(
        tonic::transport::Endpoint::from_shared(worker.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let refused = raw.list_jobs(request).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("protocol 99"),
        "{}",
        refused.message()
    );
    worker.stop().await;
}

fn chunk(content: &[u8], offset: usize, length: usize) -> pb::BlobChunk {
    let data = content[offset..offset + length].to_vec();
    pb::BlobChunk {
        digest: easel_digest::digest_bytes(content),
        total_size: content.len() as u64,
        offset: offset as u64,
        crc32c: chunk_checksum(&data),
        data,
    }
}

async fn missing(client: &mut Client, digest: &str) -> Option<u64> {
    client
        .missing_blobs(pb::MissingBlobsRequest {
            digests: vec![digest.to_owned()],
        })
        .await
        .unwrap()
        .into_inner()
        .missing
        .first()
        .map(|blob| blob.committed_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_at_its_committed_offset_and_refuses_a_corrupt_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start(dir.path()).await;
    let mut client = worker.authorized().await;
    let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = easel_digest::digest_bytes(&content);
    assert_eq!(missing(&mut client, &digest).await, Some(0));

    client
        .upload_blobs(tokio_stream::iter(vec![chunk(&content, 0, 4_000)]))
        .await
        .unwrap();
    assert_eq!(missing(&mut client, &digest).await, Some(4_000));

    let mut corrupt = chunk(&content, 4_000, 3_000);
    corrupt.data[0] ^= 0xff;
    let refused = client
        .upload_blobs(tokio_stream::iter(vec![corrupt]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::DataLoss, "{}", refused.message());
    assert_eq!(
        missing(&mut client, &digest).await,
        Some(4_000),
        "a corrupt chunk commits nothing"
    );

    let done = client
        .upload_blobs(tokio_stream::iter(vec![chunk(&content, 4_000, 6_000)]))
        .await
        .unwrap()
        .into_inner();
    assert!(done.blobs[0].complete);
    assert_eq!(missing(&mut client, &digest).await, None);
    worker.stop().await;
}

/// Uploads `per_class` small PNGs in each of two classes; returns the manifest JSON.
async fn upload_dataset(client: &mut Client, per_class: u8) -> String {
    let mut entries = Vec::new();
    let mut chunks = Vec::new();
    for class in 0..2u8 {
        for i in 0..per_class {
            let shade = class * 120 + i * 7;
            let mut png = Vec::new();
            image::GrayImage::from_fn(32, 32, |x, y| image::Luma([shade ^ (x * y) as u8]))
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            let digest = easel_digest::digest_bytes(&png);
            entries.push(format!(
                r#"{{"path":"c{class}/{i}.png","class":{class},"size":{},"digest":"{digest}"}}"#,
                png.len()
            ));
            chunks.push(chunk(&png, 0, png.len()));
        }
    }
    client
        .upload_blobs(tokio_stream::iter(chunks))
        .await
        .unwrap();
    format!(
        r#"{{"classes":["c0","c1"],"entries":[{}]}}"#,
        entries.join(",")
    )
}

async fn submit(client: &mut Client, manifest: &str, epochs: u32) -> pb::Job {
    let spec = format!(
        "name = \"cancel-me\"\n[data]\npath = \"/laptop/data\"\nimage_size = 32\n\
         [model]\narchitecture = \"small_cnn\"\n[train]\nepochs = {epochs}\nbatch_size = 4\n"
    );
    client
        .submit(pb::SubmitRequest {
            spec_toml: spec,
            manifest_json: manifest.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap()
}

async fn job_state(client: &mut Client, id: &str) -> pb::JobState {
    let job = client
        .get_job(pb::GetJobRequest {
            job_id: id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    pb::JobState::try_from(job.state).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_job_is_cancelled_at_once_and_a_running_one_at_its_next_step() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start(dir.path()).await;
    let mut client = worker.authorized().await;
    let manifest = upload_dataset(&mut client, 6).await;
    // One CPU device: the first job runs, the second waits.
    let running = submit(&mut client, &manifest, 10_000).await;
    let queued = submit(&mut client, &manifest, 1).await;
    assert_eq!(
        job_state(&mut client, &queued.id).await,
        pb::JobState::Queued
    );

    let cancelled = client
        .cancel(pb::CancelRequest {
            job_id: queued.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        pb::JobState::try_from(cancelled.state).unwrap(),
        pb::JobState::Cancelled,
        "a queued job is cancelled by the call itself"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while job_state(&mut client, &running.id).await != pb::JobState::Running {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first job never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client
        .cancel(pb::CancelRequest {
            job_id: running.id.clone(),
        })
        .await
        .unwrap();
    while job_state(&mut client, &running.id).await != pb::JobState::Cancelled {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the running job did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let unknown = client
        .cancel(pb::CancelRequest {
            job_id: "20990101-000000-beef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    worker.stop().await;
}
