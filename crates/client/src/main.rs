//! `client`: the laptop side of Easel (the library `easel_client` does the work).

use clap::Parser;
use easel_client::{cli, version};

fn main() -> std::process::ExitCode {
    if version::print_if_asked() {
        return std::process::ExitCode::SUCCESS;
    }
    let cli = cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EASEL_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command.run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
