//! `client fetch JOB --out DIR`: a job's weights, metrics, report, class names and plots, from
//! the worker or (with --store) straight from object storage. Every file is checked against its
//! size and blake3 and renamed into place only when complete.

use easel_spec::outputs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use easel_proto::v1 as pb;
use tokio::io::AsyncWriteExt;
use tokio_stream::StreamExt;

use super::connection::{Client, WorkerArgs, explain};

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    pub job: String,
    /// Folder to write into (created); defaults to the job id.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub worker: WorkerArgs,
    /// Download from this object store instead of the worker (s3://bucket/prefix, file:///dir...),
    /// e.g. when the GPU machine is gone.
    #[arg(long)]
    pub store: Option<String>,
    /// Also download checkpoints (only needed to resume training elsewhere).
    #[arg(long)]
    pub all: bool,
    /// Machine-readable output (JSON on stdout).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(&args.job));
    super::block_on(async move {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("failed to create {}", out.display()))?;
        let files = match &args.store {
            Some(url) => fetch_from_store(url, &args.job, &out, args.all).await?,
            None => {
                let mut remote = args.worker.connect().await?;
                fetch_from_worker(&mut remote.client, &args.job, &out, args.all).await?
            }
        };
        if args.json {
            let files: Vec<serde_json::Value> = files
                .iter()
                .map(|(name, size)| serde_json::json!({"name": name, "size": size, "path": out.join(name)}))
                .collect();
            println!(
                "{}",
                serde_json::json!({"job": args.job, "out": out, "files": files})
            );
        } else {
            for (name, size) in &files {
                println!("{:>12}  {}", size, out.join(name).display());
            }
            let best = out.join(outputs::BEST_WEIGHTS);
            if best.is_file() {
                println!("weights: {}", best.display());
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn wanted(name: &str, all: bool) -> bool {
    all || !name.starts_with(outputs::CHECKPOINTS_DIR)
}

async fn fetch_from_store(
    url: &str,
    job: &str,
    out: &Path,
    all: bool,
) -> anyhow::Result<Vec<(String, u64)>> {
    let store = easel_store::ArtifactStore::open(url, &easel_store::StoreOptions::from_env())?;
    let listed = store.list_artifacts(job).await?;
    if listed.is_empty() {
        bail!("no artifacts of job {job} in {url}");
    }
    let names: Vec<&str> = listed
        .iter()
        .map(|a| a.name.as_str())
        .filter(|n| wanted(n, all))
        .collect();
    let report = store.download_job(job, &names, out).await?;
    if !report.complete {
        eprintln!(
            "warning: job {job} has no {} in the store yet: its artifacts may be incomplete",
            outputs::REPORT
        );
    }
    Ok(report.files.into_iter().map(|f| (f.name, f.size)).collect())
}

async fn fetch_from_worker(
    client: &mut Client,
    job: &str,
    out: &Path,
    all: bool,
) -> anyhow::Result<Vec<(String, u64)>> {
    let artifacts = client
        .list_artifacts(pb::ListArtifactsRequest {
            job_id: job.to_owned(),
        })
        .await
        .map_err(explain)?
        .into_inner()
        .artifacts;
    let mut fetched = Vec::new();
    for artifact in artifacts.iter().filter(|a| wanted(&a.name, all)) {
        easel_store::validate_artifact_name(&artifact.name)?;
        let target = out.join(&artifact.name);
        if already_there(&target, artifact) {
            fetched.push((artifact.name.clone(), artifact.size));
            continue;
        }
        let size = fetch_one(client, job, &artifact.name, &target).await?;
        fetched.push((artifact.name.clone(), size));
    }
    Ok(fetched)
}

fn already_there(target: &Path, artifact: &pb::ArtifactInfo) -> bool {
    easel_digest::file_matches(target, artifact.size, &artifact.blake3)
}

async fn fetch_one(
    client: &mut Client,
    job: &str,
    name: &str,
    target: &Path,
) -> anyhow::Result<u64> {
    use pb::artifact_chunk::Part;
    let mut stream = client
        .fetch_artifact(pb::FetchArtifactRequest {
            job_id: job.to_owned(),
            name: name.to_owned(),
        })
        .await
        .map_err(explain)?
        .into_inner();
    let header = match stream.next().await {
        Some(Ok(pb::ArtifactChunk {
            part: Some(Part::Header(header)),
        })) => header,
        Some(Err(status)) => return Err(explain(status)),
        _ => bail!("{name}: the worker sent no header"),
    };
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    let partial = target.with_file_name(format!(
        "{}.part",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    ));
    let mut file = tokio::fs::File::create(&partial)
        .await
        .with_context(|| format!("failed to create {}", partial.display()))?;
    let mut received = easel_digest::Digester::default();
    while let Some(chunk) = stream.next().await {
        match chunk.map_err(explain)?.part {
            Some(Part::Data(data)) => {
                received.update(&data);
                file.write_all(&data).await?;
            }
            _ => bail!("{name}: unexpected message in the artifact stream"),
        }
    }
    file.flush().await?;
    drop(file);
    let (size, digest) = (received.len(), received.finish());
    if size != header.size || digest != header.blake3 {
        if let Err(error) = tokio::fs::remove_file(&partial).await {
            tracing::warn!(file = %partial.display(), %error, "mismatched download not removed");
        }
        bail!(
            "{name}: received {size} bytes with blake3 {digest}, the worker announced {} bytes with blake3 {}; nothing was kept",
            header.size,
            header.blake3
        );
    }
    tokio::fs::rename(&partial, target).await?;
    Ok(size)
}
