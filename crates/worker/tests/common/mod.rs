//! What the in-process worker tests share: a worker serving from a folder on 127.0.0.1:0, its
//! clients, and small uploads and submits.

#![allow(dead_code)] // each test target uses its own part

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use easel_proto::protocol::{Credentials, chunk_checksum};
use easel_proto::v1 as pb;
use easel_proto::v1::worker_client::WorkerClient;
use easel_spec::worker::WorkerConfig;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A client presenting the worker's credentials (or none).
pub type Client = WorkerClient<InterceptedService<Channel, Credentials>>;

/// How long a wait may last before the test fails as hung: far past what anything these tests
/// wait for takes on a loaded machine, so only a broken build ever reaches it. No test asserts
/// how long something took.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

/// Between two looks of a wait that polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What `waiting` (a wait until something has happened) gives; panics naming `what` once
/// [`HANG_GUARD`] has passed first.
pub async fn with_hang_guard<T>(what: &str, waiting: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, waiting)
        .await
        .unwrap_or_else(|_| panic!("still waiting after {HANG_GUARD:?}: {what}"))
}

/// The token the worker writes into `path` at its start, once the file is complete.
pub async fn written_token(path: &Path) -> String {
    with_hang_guard("the worker writes its token", async {
        loop {
            if let Ok(token) = std::fs::read_to_string(path)
                && token.ends_with('\n')
            {
                return token.trim().to_owned();
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
}

/// A worker serving plaintext on loopback from `dir`, until the returned sender is dropped.
pub struct InProcess {
    pub address: String,
    pub token: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    pub async fn start(dir: &Path) -> InProcess {
        Self::start_configured(dir, |_| {}).await
    }

    /// Like `start`, with the config changed first (quotas, a data folder elsewhere).
    pub async fn start_configured(
        dir: &Path,
        configure: impl FnOnce(&mut WorkerConfig),
    ) -> InProcess {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let mut config = WorkerConfig {
            data_dir: dir.join("data"),
            devices: vec!["cpu".into()],
            ..WorkerConfig::default()
        };
        config.tls.enabled = false;
        config.store.url = format!("file://{}", dir.join("artifacts").display());
        configure(&mut config);
        let token_path = config.data_dir.join("token");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(easel_worker::run(listener, config, async move {
            let _ = stopped.await;
        }));
        let token = written_token(&token_path).await;
        InProcess {
            address,
            token,
            stop: Some(stop),
            served: Some(served),
        }
    }

    pub async fn client(&self, token: Option<&str>) -> Client {
        let channel = tonic::transport::Endpoint::from_shared(self.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        WorkerClient::with_interceptor(channel, Credentials::new(token).unwrap())
    }

    pub async fn authorized(&self) -> Client {
        self.client(Some(&self.token.clone())).await
    }

    /// Stops the worker the way a signal does and waits until it has.
    pub async fn stop(mut self) {
        drop(self.stop.take());
        let served = self.served.take().unwrap();
        with_hang_guard("the worker stops", served)
            .await
            .unwrap()
            .unwrap();
    }
}

pub fn chunk(content: &[u8], offset: usize, length: usize) -> pb::BlobChunk {
    let data = content[offset..offset + length].to_vec();
    pb::BlobChunk {
        digest: easel_digest::digest_bytes(content),
        total_size: content.len() as u64,
        offset: offset as u64,
        crc32c: chunk_checksum(&data),
        data,
    }
}

/// Each chunk in a message of its own, as a client sends the pieces of a large blob.
pub fn one_per_message(
    chunks: Vec<pb::BlobChunk>,
) -> impl tokio_stream::Stream<Item = pb::BlobChunks> {
    tokio_stream::iter(chunks.into_iter().map(|chunk| pb::BlobChunks {
        chunks: vec![chunk],
    }))
}

pub async fn missing(client: &mut Client, digest: &str) -> Option<u64> {
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

/// Uploads `per_class` small PNGs in each of two classes and their manifest; returns the
/// manifest's digest.
pub async fn upload_dataset(client: &mut Client, per_class: u8) -> String {
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
    let manifest = format!(
        r#"{{"classes":["c0","c1"],"entries":[{}]}}"#,
        entries.join(",")
    );
    chunks.push(chunk(manifest.as_bytes(), 0, manifest.len()));
    // Small files travel side by side in one message, as the client packs them.
    client
        .upload_blobs(tokio_stream::iter(vec![pb::BlobChunks { chunks }]))
        .await
        .unwrap();
    easel_digest::digest_bytes(manifest.as_bytes())
}

pub async fn submit(client: &mut Client, manifest: &str, epochs: u32) -> pb::Job {
    let spec = format!(
        "name = \"cancel-me\"\n[data]\npath = \"/laptop/data\"\nimage_size = 32\n\
         [model]\narchitecture = \"small_cnn\"\n[train]\nepochs = {epochs}\nbatch_size = 4\n"
    );
    submit_spec(client, manifest, spec).await
}

/// Submits `spec` (TOML) on the uploaded `manifest`; the queued job.
pub async fn submit_spec(client: &mut Client, manifest: &str, spec: String) -> pb::Job {
    client
        .submit(pb::SubmitRequest {
            spec_toml: spec,
            manifest_digest: manifest.to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap()
}

pub async fn job(client: &mut Client, id: &str) -> pb::Job {
    client
        .get_job(pb::GetJobRequest {
            job_id: id.to_owned(),
        })
        .await
        .unwrap()
        .into_inner()
}

pub async fn job_state(client: &mut Client, id: &str) -> pb::JobState {
    pb::JobState::try_from(job(client, id).await.state).unwrap()
}

/// The job once it has ended (succeeded, failed or cancelled).
pub async fn finished_job(client: &mut Client, id: &str) -> pb::Job {
    with_hang_guard(&format!("job {id} ends"), async {
        loop {
            let job = job(client, id).await;
            if job.state().is_terminal() {
                return job;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await
}
