//! `client watch JOB`: follow a job's events, from where this machine last left off.

use std::process::ExitCode;

use super::connection::WorkerArgs;
use super::follow::{Followed, follow, saved_cursor};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// A job id, or a sweep id (the sweep's leaderboard).
    pub job: String,
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Show events after this sequence number (default: after the last one seen here).
    #[arg(long)]
    pub from: Option<u64>,
    /// One JSON object per event on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: WatchArgs) -> anyhow::Result<ExitCode> {
    super::block_on(async move {
        let mut connection = args.worker.connect().await?;
        if super::sweep::is_sweep_id(&args.job) {
            return watch_sweep(&mut connection, &args).await;
        }
        let from = args.from.unwrap_or_else(|| saved_cursor(&args.job));
        if from > 0 && !args.json {
            eprintln!("re-attaching after event {from} (use --from 0 for the whole history)");
        }
        let followed = follow(&mut connection, &args.job, from, args.json).await?;
        if followed == Followed::Disconnected {
            // Nothing after `from` and the job is over: say how it ended instead of "disconnected".
            let job = connection.job(&args.job).await?;
            if let Some(outcome) = job.state().outcome() {
                if !args.json {
                    println!(
                        "job {} {}{}",
                        job.id,
                        outcome.name(),
                        if job.reason.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", job.reason)
                        }
                    );
                }
                let finished = Followed::Finished {
                    outcome,
                    reason: job.reason,
                };
                return Ok(finished.exit_code(&args.job));
            }
        }
        Ok(followed.exit_code(&args.job))
    })
}

/// A sweep's leaderboard until every trial is over; `--json` prints the sweep once it is.
async fn watch_sweep(
    connection: &mut super::connection::Connection,
    args: &WatchArgs,
) -> anyhow::Result<ExitCode> {
    use super::sweep::board::{FollowedSweep, follow};
    match follow(connection, &args.job, !args.json).await? {
        FollowedSweep::Detached => Ok(ExitCode::SUCCESS),
        FollowedSweep::Finished(sweep) => {
            if args.json {
                println!("{}", super::sweep::json::sweep(&sweep));
            }
            Ok(super::sweep::exit_code(&sweep))
        }
    }
}
