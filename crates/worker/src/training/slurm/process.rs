//! Both ends of a Slurm job's files: the worker writes the request and the batch script; on the
//! compute node, `worker train-job --files DIR` reads the request, trains, and appends its
//! messages to the output (the local executor's stdout protocol, in a file). SIGTERM (scancel,
//! a requeue or preemption, the time limit's warning) stops the run at its next step with its
//! checkpoint.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::SlurmExecutor;
use super::files::{self, RunFiles};
use crate::training::child::train_and_report;
use crate::training::protocol::FromChild;
use crate::training::{CHILD_COMMAND, TrainRequest, sandbox};

/// The batch script's exit status when its node cannot read the job's files.
pub const NODE_CANNOT_READ: i32 = 97;

/// The request and the batch script, in the job's folder, for `sbatch`.
pub(super) fn write_inputs(
    executor: &SlurmExecutor,
    files: &RunFiles,
    request: &TrainRequest,
    job_id: &str,
) -> Result<(), String> {
    let failed = |path: &Path, error: std::io::Error| format!("{}: {error}", path.display());
    std::fs::create_dir_all(&files.dir).map_err(|e| failed(&files.dir, e))?;
    let mut request = request.clone();
    // Slurm gives the job its GPUs (CUDA_VISIBLE_DEVICES): they are its `cuda:0`, `cuda:1`…
    request.device = easel_spec::worker::DeviceName::Auto;
    let json = serde_json::to_vec(&request).map_err(|e| e.to_string())?;
    let path = files.path(files::REQUEST);
    std::fs::write(&path, json).map_err(|e| failed(&path, e))?;
    let path = files.path(files::SCRIPT);
    std::fs::write(&path, script(executor, files, job_id)).map_err(|e| failed(&path, e))
}

/// The batch script: the training environment (the worker's credentials left out, as for a
/// local training process), a check that this node sees the job's files, then the training
/// process in place of the shell (so Slurm's signals reach it).
fn script(executor: &SlurmExecutor, files: &RunFiles, job_id: &str) -> String {
    let mut text = format!("#!/bin/bash\n# Easel job {job_id}, written by its worker.\n");
    let environment = sandbox::child_environment(std::env::vars_os(), &std::env::temp_dir());
    for (name, value) in environment {
        let (Some(name), Some(value)) = (name.to_str(), value.to_str()) else {
            continue;
        };
        // Slurm sets the job's own GPUs.
        if name == "CUDA_VISIBLE_DEVICES" {
            continue;
        }
        text.push_str(&format!("export {name}={}\n", quoted(value)));
    }
    let request = files.path(files::REQUEST);
    text.push_str(&format!(
        "if [ ! -r {request} ]; then\n  echo \"easel: $(hostname) cannot read {shown}: is the \
         worker's data dir on a filesystem the compute nodes mount?\" >&2\n  exit {NODE_CANNOT_READ}\nfi\n\
         exec {executable} {CHILD_COMMAND} --files {dir}\n",
        request = quoted(&request.display().to_string()),
        shown = request.display(),
        executable = quoted(&executor.executable.display().to_string()),
        dir = quoted(&files.dir.display().to_string()),
    ));
    text
}

/// `value` in single quotes for the shell.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `worker train-job --files DIR`, on a compute node.
pub fn serve_from_files(dir: &Path) -> ExitCode {
    let files = RunFiles {
        dir: dir.to_owned(),
    };
    let path = files.path(files::REQUEST);
    let request: TrainRequest = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(request) => request,
        Err(error) => {
            eprintln!("worker {CHILD_COMMAND}: {}: {error}", path.display());
            return ExitCode::from(NODE_CANNOT_READ as u8);
        }
    };
    // Opened before the sandbox closes everything outside the run's own folders.
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(files.path(files::OUTPUT));
    let mut output = match output {
        Ok(file) => file,
        Err(error) => {
            eprintln!(
                "worker {CHILD_COMMAND}: {}: {error}",
                files.path(files::OUTPUT).display()
            );
            return ExitCode::from(NODE_CANNOT_READ as u8);
        }
    };
    let cancel = Arc::new(AtomicBool::new(false));
    stop_on_sigterm(cancel.clone());
    let sandboxed = sandbox::enter(&request.sandbox, &request.run_dir);
    let mut send = |message: &FromChild| {
        let mut line = serde_json::to_string(message).expect("a message serializes");
        line.push('\n');
        if let Err(error) = output
            .write_all(line.as_bytes())
            .and_then(|()| output.flush())
        {
            eprintln!("worker {CHILD_COMMAND}: the job's output cannot be written: {error}");
            std::process::exit(3);
        }
    };
    train_and_report(&request, &cancel, sandboxed, &mut send);
    ExitCode::SUCCESS
}

/// SIGTERM raises `cancel`: the run stops at its next step, keeping its checkpoint.
fn stop_on_sigterm(cancel: Arc<AtomicBool>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build();
    let Ok(runtime) = runtime else { return };
    // Registered here, before training starts; waited for on a thread of its own.
    let terminate = runtime.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    });
    let Ok(mut terminate) = terminate else { return };
    std::thread::spawn(move || {
        runtime.block_on(async {
            if terminate.recv().await.is_some() {
                eprintln!("worker {CHILD_COMMAND}: SIGTERM: stopping at the next step");
                cancel.store(true, Ordering::SeqCst);
            }
        });
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::slurm::SlurmCommands;

    #[test]
    fn the_batch_script_checks_the_files_and_runs_the_training_process_in_its_place() {
        let executor = SlurmExecutor {
            executable: "/opt/easel/it's here/worker".into(),
            commands: SlurmCommands::new(Default::default()),
            hidden: Vec::new(),
        };
        let files = RunFiles {
            dir: "/shared/easel/jobs/a/slurm".into(),
        };
        let text = script(&executor, &files, "a");
        assert!(text.starts_with("#!/bin/bash\n"), "{text}");
        assert!(
            text.contains("if [ ! -r '/shared/easel/jobs/a/slurm/request.json' ]; then"),
            "{text}"
        );
        assert!(text.contains(&format!("exit {NODE_CANNOT_READ}")), "{text}");
        assert!(
            text.ends_with(
                "exec '/opt/easel/it'\\''s here/worker' train-job --files '/shared/easel/jobs/a/slurm'\n"
            ),
            "{text}"
        );
        assert!(!text.contains("export CUDA_VISIBLE_DEVICES="), "{text}");
        assert!(!text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
    }
}
