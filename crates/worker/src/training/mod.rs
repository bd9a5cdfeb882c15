//! Where a job's training runs. The worker binary trains each job in a child process of its own
//! (`worker train-job`) that it supervises, so whatever takes a training down — an abort inside
//! libtorch, a native crash, the kernel's out-of-memory killer, which picks the process holding
//! the data — ends that job with the reason and leaves the worker serving everyone else. The
//! library's [`crate::run`] trains on a thread of its own process instead (its tests have no
//! worker binary to start); both read the same [`TrainRequest`].
//!
//! The child reads the request as one JSON line on stdin and then `cancel` lines; it writes one
//! JSON line per event on stdout, then one saying how the run ended. Its stderr (libtorch's and
//! the engine's log) goes to the worker's log, and its last lines into a crash's reason. It exits
//! at once when its stdin closes: the worker is gone, and the job resumes from its checkpoint
//! when the worker comes back.

mod child;
mod protocol;
pub mod sandbox;
pub mod slurm;
mod supervisor;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use easel_engine::RunReport;
use easel_events::EventKind;
use easel_spec::ExperimentSpec;
use easel_spec::worker::DeviceName;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use child::{run_request, serve_as_child};
use sandbox::Confinement;

/// The subcommand of the worker binary that trains one job.
pub const CHILD_COMMAND: &str = "train-job";

/// Where the worker trains its jobs.
#[derive(Debug, Clone)]
pub enum Training {
    /// On a thread of this process.
    Thread,
    /// In a child process running this executable's `train-job`, kept from the `hidden` paths
    /// (see `sandbox`).
    ChildProcess {
        executable: PathBuf,
        hidden: Vec<PathBuf>,
    },
    /// As one Slurm job per run, on the cluster's compute nodes (see `slurm`).
    Slurm(Arc<slurm::SlurmExecutor>),
}

/// What a run is told besides `cancel`, and what it reports besides its events.
pub struct RunHooks {
    /// Raised with `cancel` when the worker stops: a Slurm job is then left to go on, and
    /// followed again at the next start, rather than cancelled.
    pub interrupted: Arc<AtomicBool>,
    /// Called with the Slurm job id a run was submitted (or found) as.
    pub on_submitted: Box<dyn Fn(&str) + Send + Sync>,
}

/// Everything a run needs, in a form another process can read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRequest {
    /// The resolved spec (uploaded weights already replaced by their blob's path), parsed once
    /// when it was submitted.
    pub spec: ExperimentSpec,
    pub manifest_path: PathBuf,
    pub images: ImagesAt,
    pub device: DeviceName,
    pub run_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// The token name that submitted the job: who may be told which job wrote a cache file.
    #[serde(default)]
    pub owner: String,
    /// What the training process may reach (a thread of the worker is not confined).
    pub sandbox: Confinement,
    /// What the machine costs an hour (the worker's `price_per_hour`), for the report page.
    #[serde(default)]
    pub price_per_hour: Option<f64>,
}

/// Where the manifest's images are read from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImagesAt {
    /// The worker's blob store, by digest.
    Blobs(PathBuf),
    /// A folder the manifest was scanned from (a copied object-store dataset).
    Folder { root: PathBuf, max_file_bytes: u64 },
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ended {
    /// The run's report.
    Completed(Box<RunReport>),
    Cancelled {
        completed_epochs: u32,
    },
    /// The engine refused or failed, saying why.
    Failed(String),
    /// The training process or thread itself died (what happened, for the reason).
    Crashed(String),
}

/// A started run: its events as they come, then how it ended.
pub struct Launched {
    pub events: mpsc::UnboundedReceiver<EventKind>,
    pub ended: oneshot::Receiver<Ended>,
}

/// Starts `request` the way `training` says; `cancel` stops it at its next step.
pub fn launch(
    training: &Training,
    job_id: &str,
    request: TrainRequest,
    cancel: Arc<AtomicBool>,
    hooks: RunHooks,
) -> Result<Launched, String> {
    let (events_tx, events) = mpsc::unbounded_channel();
    let (ended_tx, ended) = oneshot::channel();
    match training {
        Training::Thread => {
            std::thread::Builder::new()
                .name(format!("train-{job_id}"))
                .spawn(move || {
                    let ended = run_request(&request, &cancel, &mut |event| {
                        let _ = events_tx.send(event);
                    });
                    let _ = ended_tx.send(ended);
                })
                .map_err(|e| format!("could not start the training thread: {e}"))?;
        }
        Training::Slurm(executor) => {
            tokio::spawn(slurm::supervise(
                executor.clone(),
                request,
                cancel,
                hooks,
                job_id.to_owned(),
                events_tx,
                ended_tx,
            ));
        }
        Training::ChildProcess { executable, .. } => {
            let mut request = request;
            let visible = own_gpu(&mut request);
            if let Some(visible) = &visible {
                let _ = events_tx.send(EventKind::Note {
                    message: format!(
                        "the training process sees only GPU {visible} (CUDA_VISIBLE_DEVICES), \
                         as its cuda:0"
                    ),
                });
            }
            let child = supervisor::start_child(executable, visible.as_deref())?;
            tokio::spawn(supervisor::supervise(
                child,
                request,
                cancel,
                job_id.to_owned(),
                events_tx,
                ended_tx,
            ));
        }
    }
    Ok(Launched { events, ended })
}

/// A run on `cuda:N` in a child process sees that GPU alone, as its `cuda:0`: its memory queries
/// and any library it loads then name the right card, and it cannot touch another slot's GPU.
/// The value is the worker's own `CUDA_VISIBLE_DEVICES` entry N when it has one (the worker may
/// itself see a subset), else N.
fn own_gpu(request: &mut TrainRequest) -> Option<String> {
    let DeviceName::Cuda(index) = request.device else {
        return None;
    };
    request.device = DeviceName::Cuda(0);
    Some(easel_engine::smi_device_id(
        index,
        std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
    ))
}

#[cfg(test)]
mod tests {
    use easel_engine::smi_device_id;

    #[test]
    fn a_slot_sees_its_gpu_by_the_workers_own_numbering() {
        assert_eq!(smi_device_id(3, None), "3");
        assert_eq!(smi_device_id(2, Some("4,5, 6")), "6");
        assert_eq!(smi_device_id(1, Some("GPU-1a2b,GPU-3c4d")), "GPU-3c4d");
        // A slot past the worker's list is named as it stands; CUDA then reports it missing.
        assert_eq!(smi_device_id(1, Some("4")), "1");
    }
}
