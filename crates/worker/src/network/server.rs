//! The gRPC server: the worker service behind its token check, on connections the worker
//! admits (caps, deadlines), with TLS when configured and HTTP/2 settings for long fat links.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use easel_proto::transport::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};
use easel_proto::v1 as pb;
use easel_spec::worker::WorkerConfig;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::health_server::HealthServer;

use super::connections;
use super::grpc::WorkerService;
use super::tls::TlsIdentity;

/// Concurrent streams one connection may hold: a client's upload streams (64 at most), its
/// follow and fetch streams, with room to spare.
const MAX_STREAMS_PER_CONNECTION: u32 = 128;

/// A TLS handshake not finished by then is dropped with its connection, so connections that
/// never speak cannot hold the worker's connection slots (`limits.first_request_timeout_seconds`
/// closes them sooner when it is shorter).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server, ready to be spawned: it serves until `stop` resolves.
pub fn serve<Health, Stop>(
    listener: TcpListener,
    config: &WorkerConfig,
    tls: Option<&TlsIdentity>,
    service: WorkerService,
    health_service: HealthServer<Health>,
    stop: Stop,
) -> anyhow::Result<impl Future<Output = Result<(), tonic::transport::Error>> + use<Health, Stop>>
where
    Health: tonic_health::pb::health_server::Health,
    Stop: Future<Output = ()> + Send + 'static,
{
    let guard = service.guard.clone();
    // A message carries at most max_chunk_bytes of blob data plus its chunks' framing.
    let message_limit =
        config.upload.max_chunk_bytes as usize + easel_proto::protocol::MESSAGE_OVERHEAD_BYTES;
    let worker = pb::worker_server::WorkerServer::new(service)
        .max_decoding_message_size(message_limit)
        .max_encoding_message_size(message_limit.max(4 << 20));
    let worker = tonic::service::interceptor::InterceptedService::new(
        worker,
        move |request: tonic::Request<()>| {
            let connection = request
                .extensions()
                .get::<connections::ConnectionInfo>()
                .cloned();
            let request = guard.check(request)?;
            // A valid token: the connection is a client's, and no connection deadline applies
            // to it any more.
            if let Some(connection) = connection {
                connection.note_authenticated();
            }
            Ok(request)
        },
    );
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder
            .tls_config(
                tonic::transport::ServerTlsConfig::new()
                    .identity(tls.identity.clone())
                    .timeout(TLS_HANDSHAKE_TIMEOUT),
            )
            .context("failed to set up TLS")?;
    }
    Ok(builder
        // Every request, health checks included, counts as its connection's first.
        .layer(tonic::service::InterceptorLayer::new(
            connections::note_request,
        ))
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        // A peer that stops answering pings is dropped with its streams.
        .http2_keepalive_timeout(Some(Duration::from_secs(20)))
        // Streams beyond this on one connection wait for one to end (health Watch streams need
        // no token, so without it one connection could open them without end).
        .max_concurrent_streams(Some(MAX_STREAMS_PER_CONNECTION))
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .add_service(health_service)
        .add_service(worker)
        .serve_with_incoming_shutdown(admitted(listener, config), stop))
}

/// The listener's connections, capped and given deadlines.
fn admitted(
    listener: TcpListener,
    config: &WorkerConfig,
) -> impl tokio_stream::Stream<Item = std::io::Result<connections::CountedConnection>> + use<> {
    let counter = connections::ConnectionCounter::new(connections::ConnectionLimits {
        total: config.limits.max_connections as usize,
        per_address: config.limits.max_connections_per_address as usize,
        first_request: Duration::from_secs(config.limits.first_request_timeout_seconds),
        authentication: Duration::from_secs(config.limits.authentication_timeout_seconds),
    });
    connections::admitted(
        TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            // The kernel drops a peer gone without closing (a machine switched off).
            .with_keepalive(Some(Duration::from_secs(60))),
        counter,
    )
}
