//! `worker`: the GPU-machine side of Easel.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use easel_spec::worker::{WorkerConfig, WorkerOverrides};

/// Easel worker: receives datasets and specs over gRPC, trains on this machine's devices, and
/// writes the artifacts to object storage.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
struct Args {
    /// worker.toml (every key has a default; EASEL_* variables and these flags override it).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 0.0.0.0:50051 (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// Where jobs, dataset blobs, the decoded-dataset cache and the token live.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Artifact store URL: file:///dir, s3://bucket/prefix, gs://…, az://…
    #[arg(long)]
    store: Option<String>,
}

fn main() -> ExitCode {
    // The long version asks libtorch whether CUDA works, which only `--version` should pay for.
    let mut flags = std::env::args().skip(1);
    if matches!(flags.next().as_deref(), Some("--version" | "-V")) && flags.next().is_none() {
        println!(
            "worker {} ({})",
            env!("CARGO_PKG_VERSION"),
            easel_engine::runtime_info()
        );
        return ExitCode::SUCCESS;
    }
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EASEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match serve(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: Args) -> anyhow::Result<()> {
    let overrides = WorkerOverrides {
        listen: args.listen,
        data_dir: args.data_dir,
        store: args.store,
    };
    let config = WorkerConfig::load(
        args.config.as_deref(),
        &|name| std::env::var(name).ok(),
        &overrides,
    )?;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        // Tests and scripts read the real address (port 0 picks one) from this line.
        eprintln!("worker: listening on {}", listener.local_addr()?);
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(signals(first_tx));
        easel_worker::run(listener, config, async move {
            let _ = first_rx.await;
        })
        .await
    })
}

/// The first SIGTERM/Ctrl-C starts a graceful stop; a second one exits at once.
async fn signals(first: tokio::sync::oneshot::Sender<()>) {
    wait_for_signal().await;
    eprintln!(
        "worker: stopping; running jobs stop at their next step and keep their checkpoint (signal again to exit now)"
    );
    let _ = first.send(());
    wait_for_signal().await;
    eprintln!("worker: exiting now");
    std::process::exit(130);
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
