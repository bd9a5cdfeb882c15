//! The worker's gRPC service in this process (`easel_worker::run` on 127.0.0.1:0): the access
//! token, the protocol version, resumable uploads and cancelling, each without a binary or a
//! training run beyond what it needs.

mod common;

use std::time::Duration;

use common::{
    InProcess, POLL_INTERVAL, chunk, job_state, missing, one_per_message, submit, upload_dataset,
    with_hang_guard,
};
use easel_proto::protocol::{PROTOCOL_HEADER, PROTOCOL_VERSION};
use easel_proto::v1 as pb;
use easel_proto::v1::worker_client::WorkerClient;
use tonic::Code;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_resumes_at_its_committed_offset_and_refuses_a_corrupt_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start(dir.path()).await;
    let mut client = worker.authorized().await;
    let content: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let digest = easel_digest::digest_bytes(&content);
    assert_eq!(missing(&mut client, &digest).await, Some(0));

    client
        .upload_blobs(one_per_message(vec![chunk(&content, 0, 4_000)]))
        .await
        .unwrap();
    assert_eq!(missing(&mut client, &digest).await, Some(4_000));

    let mut corrupt = chunk(&content, 4_000, 3_000);
    corrupt.data[0] ^= 0xff;
    let refused = client
        .upload_blobs(one_per_message(vec![corrupt]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::DataLoss, "{}", refused.message());
    assert_eq!(
        missing(&mut client, &digest).await,
        Some(4_000),
        "a corrupt chunk commits nothing"
    );

    let done = client
        .upload_blobs(one_per_message(vec![chunk(&content, 4_000, 6_000)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(done.completed, 1);
    assert!(done.incomplete.is_empty());
    assert_eq!(missing(&mut client, &digest).await, None);
    worker.stop().await;
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

    with_hang_guard("the first job starts", async {
        while job_state(&mut client, &running.id).await != pb::JobState::Running {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    client
        .cancel(pb::CancelRequest {
            job_id: running.id.clone(),
        })
        .await
        .unwrap();
    with_hang_guard("the running job stops", async {
        while job_state(&mut client, &running.id).await != pb::JobState::Cancelled {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    let unknown = client
        .cancel(pb::CancelRequest {
            job_id: "20990101-000000-beef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_goes_quiet_is_closed_keeping_what_it_sent() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.upload.idle_timeout_seconds = 1;
    })
    .await;
    let mut client = worker.authorized().await;
    let content: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    let digest = easel_digest::digest_bytes(&content);
    // The first piece, then silence with the stream left open.
    let (send, receive) = tokio::sync::mpsc::channel(1);
    send.send(pb::BlobChunks {
        chunks: vec![chunk(&content, 0, 8_000)],
    })
    .await
    .unwrap();
    let closed = with_hang_guard(
        "the quiet upload is closed",
        client.upload_blobs(tokio_stream::wrappers::ReceiverStream::new(receive)),
    )
    .await
    .unwrap_err();
    assert_eq!(closed.code(), Code::Unavailable, "{closed:?}");
    assert!(
        closed.message().contains("sent nothing for 1 s"),
        "{}",
        closed.message()
    );
    drop(send);
    // Nothing sent was lost, and the worker goes on serving.
    assert_eq!(missing(&mut client, &digest).await, Some(8_000));
    client
        .upload_blobs(one_per_message(vec![chunk(&content, 8_000, 12_000)]))
        .await
        .unwrap();
    assert_eq!(missing(&mut client, &digest).await, None);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_health_streams_on_one_connection_are_capped() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start(dir.path()).await;
    let channel = tonic::transport::Endpoint::from_shared(worker.address.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let watch = || {
        let mut health = HealthClient::new(channel.clone());
        async move {
            let mut stream = health
                .watch(HealthCheckRequest {
                    service: String::new(),
                })
                .await?
                .into_inner();
            stream.message().await?;
            Ok::<_, tonic::Status>(stream)
        }
    };
    let mut open = Vec::new();
    for _ in 0..128 {
        open.push(watch().await.unwrap());
    }
    // One more waits for a free stream rather than being served... (A wrong answer shows
    // within this window on an idle machine; a loaded one can only hide it, never fail a right
    // one.)
    let extra = tokio::spawn(watch());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!extra.is_finished(), "a 129th stream was served at once");
    // ...and is served once one ends.
    drop(open.pop());
    let served = with_hang_guard("the waiting stream is served", extra).await;
    assert!(served.unwrap().is_ok());
    drop(open);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_are_closed_and_served_again_once_one_ends() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.limits.max_connections = 2;
        // The silent connections below keep their slots for as long as the test needs them,
        // however slow the machine.
        config.limits.first_request_timeout_seconds = 3600;
        config.limits.authentication_timeout_seconds = 3600;
    })
    .await;
    let address = worker.address.trim_start_matches("http://").to_owned();
    // Two connections that never speak take both slots: each is being served (holds a slot)
    // once it hears the worker's HTTP/2 settings, which a served connection is sent first.
    let mut silent = Vec::new();
    for _ in 0..2 {
        let mut connection = tokio::net::TcpStream::connect(&address).await.unwrap();
        let mut settings = [0u8; 9];
        with_hang_guard(
            "a connection under the cap is served",
            tokio::io::AsyncReadExt::read_exact(&mut connection, &mut settings),
        )
        .await
        .expect("a connection under the cap was closed");
        silent.push(connection);
    }
    let token = worker.token.clone();
    let try_hello = || {
        let endpoint = tonic::transport::Endpoint::from_shared(worker.address.clone()).unwrap();
        let token = token.clone();
        async move {
            let channel = endpoint
                .connect()
                .await
                .map_err(|error| error.to_string())?;
            let credentials = easel_proto::protocol::Credentials::new(Some(&token)).unwrap();
            let mut client = WorkerClient::with_interceptor(channel, credentials);
            client
                .hello(hello())
                .await
                .map_err(|status| status.to_string())
        }
    };
    let refused = with_hang_guard("a connection past the cap is answered", try_hello()).await;
    assert!(refused.is_err(), "a third connection was served");
    // Once one ends (the worker sees it close in its own time), the next is served.
    drop(silent.pop());
    with_hang_guard("a connection is served after one ended", async {
        while try_hello().await.is_err() {
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    })
    .await;
    drop(silent);
    worker.stop().await;
}
