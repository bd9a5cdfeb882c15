//! `client submit FILE`: validate locally, ship what the worker lacks, queue the job, follow it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use easel_dataset::{LocalSource, Manifest};
use easel_proto::v1 as pb;

use super::connection::{WorkerArgs, explain};
use super::follow::{Followed, follow};
use super::{dataset, upload};

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The experiment spec (experiment.toml).
    pub spec: PathBuf,
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Print the job id and return instead of following the job.
    #[arg(long)]
    pub detach: bool,
    /// Skip the local proof-of-concept training.
    #[arg(long)]
    pub no_poc: bool,
    /// Continue job JOB from its checkpoint in the worker's artifact store (e.g. on a new machine
    /// after the first one is gone). The spec and data must be those of JOB.
    #[arg(long, value_name = "JOB")]
    pub resume_from: Option<String>,
    /// Machine-readable output (one JSON object; with --detach nothing else on stdout).
    #[arg(long)]
    pub json: bool,
    /// Upload chunk size in bytes.
    #[arg(long, default_value_t = 1 << 20, hide = true)]
    pub chunk_bytes: usize,
    /// Upload streams in flight at once (more fill a long, fast link; each takes the next file).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub streams: u16,
    /// Retrying a submit with the same key returns the same job instead of queueing another.
    #[arg(long, hide = true)]
    pub idempotency_key: Option<String>,
}

pub fn run(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let loaded = dataset::load_spec(&args.spec)?;
    let report = match loaded.spec.data.object_store_url() {
        // The worker copies and scans it: nothing to scan, try or upload here.
        Some(url) => {
            eprintln!("dataset: {url} (read by the worker from object storage)");
            None
        }
        None => {
            eprintln!("scanning the dataset of {}", args.spec.display());
            let report = dataset::scan(&loaded.spec)?;
            let manifest = &report.manifest;
            eprintln!(
                "dataset: {} images in {} classes ({:.1} MB)",
                manifest.entries.len(),
                manifest.classes.len(),
                manifest.total_bytes() as f64 / 1e6
            );
            if !args.no_poc {
                proof_of_concept(&loaded.spec, &report)?;
            }
            Some(report)
        }
    };
    let empty = Manifest {
        classes: Vec::new(),
        entries: Vec::new(),
    };
    let no_files = LocalSource::default();
    let (manifest, source) = match &report {
        Some(report) => (&report.manifest, report.source()),
        None => (&empty, &no_files),
    };
    if args.chunk_bytes == 0 {
        bail!("--chunk-bytes must be > 0");
    }
    let shipped = dataset::ship_pretrained(&loaded)?;
    let manifest_blob = upload::ManifestBlob::new(manifest);
    let loaded = &loaded;
    super::block_on(async move {
        let mut remote = args.worker.connect().await?;
        let hello = &remote.hello;
        eprintln!(
            "worker {} (version {}): devices {}, libtorch {}, CUDA {}",
            remote.address,
            hello.worker_version,
            hello.devices.join(", "),
            hello.libtorch_version,
            if hello.cuda_available {
                "available"
            } else {
                "not available"
            }
        );
        let chunk_bytes = args
            .chunk_bytes
            .min(remote.hello.max_chunk_bytes.max(1) as usize);
        let plan = upload::plan(&mut remote.client, manifest, &shipped.blobs).await?;
        eprintln!(
            "to upload: {} file(s), {:.1} MB; already on the worker: {} file(s), {:.1} MB{}",
            plan.upload_files,
            plan.upload_bytes as f64 / 1e6,
            plan.present_files,
            plan.present_bytes as f64 / 1e6,
            if plan.resumed_bytes > 0 {
                format!(
                    "; resuming {:.1} MB from an earlier upload",
                    plan.resumed_bytes as f64 / 1e6
                )
            } else {
                String::new()
            }
        );
        plan.check_fits(&remote.address, manifest_blob.size())?;
        let settings = upload::UploadSettings {
            chunk_bytes,
            streams: args.streams.into(),
            show_progress: !args.json,
        };
        let uploaded =
            upload::upload(&mut remote.client, source, &shipped.files, &plan, settings).await?;
        if uploaded.bytes_sent > 0 {
            eprintln!(
                "uploaded {:.1} MB in {:.1} s ({:.1} MB/s)",
                uploaded.bytes_sent as f64 / 1e6,
                uploaded.seconds,
                uploaded.bytes_sent as f64 / 1e6 / uploaded.seconds.max(1e-9)
            );
        }
        let manifest_sent =
            upload::ship_manifest(&mut remote.client, &manifest_blob, chunk_bytes).await?;
        let key = args
            .idempotency_key
            .clone()
            .unwrap_or_else(|| fresh_key(&loaded.text));
        let submitted = remote
            .client
            .submit(pb::SubmitRequest {
                spec_toml: shipped.spec_text.clone(),
                manifest_digest: manifest_blob.digest.clone(),
                idempotency_key: key,
                resume_from_job: args.resume_from.clone().unwrap_or_default(),
            })
            .await
            .map_err(explain)?
            .into_inner();
        let job = submitted.job.context("the worker answered without a job")?;
        if let Some(from) = &args.resume_from
            && !args.json
        {
            eprintln!("resuming from the checkpoint of job {from}");
        }
        if args.json {
            let summary = serde_json::json!({
                "job_id": job.id,
                "created": submitted.created,
                "worker": remote.address,
                "plan": plan,
                "upload": uploaded,
                "manifest": {
                    "digest": manifest_blob.digest,
                    "bytes": manifest_blob.size(),
                    "bytes_sent": manifest_sent,
                },
                "job": super::json::job(&job),
            });
            println!("{summary}");
        } else {
            println!(
                "job {} {}",
                job.id,
                if submitted.created {
                    "queued"
                } else {
                    "(already submitted)"
                }
            );
        }
        if args.detach {
            if !args.json {
                println!("follow it with: client watch {}", job.id);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let followed = follow(&mut remote.client, &job.id, 0, false).await?;
        Ok(exit_code(&job.id, &followed))
    })
}

pub(crate) fn exit_code(job: &str, followed: &Followed) -> ExitCode {
    match followed {
        Followed::Finished { outcome, .. } if outcome == "succeeded" => {
            eprintln!("fetch the results with: client fetch {job} --out {job}");
            ExitCode::SUCCESS
        }
        Followed::Finished { .. } => ExitCode::FAILURE,
        Followed::Detached => ExitCode::SUCCESS,
        Followed::Disconnected => {
            eprintln!("the worker closed the event stream; re-attach with: client watch {job}");
            ExitCode::from(2)
        }
    }
}

/// A key unique to this invocation: retries inside it are idempotent, a new `submit` is a new job.
fn fresh_key(spec_text: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut hasher = blake3::Hasher::new();
    hasher.update(spec_text.as_bytes());
    hasher.update(&nanos.to_le_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    hasher.finalize().to_hex()[..32].to_owned()
}

#[cfg(feature = "engine")]
fn proof_of_concept(
    spec: &easel_spec::ExperimentSpec,
    report: &easel_dataset::ScanReport,
) -> anyhow::Result<()> {
    eprintln!(
        "proof of concept: {} steps on CPU (skip with --no-poc)",
        spec.local.steps
    );
    let poc =
        easel_engine::proof_of_concept(spec, &report.manifest, report.source(), &mut |_, _| {})
            .context("the proof-of-concept training failed")?;
    if !poc.loss_finite {
        bail!(
            "the proof-of-concept loss is not finite ({:?}); fix the spec before paying for a GPU",
            poc.losses
        );
    }
    eprintln!(
        "proof of concept: loss {:.4} -> {:.4} in {:.1} s{}",
        poc.first_loss,
        poc.last_loss,
        poc.seconds,
        if poc.loss_fell {
            ""
        } else {
            " (did not fall: check the learning rate)"
        }
    );
    Ok(())
}

#[cfg(not(feature = "engine"))]
fn proof_of_concept(
    _: &easel_spec::ExperimentSpec,
    _: &easel_dataset::ScanReport,
) -> anyhow::Result<()> {
    eprintln!("proof of concept skipped: this client was built without the engine");
    Ok(())
}
