//! `client status JOB`.

use std::process::ExitCode;

use easel_proto::v1 as pb;

use super::connection::WorkerArgs;

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// A job id, or a sweep id (every trial, best first).
    pub job: String,
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Machine-readable output (JSON on stdout).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: StatusArgs) -> anyhow::Result<ExitCode> {
    super::block_on(async move {
        let mut connection = args.worker.connect().await?;
        if super::sweep::is_sweep_id(&args.job) {
            let sweep = connection.sweep(&args.job).await?;
            if args.json {
                println!("{}", super::sweep::json::sweep(&sweep));
            } else {
                for line in super::sweep::board::table(&sweep) {
                    println!("{line}");
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        let job = connection.job(&args.job).await?;
        if args.json {
            println!("{}", super::json::job(&job));
        } else {
            print_job(&job);
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn print_job(job: &pb::Job) {
    println!("job       {} ({})", job.id, job.name);
    println!("state     {}", job.state().name());
    if !job.reason.is_empty() {
        println!("reason    {}", job.reason);
    }
    println!("epochs    {}/{}", job.epochs_done, job.epochs_total);
    if let Some(best) = job.best_validation_accuracy {
        println!("best val  {:.2}%", best * 100.0);
    }
    if let Some(test) = job.test_accuracy {
        println!("test      {:.2}%", test * 100.0);
    }
    if !job.sweep_id.is_empty() {
        println!("sweep     {}", job.sweep_id);
    }
    if !job.slurm_job_id.is_empty() {
        println!("slurm     job {}", job.slurm_job_id);
    }
    if !job.device.is_empty() {
        println!("device    {}", job.device);
    }
    println!(
        "dataset   {} images, {:.1} MB",
        job.dataset_images,
        job.dataset_bytes as f64 / 1e6
    );
    println!("created   {} by {}", job.created_at, job.owner);
    if !job.finished_at.is_empty() {
        println!("finished  {}", job.finished_at);
    }
    println!("artifacts {}", job.store_url);
}
