//! Command-line surface. Each verb's arguments live with the module that carries it out;
//! this file only routes.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Easel: prototype an image classifier on the laptop, train it for real on a GPU worker.
#[derive(Debug, Parser)]
#[command(name = "client", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a spec and its dataset, then run a tiny proof-of-concept training on CPU.
    #[cfg(feature = "engine")]
    Validate(crate::local::validate::ValidateArgs),
    /// Run the whole training on this machine, writing the same artifacts a worker would.
    #[cfg(feature = "engine")]
    Train(crate::local::train::TrainArgs),
    /// Measure trained weights on a folder-per-class dataset.
    #[cfg(feature = "engine")]
    Evaluate(crate::local::evaluate::EvaluateArgs),
    /// Classify images with trained weights.
    #[cfg(feature = "engine")]
    Predict(crate::local::predict::PredictArgs),
    /// Write trained weights as a model other runtimes load (ONNX).
    #[cfg(feature = "engine")]
    Export(crate::local::export::ExportArgs),
    /// Upload the dataset and spec to a worker and follow the job.
    Submit(crate::remote::submit::SubmitArgs),
    /// Follow a job's live events (re-attaches where it left off).
    Watch(crate::remote::watch::WatchArgs),
    /// Show one job.
    Status(crate::remote::status::StatusArgs),
    /// List jobs on a worker, or found in an object store.
    List(crate::remote::list::ListArgs),
    /// Cancel a queued or running job.
    Cancel(crate::remote::cancel::CancelArgs),
    /// Remove a finished job from the worker, freeing its disk (artifacts stay unless asked).
    Rm(crate::remote::remove::RemoveArgs),
    /// Download a job's weights, metrics and report.
    Fetch(crate::remote::fetch::FetchArgs),
    /// Show a run's (or a sweep's) report page: its path, or the page itself with --open.
    Report(crate::report::ReportArgs),
    /// Install and start a worker on a machine reachable by SSH, and save its profile.
    Up(crate::fleet::up::UpArgs),
    /// Stop a worker that `client up` started.
    Down(crate::fleet::down::DownArgs),
    /// List the saved worker profiles and whether each answers.
    Workers(crate::fleet::workers::WorkersArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            #[cfg(feature = "engine")]
            Command::Validate(args) => crate::local::validate::run(args),
            #[cfg(feature = "engine")]
            Command::Train(args) => crate::local::train::run(args),
            #[cfg(feature = "engine")]
            Command::Evaluate(args) => crate::local::evaluate::run(args),
            #[cfg(feature = "engine")]
            Command::Predict(args) => crate::local::predict::run(args),
            #[cfg(feature = "engine")]
            Command::Export(args) => crate::local::export::run(args),
            Command::Submit(args) if is_sweep_file(&args.spec) => {
                crate::remote::sweep::submit::run(args)
            }
            Command::Submit(args) => crate::remote::submit::run(args),
            Command::Watch(args) => crate::remote::watch::run(args),
            Command::Status(args) => crate::remote::status::run(args),
            Command::List(args) => crate::remote::list::run(args),
            Command::Cancel(args) => crate::remote::cancel::run(args),
            Command::Rm(args) => crate::remote::remove::run(args),
            Command::Fetch(args) if crate::remote::sweep::is_sweep_id(&args.job) => {
                crate::remote::sweep::fetch::run(args)
            }
            Command::Fetch(args) => crate::remote::fetch::run(args),
            Command::Report(args) => crate::report::run(args),
            Command::Up(args) => crate::fleet::up::run(args),
            Command::Down(args) => crate::fleet::down::run(args),
            Command::Workers(args) => crate::fleet::workers::run(args),
        }
    }
}

/// A spec with a `[sweep]` table: submitted as one sweep of trials. An unreadable file is no
/// sweep (submit then says what is wrong with it).
fn is_sweep_file(path: &std::path::Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|text| easel_spec::sweep::is_sweep(&text))
}
