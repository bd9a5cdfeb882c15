//! Where the worker is and how to prove who we are: `--worker`/`EASEL_WORKER`/client.toml and
//! `--token`/`EASEL_TOKEN`/client.toml; the connection, whose methods (`calls`) are the worker's
//! RPCs; and turning gRPC statuses into messages a person can act on.

mod calls;

use anyhow::{Context, anyhow, bail};
use easel_proto::protocol::{Credentials, PROTOCOL_VERSION, incompatible};
use easel_proto::status::ErrorKind;
use easel_proto::transport::{CONNECTION_WINDOW_BYTES, STREAM_WINDOW_BYTES};
use easel_proto::v1 as pb;
use easel_proto::v1::worker_client::WorkerClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Options every worker verb shares.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    /// Worker profile name (from `client up`) or address, e.g. https://gpu-box:50051 (else
    /// EASEL_WORKER, else `worker` in ~/.config/easel/client.toml).
    #[arg(long, env = "EASEL_WORKER", global = true)]
    pub worker: Option<String>,
    /// Access token printed by the worker at its first start (else EASEL_TOKEN, else `token` in
    /// the client config file).
    #[arg(long, env = "EASEL_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// SHA-256 fingerprint of the worker's TLS certificate, as the worker prints it
    /// (`sha256:…`; else EASEL_FINGERPRINT, else `fingerprint` in the client config file).
    /// With a fingerprint a bare HOST:PORT address means https.
    #[arg(long, env = "EASEL_FINGERPRINT", global = true)]
    pub fingerprint: Option<String>,
    /// Send the token to a worker beyond loopback over plaintext (an http:// address, or
    /// HOST:PORT without a fingerprint), where anyone on the way can read and reuse it (else
    /// EASEL_ALLOW_PLAINTEXT=1, else `allow_plaintext = true` in the client config file).
    /// Without it such a connection is refused before anything is sent.
    #[arg(
        long,
        env = "EASEL_ALLOW_PLAINTEXT",
        global = true,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub allow_plaintext: bool,
}

type Client = WorkerClient<InterceptedService<Channel, Credentials>>;

/// A worker that has said hello. Every RPC is a method (in `calls`) that answers with the
/// worker's value or an explained error; cloning shares the underlying HTTP/2 connection.
#[derive(Clone)]
pub struct Connection {
    client: Client,
    pub address: String,
    pub hello: pb::HelloResponse,
    /// The SSH forward the connection goes through, when its profile has one.
    _tunnel: Option<std::sync::Arc<crate::fleet::tunnel::Tunnel>>,
}

impl WorkerArgs {
    /// Connects and says hello (which checks the token and the protocol version).
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let target = crate::config::read_config()?.target(
            self.worker.as_deref(),
            self.token.clone(),
            self.fingerprint.clone(),
        )?;
        let fingerprint = target.fingerprint;
        let (target_address, tunnel) = match target.tunnel {
            Some((destination, ssh_command)) => {
                through_tunnel(target.address, destination, ssh_command).await?
            }
            None => (target.address, None),
        };
        let address = endpoint_address(target_address, fingerprint.is_some());
        let credentials = Credentials::new(target.token.as_deref())?;
        let endpoint = Endpoint::from_shared(address.clone())
            .with_context(|| format!("`{address}` is not a worker address"))?;
        // Before any connection: the token goes out in the first request's headers.
        if target.token.is_some()
            && !(self.allow_plaintext || target.allow_plaintext)
            && in_clear_beyond_loopback(endpoint.uri())
        {
            bail!(
                "refusing to send the access token in clear text to {address}: it is not a loopback address, so anyone on the way could read the token and use it. Pin the worker's TLS certificate: an https:// (or bare HOST:PORT) address with --fingerprint sha256:… (the worker prints it at start and keeps it in <data-dir>/tls/fingerprint; or EASEL_FINGERPRINT). On a network you trust, --allow-plaintext (EASEL_ALLOW_PLAINTEXT=1, or `allow_plaintext = true` in {}) sends it anyway",
                crate::config::config_path_text()
            );
        }
        let mut endpoint = endpoint
            .connect_timeout(std::time::Duration::from_secs(10))
            .initial_stream_window_size(STREAM_WINDOW_BYTES)
            .initial_connection_window_size(CONNECTION_WINDOW_BYTES);
        let tls = address.starts_with("https://");
        if tls {
            let Some(fingerprint) = &fingerprint else {
                bail!(
                    "{address} is a TLS address but no certificate fingerprint is pinned: pass --fingerprint sha256:… (the worker prints it at start and keeps it in <data-dir>/tls/fingerprint), or set EASEL_FINGERPRINT"
                );
            };
            let pin =
                easel_proto::pinning::parse_fingerprint(fingerprint).map_err(|e| anyhow!(e))?;
            endpoint = endpoint
                .tls_config_with_verifier(
                    tonic::transport::ClientTlsConfig::new(),
                    easel_proto::pinning::PinnedCertificate::new(pin),
                )
                .map_err(|e| anyhow!("cannot set up TLS for {address}: {}", chain(&e)))?;
        }
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| anyhow!("cannot reach the worker at {address}: {}", chain(&e)))?;
        let mut client = WorkerClient::with_interceptor(channel, credentials)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let hello = client
            .hello(pb::HelloRequest {
                protocol_version: PROTOCOL_VERSION,
                client_version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .await
            .map_err(|status| {
                // A worker serving TLS answers a plaintext HTTP/2 client with garbage; a token or
                // version refusal is an answer, so it needs no hint.
                let answered = matches!(
                    ErrorKind::of(&status),
                    ErrorKind::Unauthenticated | ErrorKind::FailedPrecondition
                );
                if !tls && !answered {
                    anyhow!(
                        "{}\nthe worker at {address} may be serving TLS (the default): use https://… with --fingerprint sha256:… from <data-dir>/tls/fingerprint on the worker",
                        explain(status)
                    )
                } else {
                    explain(status)
                }
            })?
            .into_inner();
        if hello.protocol_version != PROTOCOL_VERSION {
            bail!(incompatible(
                PROTOCOL_VERSION,
                &format!("the worker at {address}"),
                hello.protocol_version
            ));
        }
        Ok(Connection {
            client,
            address,
            hello,
            _tunnel: tunnel,
        })
    }
}

/// `address` (a worker as the machine at `destination` sees it, e.g. `https://127.0.0.1:50051`)
/// reached through an SSH forward: the same address with this machine's end of the forward.
async fn through_tunnel(
    address: String,
    destination: String,
    ssh_command: Option<String>,
) -> anyhow::Result<(String, Option<std::sync::Arc<crate::fleet::tunnel::Tunnel>>)> {
    let (scheme, remote) = address.split_once("://").unwrap_or(("", address.as_str()));
    let remote = remote.trim_end_matches('/').to_owned();
    let scheme = scheme.to_owned();
    let tunnel = tokio::task::spawn_blocking(move || {
        crate::fleet::tunnel::Tunnel::open(&destination, ssh_command.as_deref(), &remote)
    })
    .await??;
    let local = if scheme.is_empty() {
        tunnel.local.to_string()
    } else {
        format!("{scheme}://{}", tunnel.local)
    };
    Ok((local, Some(std::sync::Arc::new(tunnel))))
}

/// The address to connect to with its scheme: as given, else https:// when a fingerprint is
/// pinned, else http://.
fn endpoint_address(address: String, pinned: bool) -> String {
    if address.contains("://") {
        address
    } else if pinned {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

/// Whether a connection to `uri` carries what it sends in clear text beyond this machine: any
/// scheme but https, to a host that is not loopback.
fn in_clear_beyond_loopback(uri: &tonic::codegen::http::Uri) -> bool {
    uri.scheme_str() != Some("https") && !is_loopback_host(uri.host().unwrap_or_default())
}

/// `localhost` or a loopback IP (127.0.0.0/8, ::1, either as IPv4-mapped IPv6). Other names are
/// not resolved to find out: the connection resolves them again, and its answer could differ;
/// `localhost` is loopback by definition (RFC 6761).
fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// An error and its sources on one line (transport errors hide the cause, e.g. a TLS
/// fingerprint mismatch, in their sources).
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text
}

/// A gRPC status as a message saying what to do.
pub fn explain(status: tonic::Status) -> anyhow::Error {
    match ErrorKind::of(&status) {
        ErrorKind::Unauthenticated => anyhow!(
            "the worker refused the token (wrong or missing): pass --token or set EASEL_TOKEN ({})",
            status.message()
        ),
        ErrorKind::Unavailable => anyhow!("the worker is unavailable: {}", status.message()),
        _ => anyhow!("{}", status.message()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether the token would travel in clear text to `address` as the user gives it.
    fn in_clear(address: &str, pinned: bool) -> bool {
        let endpoint = Endpoint::from_shared(endpoint_address(address.to_owned(), pinned)).unwrap();
        in_clear_beyond_loopback(endpoint.uri())
    }

    #[test]
    fn plaintext_beyond_loopback_is_told_apart_from_tls_and_loopback() {
        for beyond in [
            "http://203.0.113.7:50051",
            "203.0.113.7:50051",
            "gpu-box:50051",
            "http://gpu-box:50051",
            "[2001:db8::1]:50051",
            "http://[2001:db8::1]:50051",
            // Unspecified reaches this machine on Linux, but is no loopback name.
            "http://0.0.0.0:50051",
            "http://[::]:50051",
            // Names that look local are not resolved, and are not loopback.
            "http://localhost.example.com:50051",
            "http://127.0.0.1.nip.io:50051",
        ] {
            assert!(in_clear(beyond, false), "{beyond} was taken for safe");
        }
        for safe in [
            "https://203.0.113.7:50051",
            "https://gpu-box:50051",
            "https://[2001:db8::1]:50051",
            "http://127.0.0.1:50051",
            "127.0.0.2:50051",
            "http://localhost:50051",
            "LOCALHOST:50051",
            "http://[::1]:50051",
            "http://[::ffff:127.0.0.1]:50051",
        ] {
            assert!(!in_clear(safe, false), "{safe} was refused");
        }
        // With a fingerprint a bare HOST:PORT means https; an explicit http:// stays plaintext.
        assert!(!in_clear("gpu-box:50051", true));
        assert!(!in_clear("[2001:db8::1]:50051", true));
        assert!(in_clear("http://gpu-box:50051", true));
    }
}
