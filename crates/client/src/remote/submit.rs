//! `client submit FILE`: validate locally, ship what the worker lacks, queue the job, follow it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use easel_dataset::{LocalSource, Manifest};
use easel_proto::v1 as pb;

use super::connection::{Connection, WorkerArgs};
use super::follow::follow;
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
    let report = dataset::scan_here(&args.spec, &loaded.spec, !args.no_poc)?;
    let (manifest, source) = dataset::manifest_and_source(report.as_ref());
    if args.chunk_bytes == 0 {
        bail!("--chunk-bytes must be > 0");
    }
    let payload = Payload {
        manifest,
        source,
        shipped: dataset::ship_pretrained(&loaded)?,
        manifest_blob: upload::ManifestBlob::new(manifest),
    };
    let spec_text = &loaded.text;
    super::block_on(async move {
        let mut connection = args.worker.connect().await?;
        eprintln!("{}", describe_worker(&connection));
        let delivery = deliver(&mut connection, &payload, &args).await?;
        let key = args
            .idempotency_key
            .clone()
            .unwrap_or_else(|| fresh_key(spec_text));
        let request = pb::SubmitRequest {
            spec_toml: payload.shipped.spec_text.clone(),
            manifest_digest: payload.manifest_blob.digest.clone(),
            idempotency_key: key,
            resume_from_job: args.resume_from.clone().unwrap_or_default(),
        };
        let submitted = connection.submit(request).await?;
        let job = submitted.job.context("the worker answered without a job")?;
        if let Some(from) = &args.resume_from
            && !args.json
        {
            eprintln!("resuming from the checkpoint of job {from}");
        }
        let submission = Submission {
            job,
            created: submitted.created,
            delivery,
        };
        if args.json {
            println!("{}", submission.json(&connection.address, &payload));
        } else {
            submission.print();
        }
        if args.detach {
            if !args.json {
                println!("follow it with: client watch {}", submission.job.id);
            }
            return Ok(ExitCode::SUCCESS);
        }
        let job = &submission.job.id;
        Ok(follow(&mut connection, job, 0, false).await?.exit_code(job))
    })
}

/// What a submit ships besides the spec.
pub(super) struct Payload<'a> {
    pub manifest: &'a Manifest,
    /// Where the manifest's images are read from.
    pub source: &'a LocalSource,
    /// The spec as sent and the files that travel beside the dataset (pretrained weights).
    pub shipped: dataset::Shipment,
    pub manifest_blob: upload::ManifestBlob,
}

/// What reached the worker: the plan, what the upload sent, and the manifest's bytes sent.
pub(super) struct Delivery {
    pub plan: upload::UploadPlan,
    pub uploaded: upload::UploadResult,
    pub manifest_sent: u64,
}

/// The submit's result, as `--json` and the terminal show it.
struct Submission {
    job: pb::Job,
    /// False when the idempotency key had queued this job before.
    created: bool,
    delivery: Delivery,
}

/// Ships what the worker lacks: the images and extra files it has not got, then the manifest,
/// refusing before any byte moves when they would not fit.
pub(super) async fn deliver(
    connection: &mut Connection,
    payload: &Payload<'_>,
    args: &SubmitArgs,
) -> anyhow::Result<Delivery> {
    let chunk_bytes = args
        .chunk_bytes
        .min(connection.hello.max_chunk_bytes.max(1) as usize);
    let plan = upload::plan(connection, payload.manifest, &payload.shipped.blobs).await?;
    eprintln!("{}", describe_plan(&plan));
    plan.check_fits(&connection.address, payload.manifest_blob.size())?;
    let settings = upload::UploadSettings {
        chunk_bytes,
        streams: args.streams.into(),
        show_progress: !args.json,
    };
    let files = &payload.shipped.files;
    let uploaded = upload::upload(connection, payload.source, files, &plan, settings).await?;
    if uploaded.bytes_sent > 0 {
        eprintln!(
            "uploaded {:.1} MB in {:.1} s ({:.1} MB/s)",
            uploaded.bytes_sent as f64 / 1e6,
            uploaded.seconds,
            uploaded.bytes_sent as f64 / 1e6 / uploaded.seconds.max(1e-9)
        );
    }
    let manifest_sent =
        upload::ship_manifest(connection, &payload.manifest_blob, chunk_bytes).await?;
    Ok(Delivery {
        plan,
        uploaded,
        manifest_sent,
    })
}

pub(super) fn describe_worker(connection: &Connection) -> String {
    let hello = &connection.hello;
    format!(
        "worker {} (version {}): devices {}, libtorch {}, CUDA {}",
        connection.address,
        hello.worker_version,
        hello.devices.join(", "),
        hello.libtorch_version,
        if hello.cuda_available {
            "available"
        } else {
            "not available"
        }
    )
}

fn describe_plan(plan: &upload::UploadPlan) -> String {
    format!(
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
    )
}

impl Submission {
    fn json(&self, worker: &str, payload: &Payload<'_>) -> serde_json::Value {
        serde_json::json!({
            "job_id": self.job.id,
            "created": self.created,
            "worker": worker,
            "plan": self.delivery.plan,
            "upload": self.delivery.uploaded,
            "manifest": {
                "digest": payload.manifest_blob.digest,
                "bytes": payload.manifest_blob.size(),
                "bytes_sent": self.delivery.manifest_sent,
            },
            "job": super::json::job(&self.job),
        })
    }

    fn print(&self) {
        println!(
            "job {} {}",
            self.job.id,
            if self.created {
                pb::JobState::Queued.name()
            } else {
                "(already submitted)"
            }
        );
    }
}

/// A key unique to this invocation: retries inside it are idempotent, a new `submit` is a new job.
pub(super) fn fresh_key(spec_text: &str) -> String {
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
