//! Where the worker is and how to prove who we are: `--worker`/`EASEL_WORKER`/client.toml and
//! `--token`/`EASEL_TOKEN`/client.toml; plus turning gRPC statuses into messages a person can act on.

use anyhow::{Context, anyhow, bail};
use easel_proto::protocol::{Credentials, PROTOCOL_VERSION, incompatible};
use easel_proto::status::ErrorKind;
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
}

pub type Client = WorkerClient<InterceptedService<Channel, Credentials>>;

pub struct Remote {
    pub client: Client,
    pub address: String,
    pub hello: pb::HelloResponse,
}

impl WorkerArgs {
    /// Connects and says hello (which checks the token and the protocol version).
    pub async fn connect(&self) -> anyhow::Result<Remote> {
        let target = crate::config::read_config()?.target(
            self.worker.as_deref(),
            self.token.clone(),
            self.fingerprint.clone(),
        )?;
        let address = target.address;
        let fingerprint = target.fingerprint;
        let address = if address.contains("://") {
            address
        } else if fingerprint.is_some() {
            format!("https://{address}")
        } else {
            format!("http://{address}")
        };
        let credentials = Credentials::new(target.token.as_deref())?;
        let mut endpoint = Endpoint::from_shared(address.clone())
            .with_context(|| format!("`{address}` is not a worker address"))?
            .connect_timeout(std::time::Duration::from_secs(10))
            // What the worker may send before we acknowledge it (fetches); the protocol's 64 KiB
            // default would hold a download over a long link to a few MB/s.
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(32 << 20);
        let tls = address.starts_with("https://");
        if tls {
            let Some(fingerprint) = &fingerprint else {
                bail!(
                    "{address} is a TLS address but no certificate fingerprint is pinned: pass --fingerprint sha256:… (the worker prints it at start and keeps it in <data-dir>/tls/fingerprint), or set EASEL_FINGERPRINT"
                );
            };
            let pin = super::pinning::parse_fingerprint(fingerprint).map_err(|e| anyhow!(e))?;
            endpoint = endpoint
                .tls_config_with_verifier(
                    tonic::transport::ClientTlsConfig::new(),
                    super::pinning::PinnedCertificate::new(pin),
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
        Ok(Remote {
            client,
            address,
            hello,
        })
    }
}

impl Remote {
    /// The worker's current view of one job.
    pub async fn get_job(&mut self, job_id: &str) -> anyhow::Result<pb::Job> {
        Ok(self
            .client
            .get_job(pb::GetJobRequest {
                job_id: job_id.to_owned(),
            })
            .await
            .map_err(explain)?
            .into_inner())
    }
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
