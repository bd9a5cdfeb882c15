//! `client rm JOB`: takes a finished job off the worker and frees its disk (the job's folder and
//! the dataset files no other job uses). Its artifacts stay in the object store, where `client
//! fetch JOB --store URL` still finds them, unless `--artifacts` asks to delete them too.

use std::process::ExitCode;

use easel_proto::v1 as pb;

use super::connection::WorkerArgs;
use crate::format::bytes as human_bytes;

#[derive(Debug, clap::Args)]
pub struct RemoveArgs {
    /// A job id, or a sweep id (every trial, and the sweep).
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
        let mut connection = args.worker.connect().await?;
        let removed = if super::sweep::is_sweep_id(&args.job) {
            connection.remove_sweep(&args.job, args.artifacts).await?
        } else {
            connection.remove(&args.job, args.artifacts).await?
        };
        if args.json {
            print_json(&args.job, &removed);
        } else {
            print_text(&args, &removed, &connection.hello.store_url);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_json(job: &str, removed: &pb::RemoveJobResponse) {
    let summary = serde_json::json!({
        "job_id": job,
        "freed_bytes": removed.freed_bytes,
        "job_folder_bytes": removed.job_folder_bytes,
        "blobs_removed": removed.blobs_removed,
        "blob_bytes": removed.blob_bytes,
        "artifacts_removed": removed.artifacts_removed,
    });
    println!("{summary}");
}

/// What was freed on the worker, and where the job's artifacts are now (`store_url`: the
/// worker's object store).
fn print_text(args: &RemoveArgs, removed: &pb::RemoveJobResponse, store_url: &str) {
    println!(
        "removed {} {}: freed {} on the worker (job folder {}, {} dataset file(s) no other \
         job uses {})",
        if super::sweep::is_sweep_id(&args.job) {
            "sweep"
        } else {
            "job"
        },
        args.job,
        human_bytes(removed.freed_bytes),
        human_bytes(removed.job_folder_bytes),
        removed.blobs_removed,
        human_bytes(removed.blob_bytes)
    );
    if args.artifacts {
        println!(
            "deleted its {} artifact(s) from {store_url}",
            removed.artifacts_removed
        );
    } else {
        println!(
            "its artifacts stay in {store_url} (`client fetch {} --store {store_url}` still reads \
             them; --artifacts deletes them)",
            args.job
        );
    }
}
