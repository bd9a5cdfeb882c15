//! A run's inputs, put in place before its training starts: the spec with uploaded weights
//! checked and pointed at, the manifest and where its images are read from (a bucket dataset
//! copied first), the decoded cache leased (room made for it), and what the training process may
//! reach. File work here runs on blocking threads, never on the runtime's.

use std::sync::Arc;

use easel_dataset::Manifest;
use easel_spec::worker::DeviceName;
use easel_spec::{ExperimentSpec, PretrainedWeights};

use super::context::JobContext;
use super::job::Job;
use super::submission::pretrained_blob;
use crate::storage::caches::Lease;
use crate::training::sandbox::{Confinement, JobFolders};
use crate::training::{ImagesAt, TrainRequest, Training};
use easel_events::EventKind;

/// A run ready to start: its request, and the leases that keep its dataset copy and decoded
/// cache in place while it runs.
pub(super) struct Staged {
    pub request: TrainRequest,
    _dataset: Option<Lease>,
    _decoded_cache: Lease,
}

pub(super) async fn stage(
    context: &Arc<JobContext>,
    job: &Arc<Job>,
    device: DeviceName,
) -> Result<Staged, String> {
    let spec = resolved_spec(context, job).await?;
    let (manifest, images, dataset_lease) = dataset_for(context, job, &spec).await?;
    let decoded_cache = {
        let (context, job, spec) = (context.clone(), job.clone(), spec.clone());
        blocking(move || Ok(lease_decoded_cache(&context, &job, &manifest, &spec))).await?
    };
    let request = TrainRequest {
        spec,
        manifest_path: job.manifest_path(),
        sandbox: confinement(context, job, &images),
        images,
        device,
        run_dir: job.run_dir(),
        cache_dir: context.dirs.cache.clone(),
        owner: job.owner.clone(),
        price_per_hour: context.price_per_hour,
    };
    Ok(Staged {
        request,
        _dataset: dataset_lease,
        _decoded_cache: decoded_cache,
    })
}

/// Runs file work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| format!("staging the run stopped unexpectedly: {e}"))?
}

/// What the job's training process may reach: its own folders, what it reads, and the machine
/// less what the worker hides from it.
fn confinement(context: &JobContext, job: &Job, images: &ImagesAt) -> Confinement {
    let hidden = match &context.training {
        Training::ChildProcess { hidden, .. } => hidden.as_slice(),
        Training::Slurm(executor) => executor.hidden.as_slice(),
        Training::Thread => &[],
    };
    let dataset = match images {
        ImagesAt::Folder { root, .. } => Some(root.as_path()),
        ImagesAt::Blobs(_) => None,
    };
    let folders = JobFolders {
        job: &job.dir,
        run: &job.run_dir(),
        cache: &context.dirs.cache,
        blobs: context.blobs.dir(),
        dataset,
    };
    Confinement::for_job(hidden, &folders, &std::env::temp_dir())
}

/// The job's spec as submitted (parsed once, at submit), with an uploaded `model.pretrained`
/// checked intact and pointed at its blob's path.
async fn resolved_spec(
    context: &Arc<JobContext>,
    job: &Arc<Job>,
) -> Result<ExperimentSpec, String> {
    let (context, job) = (context.clone(), job.clone());
    blocking(move || {
        let mut spec = ExperimentSpec::clone(&*job.spec().map_err(|e| e.to_string())?);
        if let Some(digest) = pretrained_blob(&spec).map(str::to_owned) {
            // Hashing weights of hundreds of MB.
            context
                .blobs
                .check_intact(&digest)
                .map_err(|e| format!("model.pretrained: {e}"))?;
            let path = easel_dataset::blob_path(context.blobs.dir(), &digest)
                .map_err(|e| e.to_string())?;
            spec.model.pretrained = Some(PretrainedWeights::File(path));
        }
        Ok(spec)
    })
    .await
}

/// The manifest the run trains on, where its images are read from, and the lease that keeps a
/// copied bucket dataset in place while it runs.
async fn dataset_for(
    context: &Arc<JobContext>,
    job: &Arc<Job>,
    spec: &ExperimentSpec,
) -> Result<(Manifest, ImagesAt, Option<Lease>), String> {
    let dataset = match spec.data.object_store_url().map(str::to_owned) {
        Some(url) => {
            let dataset = super::object_dataset::prepare(context, job, &url, spec).await?;
            let images = ImagesAt::Folder {
                root: dataset.root,
                max_file_bytes: dataset.max_file_bytes,
            };
            (dataset.manifest, images, Some(dataset.lease))
        }
        None => {
            let path = job.manifest_path();
            let manifest = blocking(move || {
                let text = std::fs::read_to_string(&path)
                    .map_err(|e| format!("{}: {e}", super::job::MANIFEST_FILE))?;
                Manifest::from_json(&text)
                    .map_err(|e| format!("{}: {e}", super::job::MANIFEST_FILE))
            })
            .await?;
            (
                manifest,
                ImagesAt::Blobs(context.blobs.dir().to_owned()),
                None,
            )
        }
    };
    Ok(dataset)
}

/// Leases the decoded cache the run will read or write, first making room for it when it must
/// be written: the least recently used caches go, and the job's events say so (blocking).
pub(crate) fn lease_decoded_cache(
    context: &JobContext,
    job: &Job,
    manifest: &Manifest,
    spec: &ExperimentSpec,
) -> Lease {
    let (path, bytes) = easel_engine::pipeline::decoded_cache_file(
        &context.dirs.cache,
        manifest,
        spec.data.image_size.height(),
        spec.data.image_size.width(),
    );
    if !path.exists() {
        let trimmed = context.caches.make_room(bytes);
        if let Some(message) = trimmed.summary() {
            job.emit(EventKind::Note { message });
        }
    }
    context.caches.lease(&path)
}
