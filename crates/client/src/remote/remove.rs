//! `client rm JOB`: takes a finished job off the worker and frees its disk (the job's folder and
//! the dataset files no other job uses). Its artifacts stay in the object store, where `client
//! fetch JOB --store URL` still finds them, unless `--artifacts` asks to delete them too.

use std::process::ExitCode;

use easel_proto::v1 as pb;

use super::connection::{WorkerArgs, explain};
use crate::format::bytes as human_bytes;

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    pub job: String,
    /// Also delete the job's artifacts (weights, metrics, report) from the object store.
    #[arg(long)]
    pub artifacts: bool,
    /// Machine-readable output (one JSON object).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub worker: WorkerArgs,
}

pub fn run(args: RemoveArgs) -> anyhow::Result<ExitCode> {
    super::block_on(async move {
        let mut remote = args.worker.connect().await?;
        let removed = remote
            .client
            .remove_job(pb::RemoveJobRequest {
                job_id: args.job.clone(),
                artifacts: args.artifacts,
            })
            .await
            .map_err(explain)?
            .into_inner();
        if args.json {
            let summary = serde_json::json!({
                "job_id": args.job,
                "freed_bytes": removed.freed_bytes,
                "job_folder_bytes": removed.job_folder_bytes,
                "blobs_removed": removed.blobs_removed,
                "blob_bytes": removed.blob_bytes,
                "artifacts_removed": removed.artifacts_removed,
            });
            println!("{summary}");
            return Ok(ExitCode::SUCCESS);
        }
        println!(
            "removed job {}: freed {} on the worker (job folder {}, {} dataset file(s) no other \
             job uses {})",
            args.job,
            human_bytes(removed.freed_bytes),
            human_bytes(removed.job_folder_bytes),
            removed.blobs_removed,
            human_bytes(removed.blob_bytes)
        );
        if args.artifacts {
            println!(
                "deleted its {} artifact(s) from {}",
                removed.artifacts_removed, remote.hello.store_url
            );
        } else {
            println!(
                "its artifacts stay in {url} (`client fetch {} --store {url}` still reads them; \
                 --artifacts deletes them)",
                args.job,
                url = remote.hello.store_url
            );
        }
        Ok(ExitCode::SUCCESS)
    })
}
