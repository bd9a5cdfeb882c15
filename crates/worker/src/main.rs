//! `worker`: the GPU-machine side of Easel.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use easel_spec::executor::ExecutorKind;
use easel_spec::worker::{WorkerConfig, WorkerOverrides};
use easel_worker::training::slurm::{SlurmCommands, SlurmExecutor};

/// Easel worker: receives datasets and specs over gRPC, trains on this machine's devices, and
/// writes the artifacts to object storage.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
struct Args {
    /// worker.toml (every key has a default; EASEL_* variables and these flags override it).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 0.0.0.0:50051 (port 0 picks a free one).
    #[arg(long)]
    listen: Option<String>,
    /// Where jobs, dataset blobs, the decoded-dataset cache and the token live.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Artifact store URL: file:///dir, s3://bucket/prefix, gs://…, az://…
    #[arg(long)]
    store: Option<String>,
    /// Without a command the worker serves.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Trains one job for the serving worker, which starts it (request on stdin, events on
    /// stdout; or, in a Slurm job, both in the job's folder named by --files).
    #[command(name = easel_worker::training::CHILD_COMMAND, hide = true)]
    TrainJob {
        #[arg(long)]
        files: Option<std::path::PathBuf>,
    },
    /// Named access tokens for the people and machines sharing this worker (in the data dir's
    /// tokens.json, hashed; a running worker follows changes within a second).
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Makes a token for NAME and prints it (only this once): jobs submitted with it are NAME's,
    /// and only NAME and admin tokens see them.
    Add {
        name: String,
        /// Sees and controls every job, like the worker's own token.
        #[arg(long)]
        admin: bool,
    },
    /// Lists the named tokens (never the tokens themselves).
    List,
    /// Revokes NAME's token: refused at once, its open streams end.
    Revoke { name: String },
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
    let outcome = match args.command {
        Some(Command::Token { ref action }) => manage_tokens(&args, action),
        Some(Command::TrainJob { files: None }) => {
            return easel_worker::training::serve_as_child();
        }
        Some(Command::TrainJob {
            files: Some(ref dir),
        }) => {
            return easel_worker::training::slurm::serve_from_files(dir);
        }
        None => serve(args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn load_config(args: &Args) -> anyhow::Result<WorkerConfig> {
    let overrides = WorkerOverrides {
        listen: args.listen.clone(),
        data_dir: args.data_dir.clone(),
        store: args.store.clone(),
    };
    Ok(WorkerConfig::load(
        args.config.as_deref(),
        &|name| std::env::var(name).ok(),
        &overrides,
    )?)
}

fn manage_tokens(args: &Args, action: &TokenAction) -> anyhow::Result<()> {
    use easel_worker::access::named_tokens as tokens;
    let config = load_config(args)?;
    let path = tokens::tokens_path(&config.data_dir);
    match action {
        TokenAction::Add { name, admin } => {
            let token = tokens::add_token(&path, name, *admin)?;
            eprintln!(
                "worker: token for `{name}`{} added to {}; it is shown only now. \
                 Give it to the client as EASEL_TOKEN or --token:",
                if *admin { " (admin)" } else { "" },
                path.display()
            );
            println!("{token}");
        }
        TokenAction::List => {
            let listed = tokens::read_tokens(&path)?;
            println!("{:<24} {:<6} {:<21} revoked", "name", "admin", "created");
            println!(
                "{:<24} {:<6} {:<21} -",
                tokens::ADMIN_NAME,
                "yes",
                "(<data-dir>/token)"
            );
            for token in listed {
                println!(
                    "{:<24} {:<6} {:<21} {}",
                    token.name,
                    if token.admin { "yes" } else { "no" },
                    token.created_at,
                    token.revoked_at.as_deref().unwrap_or("-")
                );
            }
        }
        TokenAction::Revoke { name } => {
            let revoked = tokens::revoke_token(&path, name)?;
            eprintln!(
                "worker: token `{name}` revoked at {}; a running worker refuses it within a second and ends its streams",
                revoked.revoked_at.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}

fn serve(args: Args) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let runtime = tokio::runtime::Runtime::new().context("failed to start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        // Tests and scripts read the real address (port 0 picks one) from this line.
        eprintln!("worker: listening on {}", listener.local_addr()?);
        let (first_tx, first_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(signals(first_tx));
        // Each job trains in a child process running this binary, so a crash ends the job only.
        let executable =
            std::env::current_exe().context("failed to find the worker's own executable")?;
        // What the worker keeps from its training processes (a process parsing uploaded bytes).
        let hidden = easel_worker::training::sandbox::hidden_paths(&config, args.config.as_deref());
        let training = match config.executor.kind {
            ExecutorKind::Local => easel_worker::Training::ChildProcess { executable, hidden },
            ExecutorKind::Slurm => {
                let commands = SlurmCommands::new(config.executor.slurm.clone());
                let executor = SlurmExecutor {
                    executable,
                    commands,
                    hidden,
                };
                easel_worker::Training::Slurm(std::sync::Arc::new(executor))
            }
        };
        easel_worker::run_with_training(listener, config, training, async move {
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
