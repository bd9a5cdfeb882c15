//! `client cancel JOB`: a queued job is dropped at once, a running one stops at its next step.

use std::process::ExitCode;

use easel_proto::v1 as pb;

use super::connection::WorkerArgs;

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// A job id, or a sweep id (every trial not yet finished).
    pub job: String,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

pub fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    super::block_on(async move {
        let mut connection = args.worker.connect().await?;
        if super::sweep::is_sweep_id(&args.job) {
            let sweep = connection.cancel_sweep(&args.job).await?;
            let running = sweep
                .trials
                .iter()
                .filter(|t| {
                    t.job
                        .as_ref()
                        .is_some_and(|j| j.state() == pb::JobState::Running)
                })
                .count();
            println!(
                "sweep {}: {} trials; queued ones cancelled, {running} running stop at their next step",
                sweep.id,
                sweep.trials.len()
            );
            return Ok(ExitCode::SUCCESS);
        }
        let job = connection.cancel(&args.job).await?;
        match job.state() {
            pb::JobState::Running => println!(
                "job {}: cancel requested; it stops at its next step",
                job.id
            ),
            state => println!("job {}: {}", job.id, state.name()),
        }
        Ok(ExitCode::SUCCESS)
    })
}
