//! Peers that hold connections without being clients: TLS connections that never send a
//! request, and connections that only watch health (which needs no token), are closed at the
//! `limits` deadlines, so they cannot keep a client from its address out; a connection that
//! presented a valid token is kept. Real TLS and gRPC over 127.0.0.1.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use common::{Client, HANG_GUARD, InProcess};
use easel_proto::pinning::{PinnedCertificate, parse_fingerprint};
use easel_proto::protocol::{Credentials, PROTOCOL_VERSION};
use easel_proto::v1 as pb;
use easel_proto::v1::worker_client::WorkerClient;
use rustls_pki_types::ServerName;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Trusts exactly the worker's certificate, by the fingerprint it stored, as a client does.
fn pinned_worker(data_dir: &Path) -> Arc<PinnedCertificate> {
    let fingerprint = std::fs::read_to_string(data_dir.join("tls/fingerprint")).unwrap();
    PinnedCertificate::new(parse_fingerprint(&fingerprint).unwrap())
}

/// A TLS worker whose connections must send a request, and one with the token, within 2 s (the
/// clients here send theirs at once), and at most `per_address` of them from one address.
async fn tls_worker(
    dir: &Path,
    per_address: u32,
) -> (InProcess, SocketAddr, Arc<PinnedCertificate>) {
    let worker = InProcess::start_configured(dir, |config| {
        config.tls.enabled = true;
        config.limits.max_connections_per_address = per_address;
        config.limits.first_request_timeout_seconds = 2;
        config.limits.authentication_timeout_seconds = 2;
    })
    .await;
    let socket: SocketAddr = worker
        .address
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let pinned = pinned_worker(&dir.join("data"));
    (worker, socket, pinned)
}

/// Opens a TLS connection that completes its handshake (when the worker lets it) and then sends
/// nothing; resolves with how it ended once the worker has closed it.
fn idle_tls_connection(
    socket: SocketAddr,
    pinned: Arc<PinnedCertificate>,
) -> tokio::sync::oneshot::Receiver<String> {
    let (ended, end) = tokio::sync::oneshot::channel();
    // A plain thread: a blocked read must not hold the test's runtime when the worker never
    // closes the connection (the failure this file looks for).
    std::thread::spawn(move || {
        let _ = ended.send(hold_until_closed(socket, pinned));
    });
    end
}

fn hold_until_closed(socket: SocketAddr, pinned: Arc<PinnedCertificate>) -> String {
    let config = rustls::ClientConfig::builder_with_provider(pinned.provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(pinned)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut tcp = match std::net::TcpStream::connect(socket) {
        Ok(tcp) => tcp,
        Err(error) => return format!("not connected: {error}"),
    };
    while tls.is_handshaking() {
        if let Err(error) = tls.complete_io(&mut tcp) {
            return format!("closed during the TLS handshake: {error}");
        }
    }
    // Handshake done; not a byte of HTTP/2. Whatever the worker sends (session tickets) is
    // read until it closes the connection.
    let mut buffer = [0u8; 4096];
    loop {
        match tcp.read(&mut buffer) {
            Ok(0) => return "closed after the TLS handshake".into(),
            Ok(_) => continue,
            Err(error) => return format!("closed after the TLS handshake: {error}"),
        }
    }
}

async fn tls_channel(
    socket: SocketAddr,
    pinned: Arc<PinnedCertificate>,
) -> Result<Channel, String> {
    Endpoint::from_shared(format!("https://{socket}"))
        .unwrap()
        .tls_config_with_verifier(ClientTlsConfig::new(), pinned)
        .unwrap()
        .connect()
        .await
        .map_err(|error| format!("{error:?}"))
}

fn with_token(channel: Channel, token: &str) -> Client {
    WorkerClient::with_interceptor(channel, Credentials::new(Some(token)).unwrap())
}

fn hello() -> pb::HelloRequest {
    pb::HelloRequest {
        protocol_version: PROTOCOL_VERSION,
        client_version: "test".into(),
    }
}

/// A health Watch on `channel` (no token), once it has given the current status.
async fn watch_health(
    channel: &Channel,
) -> tonic::codec::Streaming<tonic_health::pb::HealthCheckResponse> {
    let mut stream = HealthClient::new(channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    stream.message().await.unwrap().unwrap();
    stream
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tls_connections_past_the_per_address_cap_are_closed_and_a_client_is_then_served() {
    let dir = tempfile::tempdir().unwrap();
    let (worker, socket, pinned) = tls_worker(dir.path(), 2).await;
    // More connections from this address than it may hold, each silent after its handshake.
    let idle: Vec<_> = (0..3)
        .map(|_| idle_tls_connection(socket, pinned.clone()))
        .collect();
    for end in idle {
        let how = tokio::time::timeout(HANG_GUARD, end)
            .await
            .expect("an idle TLS connection kept its slot: the worker never closed it")
            .unwrap();
        assert!(how.starts_with("closed"), "{how}");
    }
    // Their slots are back: a client from the same address is served.
    let channel = tls_channel(socket, pinned.clone()).await.unwrap();
    let answer = with_token(channel.clone(), &worker.token)
        .hello(hello())
        .await
        .expect("a client was refused after the idle connections were closed")
        .into_inner();
    assert_eq!(answer.protocol_version, PROTOCOL_VERSION);

    // Having presented its token, the client's connection outlives the deadlines that close
    // idle ones opened after it (the second gives a closing of the client's connection, due
    // before the first's, time to show).
    let mut kept = watch_health(&channel).await;
    for _ in 0..2 {
        let later = idle_tls_connection(socket, pinned.clone());
        tokio::select! {
            how = later => assert!(how.unwrap().starts_with("closed")),
            ended = kept.message() => panic!("the client's connection was closed: {ended:?}"),
            () = tokio::time::sleep(HANG_GUARD) => panic!("an idle TLS connection was never closed"),
        }
    }
    drop((kept, channel));
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_only_watch_health_are_closed_and_a_client_with_a_token_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let worker = InProcess::start_configured(dir.path(), |config| {
        config.limits.first_request_timeout_seconds = 2;
        config.limits.authentication_timeout_seconds = 2;
    })
    .await;
    let connect = || async {
        Endpoint::from_shared(worker.address.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    // A client: its token once, then a watch that stays open.
    let client = connect().await;
    with_token(client.clone(), &worker.token)
        .hello(hello())
        .await
        .unwrap();
    let mut kept = watch_health(&client).await;
    // Peers without a token that keep a health watch open are closed, one after another (the
    // second gives a closing of the client's connection, due before the first's, time to show).
    for _ in 0..2 {
        let stranger = connect().await;
        let mut watch = watch_health(&stranger).await;
        tokio::select! {
            ended = watch.message() => {
                assert!(!matches!(ended, Ok(Some(_))), "the watch went on: {ended:?}");
            }
            ended = kept.message() => panic!("the client's connection was closed: {ended:?}"),
            () = tokio::time::sleep(HANG_GUARD) => {
                panic!("a connection that only watched health was never closed")
            }
        }
    }
    drop((kept, client));
    worker.stop().await;
}
