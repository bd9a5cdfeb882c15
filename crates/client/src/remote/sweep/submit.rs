//! `client submit sweep.toml`: every trial expanded and checked here, the dataset scanned and
//! uploaded once, the proof of concept run once per distinct model, then one `SubmitSweep`
//! queues all the trials and the leaderboard follows them.

use std::process::ExitCode;

use anyhow::{Context, bail};
use easel_proto::v1 as pb;
use easel_spec::ExperimentSpec;
use easel_spec::sweep::Sweep;

use super::board::{FollowedSweep, follow};
use crate::remote::dataset::{self, LoadedSpec};
use crate::remote::submit::{Payload, SubmitArgs, deliver, describe_worker, fresh_key};
use crate::remote::upload;

pub fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    if args.resume_from.is_some() {
        bail!("--resume-from continues one job; a sweep's trials resume on their own worker");
    }
    // The worker's own limit is checked once connected, before anything is uploaded.
    let sweep =
        Sweep::load(&args.spec, usize::MAX).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    let first = one_dataset(&sweep)?;
    let report = dataset::scan_here(&args.spec, first, false)?;
    if let Some(report) = &report
        && !args.no_poc
    {
        for spec in distinct_models(&sweep) {
            dataset::try_on_cpu(spec, report)?;
        }
    }
    let text = std::fs::read_to_string(&args.spec)
        .with_context(|| format!("failed to read {}", args.spec.display()))?;
    let loaded = LoadedSpec {
        text,
        spec: first.clone(),
    };
    let (manifest, source) = dataset::manifest_and_source(report.as_ref());
    let payload = Payload {
        manifest,
        source,
        shipped: dataset::ship_pretrained(&loaded)?,
        manifest_blob: upload::ManifestBlob::new(manifest),
    };
    crate::remote::block_on(async move {
        let mut connection = args.worker.connect().await?;
        eprintln!("{}", describe_worker(&connection));
        let limit = connection.hello.max_trials_per_sweep as usize;
        if limit == 0 {
            bail!(
                "worker {} (version {}) takes no sweeps; upgrade it, or submit the trials one by \
                 one. Nothing was uploaded",
                connection.address,
                connection.hello.worker_version
            );
        }
        if sweep.trials.len() > limit {
            bail!(
                "{}: {} trials is more than the {limit} this worker takes in one sweep \
                 (limits.max_trials_per_sweep); nothing was uploaded",
                args.spec.display(),
                sweep.trials.len()
            );
        }
        let delivery = deliver(&mut connection, &payload, &args).await?;
        let request = pb::SubmitSweepRequest {
            spec_toml: payload.shipped.spec_text.clone(),
            manifest_digest: payload.manifest_blob.digest.clone(),
            idempotency_key: args
                .idempotency_key
                .clone()
                .unwrap_or_else(|| fresh_key(&loaded.text)),
        };
        let queued = connection.submit_sweep(request).await?;
        if args.json {
            let mut summary = super::json::sweep(&queued);
            summary["created"] = queued.created.into();
            summary["worker"] = connection.address.clone().into();
            summary["plan"] = serde_json::to_value(&delivery.plan)?;
            summary["upload"] = serde_json::to_value(&delivery.uploaded)?;
            println!("{summary}");
        } else if queued.created {
            println!("sweep {} queued: {} trials", queued.id, queued.trials.len());
        } else {
            println!("sweep {} (already submitted)", queued.id);
        }
        if args.detach {
            if !args.json {
                println!("follow it with: client watch {}", queued.id);
            }
            return Ok(ExitCode::SUCCESS);
        }
        match follow(&mut connection, &queued.id, !args.json).await? {
            FollowedSweep::Detached => Ok(ExitCode::SUCCESS),
            FollowedSweep::Finished(sweep) => {
                eprintln!(
                    "fetch the best trial with: client fetch {} --best --out {}-best",
                    sweep.id, sweep.id
                );
                Ok(super::exit_code(&sweep))
            }
        }
    })
}

/// The dataset every trial reads (one upload serves them all): the first trial's spec. A
/// sweep that varies where the data or the pretrained weights come from is refused.
fn one_dataset(sweep: &Sweep) -> anyhow::Result<&ExperimentSpec> {
    let first = &sweep
        .trials
        .first()
        .context("the sweep has no trials")?
        .spec;
    for trial in &sweep.trials {
        if trial.spec.data.path != first.data.path || trial.spec.data.paths != first.data.paths {
            bail!(
                "trial {} ({}) reads another dataset than trial 1: a sweep's trials share one \
                 upload, so data.path cannot vary (submit a sweep per dataset)",
                trial.number,
                trial.label()
            );
        }
        if trial.spec.model.pretrained != first.model.pretrained {
            bail!(
                "trial {} ({}) varies model.pretrained: a sweep ships one weights file \
                 (submit a sweep per weights file)",
                trial.number,
                trial.label()
            );
        }
    }
    Ok(first)
}

/// One spec per distinct model and training data shape: the proof of concept of one stands in
/// for the trials that differ only in what a few steps cannot tell apart.
fn distinct_models(sweep: &Sweep) -> Vec<&ExperimentSpec> {
    let mut tried: Vec<&ExperimentSpec> = Vec::new();
    for trial in &sweep.trials {
        let spec = &trial.spec;
        let same = |other: &&ExperimentSpec| {
            other.model == spec.model
                && other.data == spec.data
                && other.train.batch_size == spec.train.batch_size
        };
        if !tried.iter().any(same) {
            tried.push(spec);
        }
    }
    tried
}
