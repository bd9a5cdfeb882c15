//! `client fetch SWEEP --out DIR`: every trial's results (`DIR/trial-NN-<job>/`), `sweep.csv`
//! (one row per trial, best first), `sweep.svg` (the metric against each varied value, and
//! every trial's validation curve) and `sweep.html` (the trials side by side, each linked to its
//! own report page). With `--best`, only the best trial's run folder, in `DIR`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use easel_events::EpochMetrics;
use easel_proto::v1 as pb;
use easel_spec::outputs;

use crate::remote::connection::Connection;
use crate::remote::fetch::{FetchArgs, Fetched, fetch_from_worker};

pub const CSV_NAME: &str = "sweep.csv";
pub const PLOT_NAME: &str = "sweep.svg";
pub const PAGE_NAME: &str = "sweep.html";

/// What a sweep fetch wrote: each trial's folder and files.
pub struct SweepFetched {
    pub sweep: pb::Sweep,
    pub trials: Vec<FetchedTrial>,
}

pub struct FetchedTrial {
    pub job: String,
    pub dir: std::path::PathBuf,
    pub files: Vec<(String, Fetched)>,
}

/// `client fetch SWEEP --out DIR [--best]`.
pub fn run(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(&args.job));
    crate::remote::block_on(async move {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("failed to create {}", out.display()))?;
        fetch_sweep(&args, &out).await
    })
}

/// A sweep's trials (or, with `--best`, its best trial) from the worker that ran them.
async fn fetch_sweep(args: &FetchArgs, out: &Path) -> anyhow::Result<ExitCode> {
    if args.store.is_some() {
        bail!(
            "a sweep is known to its worker only; fetch its trials by job id with --store \
             (their ids are in `client status {}`)",
            args.job
        );
    }
    let mut connection = args.worker.connect().await?;
    if args.best {
        let (job, files) = fetch_best(&mut connection, &args.job, out, args.all).await?;
        if args.json {
            let names: Vec<&String> = files.iter().map(|(name, _)| name).collect();
            println!(
                "{}",
                serde_json::json!({"sweep": args.job, "best": job, "out": out, "files": names})
            );
        } else {
            println!("best trial of sweep {}: job {job}", args.job);
            println!("weights: {}", out.join(outputs::BEST_WEIGHTS).display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let fetched = fetch_all(&mut connection, &args.job, out, args.all).await?;
    if args.json {
        let trials: Vec<serde_json::Value> = fetched
            .trials
            .iter()
            .map(|t| serde_json::json!({"job": t.job, "dir": t.dir, "files": t.files.len()}))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "sweep": args.job,
                "best": fetched.sweep.best_job,
                "out": out,
                "csv": out.join(CSV_NAME),
                "plot": out.join(PLOT_NAME),
                "page": out.join(PAGE_NAME),
                "trials": trials,
            })
        );
    } else {
        for trial in &fetched.trials {
            println!(
                "{}: {} file(s) in {}",
                trial.job,
                trial.files.len(),
                trial.dir.display()
            );
        }
        println!("table: {}", out.join(CSV_NAME).display());
        println!("plot:  {}", out.join(PLOT_NAME).display());
        println!("page:  {}", out.join(PAGE_NAME).display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The best trial's run folder into `out`.
pub async fn fetch_best(
    connection: &mut Connection,
    sweep_id: &str,
    out: &Path,
    all: bool,
) -> anyhow::Result<(String, Vec<(String, Fetched)>)> {
    let sweep = connection.sweep(sweep_id).await?;
    if sweep.best_job.is_empty() {
        bail!(
            "no trial of sweep {sweep_id} has a value of {} yet: nothing is best",
            sweep.metric
        );
    }
    let files = fetch_from_worker(connection, &sweep.best_job, out, all).await?;
    Ok((sweep.best_job, files))
}

/// Every trial's results, the table and the plot, into `out`.
pub async fn fetch_all(
    connection: &mut Connection,
    sweep_id: &str,
    out: &Path,
    all: bool,
) -> anyhow::Result<SweepFetched> {
    let sweep = connection.sweep(sweep_id).await?;
    let mut trials = Vec::new();
    let mut shown = Vec::new();
    for trial in &sweep.trials {
        let Some(job) = &trial.job else { continue };
        let folder = format!("trial-{:02}-{}", trial.number, job.id);
        let dir = out.join(&folder);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("failed to create {}", dir.display()))?;
        let files = fetch_from_worker(connection, &job.id, &dir, all).await?;
        shown.push(page_trial(&sweep, trial, job, &dir, &folder));
        trials.push(FetchedTrial {
            job: job.id.clone(),
            dir,
            files,
        });
    }
    write(&out.join(CSV_NAME), &csv(&sweep))?;
    write(
        &out.join(PLOT_NAME),
        &easel_report::plots::sweep_svg(&sweep.metric, &shown),
    )?;
    let page = easel_report::SweepPage {
        id: &sweep.id,
        name: &sweep.name,
        metric: &sweep.metric,
        trials: &shown,
    };
    write(&out.join(PAGE_NAME), &page.render())?;
    Ok(SweepFetched { sweep, trials })
}

/// A fetched trial as the sweep's page and plot show it; `folder` is its run folder's name
/// beside the page.
fn page_trial(
    sweep: &pb::Sweep,
    trial: &pb::Trial,
    job: &pb::Job,
    dir: &Path,
    folder: &str,
) -> easel_report::Trial {
    easel_report::Trial {
        number: trial.number,
        params: trial
            .params
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect(),
        metric: trial.metric,
        best: job.id == sweep.best_job,
        state: job.state().name().to_owned(),
        epochs: job.epochs_done,
        seconds: super::trial_seconds(job),
        history: read_metrics(&dir.join(outputs::METRICS)),
        report: dir
            .join(outputs::REPORT_PAGE)
            .is_file()
            .then(|| format!("{folder}/{}", outputs::REPORT_PAGE)),
    }
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("failed to write {}", path.display()))
}

/// A trial's epochs as its `metrics.jsonl` holds them (none when it trained none).
fn read_metrics(path: &Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// One row per trial, best first: its number, job, each varied value, state, epochs, metric,
/// seconds, device and why it ended as it did.
pub fn csv(sweep: &pb::Sweep) -> String {
    let keys: Vec<&str> = sweep
        .trials
        .first()
        .map(|trial| trial.params.iter().map(|p| p.key.as_str()).collect())
        .unwrap_or_default();
    let mut header = vec!["trial", "job"];
    header.extend(&keys);
    header.extend([
        "state",
        "epochs",
        sweep.metric.as_str(),
        "seconds",
        "device",
        "best",
        "reason",
    ]);
    let mut text = row(header.iter().map(|h| (*h).to_owned()));
    for trial in &sweep.trials {
        let job = trial.job.clone().unwrap_or_default();
        let mut fields = vec![trial.number.to_string(), job.id.clone()];
        for key in &keys {
            let value = trial.params.iter().find(|p| p.key == *key);
            fields.push(
                value
                    .map(|p| p.value.trim_matches('"').to_owned())
                    .unwrap_or_default(),
            );
        }
        fields.extend([
            job.state().name().to_owned(),
            job.epochs_done.to_string(),
            trial.metric.map(|v| v.to_string()).unwrap_or_default(),
            super::trial_seconds(&job)
                .map(|s| format!("{s:.1}"))
                .unwrap_or_default(),
            job.device.clone(),
            (job.id == sweep.best_job).to_string(),
            job.reason.clone(),
        ]);
        text.push_str(&row(fields.into_iter()));
    }
    text
}

fn row(fields: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> = fields
        .map(|field| {
            if field.contains([',', '"', '\n']) {
                format!("\"{}\"", field.replace('"', "\"\""))
            } else {
                field
            }
        })
        .collect();
    format!("{}\n", quoted.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_a_column_per_varied_key_and_quotes_what_needs_it() {
        let sweep = pb::Sweep {
            metric: "val_loss".into(),
            best_job: "a".into(),
            trials: vec![pb::Trial {
                number: 1,
                params: vec![pb::SweepParam {
                    key: "model.architecture".into(),
                    value: "\"vgg16\"".into(),
                }],
                job: Some(pb::Job {
                    id: "a".into(),
                    state: pb::JobState::Cancelled as i32,
                    reason: "stopped early, behind the median".into(),
                    ..pb::Job::default()
                }),
                metric: Some(0.25),
            }],
            ..pb::Sweep::default()
        };
        assert_eq!(
            csv(&sweep),
            "trial,job,model.architecture,state,epochs,val_loss,seconds,device,best,reason\n\
             1,a,vgg16,cancelled,0,0.25,,,true,\"stopped early, behind the median\"\n"
        );
    }
}
