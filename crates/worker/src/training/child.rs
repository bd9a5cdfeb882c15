//! The side that trains: the engine run on a [`TrainRequest`], in the worker's own process
//! (`Training::Thread`) or in `worker train-job`, the training process the worker starts.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use easel_dataset::{BlobStoreSource, ImageSource, LocalSource, Manifest};
use easel_engine::{DeviceChoice, TrainJob, TrainOutcome};
use easel_events::EventKind;

use super::protocol::FromChild;
use super::{CHILD_COMMAND, Ended, ImagesAt, TrainRequest};

/// Runs the engine on `request` in this process.
pub fn run_request(
    request: &TrainRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(EventKind),
) -> Ended {
    let manifest = match read_manifest(&request.manifest_path) {
        Ok(manifest) => manifest,
        Err(error) => return Ended::Failed(error),
    };
    let source: Box<dyn ImageSource> = match &request.images {
        ImagesAt::Blobs(dir) => Box::new(BlobStoreSource::new(dir)),
        ImagesAt::Folder {
            root,
            max_file_bytes,
        } => Box::new(LocalSource::for_folder(root, &manifest, *max_file_bytes)),
    };
    let train_job = TrainJob {
        spec: &request.spec,
        manifest: &manifest,
        source: source.as_ref(),
        device: DeviceChoice::from(request.device),
        run_dir: &request.run_dir,
        cache_dir: Some(&request.cache_dir),
        owner: &request.owner,
        price_per_hour: request.price_per_hour,
        cancel,
    };
    match easel_engine::train(&train_job, on_event) {
        Ok(TrainOutcome::Completed(report)) => Ended::Completed(Box::new(report)),
        Ok(TrainOutcome::Cancelled { completed_epochs }) => Ended::Cancelled { completed_epochs },
        Err(error) => Ended::Failed(format!("training failed: {error}")),
    }
}

fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Manifest::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// `worker train-job`: reads a request on stdin, trains, writes the run's events on stdout.
pub fn serve_as_child() -> std::process::ExitCode {
    let mut input = std::io::BufReader::new(std::io::stdin());
    let mut first = String::new();
    if input.read_line(&mut first).is_err() || first.is_empty() {
        eprintln!("worker {CHILD_COMMAND}: no request on stdin (the worker starts this itself)");
        return std::process::ExitCode::from(2);
    }
    let request: TrainRequest = match serde_json::from_str(&first) {
        Ok(request) => request,
        Err(error) => {
            eprintln!("worker {CHILD_COMMAND}: the request is not readable: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    // Before any input is read or any thread started (threads started later inherit it).
    let sandboxed = super::sandbox::enter(&request.sandbox, &request.run_dir);
    let cancel = Arc::new(AtomicBool::new(false));
    let cancelled = cancel.clone();
    std::thread::spawn(move || {
        for line in input.lines() {
            match line {
                Ok(line) if line.trim() == "cancel" => cancelled.store(true, Ordering::SeqCst),
                Ok(_) => {}
                Err(_) => break,
            }
        }
        // The worker is gone: nothing would take the run's events, and the job resumes from its
        // checkpoint when the worker is back.
        std::process::exit(3);
    });
    let mut out = std::io::stdout();
    let mut send = |message: &FromChild| {
        let mut line = serde_json::to_string(message).expect("a message serializes");
        line.push('\n');
        if out
            .write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .is_err()
        {
            std::process::exit(3);
        }
    };
    train_and_report(&request, &cancel, sandboxed, &mut send);
    std::process::ExitCode::SUCCESS
}

/// What a training process does once its request is read and its sandbox entered (or refused):
/// trains, sending every event, then how the run ended, through `send`. The worker's own child
/// and a Slurm job's process on a compute node share it.
pub(super) fn train_and_report(
    request: &TrainRequest,
    cancel: &AtomicBool,
    sandboxed: Result<(), String>,
    send: &mut dyn FnMut(&FromChild),
) {
    let ended = match sandboxed {
        Ok(()) => run_request(request, cancel, &mut |event| {
            send(&FromChild::Event { event })
        }),
        Err(reason) => Ended::Failed(reason),
    };
    send(&match ended {
        Ended::Completed(report) => FromChild::Completed { report },
        Ended::Cancelled { completed_epochs } => FromChild::Cancelled { completed_epochs },
        Ended::Failed(error) | Ended::Crashed(error) => FromChild::Failed { error },
    });
}
