//! `client list`: jobs on a worker, or (with --store) jobs found in an object store.

use std::process::ExitCode;

use easel_proto::v1 as pb;

use super::connection::WorkerArgs;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// List the jobs in this object store instead of asking a worker (s3://bucket/prefix,
    /// file:///dir, ...; credentials from the usual environment variables).
    #[arg(long)]
    pub store: Option<String>,
    /// Machine-readable output (JSON on stdout).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ListArgs) -> anyhow::Result<ExitCode> {
    super::block_on(async move {
        if let Some(url) = &args.store {
            return list_store(url, args.json).await;
        }
        let mut connection = args.worker.connect().await?;
        let jobs = connection.jobs().await?;
        if args.json {
            let jobs: Vec<serde_json::Value> = jobs.iter().map(super::json::job).collect();
            println!("{}", serde_json::Value::Array(jobs));
        } else {
            print_jobs(&jobs, &connection.address);
            // A worker from before sweeps says it takes none (and has none to list).
            if connection.hello.max_trials_per_sweep > 0 {
                print_sweeps(&connection.sweeps().await?);
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// One line a job: id, state, epochs, best validation accuracy, name (and why it is in its state).
fn print_jobs(jobs: &[pb::Job], worker: &str) {
    if jobs.is_empty() {
        println!("no jobs on {worker}");
    }
    for job in jobs {
        let accuracy = job
            .best_validation_accuracy
            .map(|a| format!("{:.2}%", a * 100.0))
            .unwrap_or_default();
        println!(
            "{:<22} {:<10} {:>3}/{:<3} {:>7}  {}{}",
            job.id,
            job.state().name(),
            job.epochs_done,
            job.epochs_total,
            accuracy,
            job.name,
            if job.reason.is_empty() {
                String::new()
            } else {
                format!(" ({})", job.reason)
            }
        );
    }
}

/// One line a sweep: id, trials done of all, the best so far, name.
fn print_sweeps(sweeps: &[pb::Sweep]) {
    for sweep in sweeps {
        let done = super::sweep::done_count(sweep);
        let best = super::sweep::best_trial(sweep)
            .and_then(|t| t.metric)
            .map(|v| {
                format!(
                    "best {} {}",
                    sweep.metric,
                    super::sweep::board::metric_text(&sweep.metric, v)
                )
            })
            .unwrap_or_default();
        println!(
            "{:<27} {:>3}/{:<3} trials done  {:<24} {}",
            sweep.id,
            done,
            sweep.trials.len(),
            best,
            sweep.name
        );
    }
}

async fn list_store(url: &str, json: bool) -> anyhow::Result<ExitCode> {
    let store = easel_store::ArtifactStore::open(url, &easel_store::StoreOptions::from_env())?;
    let jobs = store.list_jobs().await?;
    if json {
        println!("{}", serde_json::to_string(&jobs)?);
        return Ok(ExitCode::SUCCESS);
    }
    if jobs.is_empty() {
        println!("no jobs in {url}");
    }
    for job in &jobs {
        println!(
            "{:<22} {:<10} {:>4} artifact(s) {:>10.1} MB",
            job.job_id,
            if job.complete { "complete" } else { "partial" },
            job.artifacts,
            job.total_bytes as f64 / 1e6
        );
    }
    Ok(ExitCode::SUCCESS)
}
