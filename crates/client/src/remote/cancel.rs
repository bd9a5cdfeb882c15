//! `client cancel JOB`: a queued job is dropped at once, a running one stops at its next step.

use std::process::ExitCode;

use easel_proto::v1 as pb;

use super::connection::WorkerArgs;

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    pub job: String,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

pub fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    super::block_on(async move {
        let job = args.worker.connect().await?.cancel(&args.job).await?;
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
