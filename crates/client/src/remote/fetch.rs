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

use super::connection::{Connection, WorkerArgs, explain};

#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// A job id, or a sweep id (every trial, `sweep.csv` and `sweep.svg`; with --best only the
    /// best trial).
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
    /// For a sweep: only the best trial's run folder, into --out.
    #[arg(long)]
    pub best: bool,
}

pub fn run(args: FetchArgs) -> anyhow::Result<ExitCode> {
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from(&args.job));
    super::block_on(async move {
        std::fs::create_dir_all(&out)
            .with_context(|| format!("failed to create {}", out.display()))?;
        if args.best {
            bail!(
                "--best picks a sweep's best trial; {} is a job id",
                args.job
            );
        }
        let files = match &args.store {
            Some(url) => fetch_from_store(url, &args.job, &out, args.all).await?,
            None => {
                let mut connection = args.worker.connect().await?;
                fetch_from_worker(&mut connection, &args.job, &out, args.all).await?
            }
        };
        if args.json {
            let files: Vec<serde_json::Value> = files
                .iter()
                .map(|(name, got)| {
                    serde_json::json!({
                        "name": name,
                        "size": got.size,
                        "resumed_bytes": got.resumed_bytes,
                        "path": out.join(name),
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"job": args.job, "out": out, "files": files})
            );
        } else {
            for (name, got) in &files {
                println!("{:>12}  {}", got.size, out.join(name).display());
            }
            let best = out.join(outputs::BEST_WEIGHTS);
            if best.is_file() {
                println!("weights: {}", best.display());
            }
            let page = out.join(outputs::REPORT_PAGE);
            if page.is_file() {
                println!(
                    "report:  {} (`client report {} --open`)",
                    page.display(),
                    out.display()
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn wanted(name: &str, all: bool) -> bool {
    all || !name.starts_with(outputs::CHECKPOINTS_DIR)
}

async fn fetch_from_store(
    url: &str,
    job: &str,
    out: &Path,
    all: bool,
) -> anyhow::Result<Vec<(String, Fetched)>> {
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
    Ok(report
        .files
        .into_iter()
        .map(|f| {
            let got = Fetched {
                size: f.size,
                resumed_bytes: 0,
            };
            (f.name, got)
        })
        .collect())
}

pub(super) async fn fetch_from_worker(
    connection: &mut Connection,
    job: &str,
    out: &Path,
    all: bool,
) -> anyhow::Result<Vec<(String, Fetched)>> {
    let artifacts = connection.artifacts(job).await?;
    let mut fetched = Vec::new();
    for artifact in artifacts.iter().filter(|a| wanted(&a.name, all)) {
        easel_store::validate_artifact_name(&artifact.name)?;
        let target = out.join(&artifact.name);
        if already_there(&target, artifact) {
            let got = Fetched {
                size: artifact.size,
                resumed_bytes: 0,
            };
            fetched.push((artifact.name.clone(), got));
            continue;
        }
        let got = fetch_one(connection, job, artifact, &target).await?;
        fetched.push((artifact.name.clone(), got));
    }
    Ok(fetched)
}

fn already_there(target: &Path, artifact: &pb::ArtifactInfo) -> bool {
    easel_digest::file_matches(target, artifact.size, &artifact.blake3)
}

/// Tries at one artifact: a stream cut off mid-way resumes from the bytes already written.
const FETCH_ATTEMPTS: u32 = 3;

/// How one artifact arrived.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fetched {
    pub size: u64,
    /// Bytes a cut-off earlier download had written, not fetched again.
    pub resumed_bytes: u64,
}

async fn fetch_one(
    connection: &mut Connection,
    job: &str,
    artifact: &pb::ArtifactInfo,
    target: &Path,
) -> anyhow::Result<Fetched> {
    if let Some(parent) = target.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    // Named by content, so a partial of another version of the file is never resumed.
    let partial = target.with_file_name(format!(
        "{}.{}.part",
        target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        artifact.blake3.get(..16).unwrap_or("unknown")
    ));
    let mut attempt = 1;
    loop {
        match receive(connection, job, &artifact.name, &partial).await? {
            Received::Complete(fetched) => {
                tokio::fs::rename(&partial, target).await?;
                return Ok(fetched);
            }
            Received::CutOff(error) if attempt < FETCH_ATTEMPTS => {
                eprintln!("{}: {error:#}; resuming", artifact.name);
                tokio::time::sleep(std::time::Duration::from_millis(500 << attempt)).await;
            }
            Received::CutOff(error) => {
                return Err(error.context(format!(
                    "{}: the download was cut off {FETCH_ATTEMPTS} times; run the same fetch again to resume it",
                    artifact.name
                )));
            }
            Received::Mismatch { resumed: true, .. } if attempt < FETCH_ATTEMPTS => {
                // The bytes kept from before were not this file's: start over.
                remove_partial(&partial).await;
            }
            Received::Mismatch { message, .. } => {
                remove_partial(&partial).await;
                bail!("{}: {message}; nothing was kept", artifact.name);
            }
        }
        attempt += 1;
    }
}

enum Received {
    Complete(Fetched),
    /// The stream broke off; what arrived is kept for the next try.
    CutOff(anyhow::Error),
    /// The bytes do not match what the worker announced.
    Mismatch {
        resumed: bool,
        message: String,
    },
}

/// Fetches `name` into `partial`, after the bytes it already holds.
async fn receive(
    connection: &mut Connection,
    job: &str,
    name: &str,
    partial: &Path,
) -> anyhow::Result<Received> {
    use pb::artifact_chunk::Part;
    let mut received = hash_held(partial).await?;
    let held = received.len();
    let mut stream = match connection.fetch_artifact(job, name, held).await {
        Ok(stream) => stream,
        Err(status) if cut_off(&status) => return Ok(Received::CutOff(explain(status))),
        Err(status) if held > 0 && status.code() == tonic::Code::InvalidArgument => {
            // What we hold is longer than the file now is: not a part of it.
            return Ok(Received::Mismatch {
                resumed: true,
                message: explain(status).to_string(),
            });
        }
        Err(status) => return Err(explain(status)),
    };
    let header = match stream.next().await {
        Some(Ok(pb::ArtifactChunk {
            part: Some(Part::Header(header)),
        })) => header,
        Some(Err(status)) if cut_off(&status) => return Ok(Received::CutOff(explain(status))),
        Some(Err(status)) => return Err(explain(status)),
        _ => bail!("{name}: the worker sent no header"),
    };
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(partial)
        .await
        .with_context(|| format!("failed to write {}", partial.display()))?;
    while let Some(chunk) = stream.next().await {
        let part = match chunk {
            Ok(chunk) => chunk.part,
            Err(status) if cut_off(&status) => {
                file.flush().await?;
                return Ok(Received::CutOff(explain(status)));
            }
            Err(status) => return Err(explain(status)),
        };
        match part {
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
        return Ok(Received::Mismatch {
            resumed: held > 0,
            message: format!(
                "received {size} bytes with blake3 {digest}, the worker announced {} bytes with blake3 {}",
                header.size, header.blake3
            ),
        });
    }
    Ok(Received::Complete(Fetched {
        size,
        resumed_bytes: held,
    }))
}

/// The digest so far of what a cut-off earlier download left in `partial` (nothing when there
/// is none).
async fn hash_held(partial: &Path) -> anyhow::Result<easel_digest::Digester> {
    let path = partial.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut digester = easel_digest::Digester::default();
        match std::fs::File::open(&path) {
            Ok(file) => digester.update_reader(file),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
        .with_context(|| format!("failed to read {}", path.display()))?;
        Ok(digester)
    })
    .await?
}

/// Whether a status means the connection broke (worth resuming) rather than a refusal.
fn cut_off(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

async fn remove_partial(partial: &Path) {
    if let Err(error) = tokio::fs::remove_file(partial).await
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %partial.display(), %error, "mismatched download not removed");
    }
}
