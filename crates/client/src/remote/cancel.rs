//! `client cancel JOB`: a queued job is dropped at once, a running one stops at its next step.

use std::process::ExitCode;

use easel_proto::v1 as pb;

use super::connection::{WorkerArgs, explain};

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    pub job: String,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

pub fn run(args: CancelArgs) -> anyhow::Result<ExitCode> {
    super::block_on(async move {
        let mut remote = args.worker.connect().await?;
        let job = remote
            .client
            .cancel(pb::CancelRequest {
                job_id: args.job.clone(),
            })
            .await
            .map_err(explain)?
            .into_inner();
        let state = super::json::state_name(job.state);
        match state {
            "running" => println!(
                "job {}: cancel requested; it stops at its next step",
                job.id
            ),
            _ => println!("job {}: {state}", job.id),
        }
        Ok(ExitCode::SUCCESS)
    })
}
