//! Training on a Slurm cluster: each job is one Slurm job, running the same training process as
//! the local executor on a compute node, reading its inputs from the worker's data dir on the
//! filesystem the nodes share. Slurm places and queues; the worker keeps Easel's records, events
//! and artifacts. The worker follows a job by reading what its training process appends to the
//! job's folder (`files.rs`) and by asking Slurm its state (`commands.rs`); a worker that
//! restarts follows the same Slurm job again instead of submitting another.

mod commands;
mod files;
mod process;

pub use commands::SlurmCommands;
pub use process::serve_from_files;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use easel_events::EventKind;
use tokio::sync::{mpsc, oneshot};

use super::protocol::FromChild;
use super::{Ended, RunHooks, TrainRequest};
use files::RunFiles;

/// The Slurm executor: the worker binary the jobs run and how they are submitted.
#[derive(Debug)]
pub struct SlurmExecutor {
    pub executable: PathBuf,
    pub commands: SlurmCommands,
    /// What the training process is kept from, as on the local executor.
    pub hidden: Vec<PathBuf>,
}

/// The Slurm job the job in `job_dir` was last submitted as, if any (a restarted worker follows
/// it again).
pub fn submitted_as(job_dir: &std::path::Path) -> Option<String> {
    RunFiles {
        dir: job_dir.join(files::DIR),
    }
    .job_id()
}

/// Where following a Slurm job stands.
struct Follow {
    id: String,
    files: RunFiles,
    read_up_to: u64,
    /// The last message a run of the job ended with, while the worker waits to see whether
    /// Slurm runs it again (requeued) or it is gone.
    stopped: Option<FromChild>,
    cancel_sent: bool,
    resubmits: u32,
    last_said: String,
}

/// Submits `request` (or follows the Slurm job it was submitted as before a worker restart) and
/// passes its events on until it ends.
pub(super) async fn supervise(
    executor: Arc<SlurmExecutor>,
    request: TrainRequest,
    cancel: Arc<AtomicBool>,
    hooks: RunHooks,
    job_id: String,
    events: mpsc::UnboundedSender<EventKind>,
    ended: oneshot::Sender<Ended>,
) {
    let outcome = follow_job(&executor, request, &cancel, &hooks, &job_id, &events).await;
    let _ = ended.send(outcome.unwrap_or_else(Ended::Failed));
}

async fn follow_job(
    executor: &SlurmExecutor,
    request: TrainRequest,
    cancel: &AtomicBool,
    hooks: &RunHooks,
    job_id: &str,
    events: &mpsc::UnboundedSender<EventKind>,
) -> Result<Ended, String> {
    let note = |message: String| {
        let _ = events.send(EventKind::Note { message });
    };
    let files = RunFiles::of(&request.run_dir);
    let attached_id = attached(executor, &files).await;
    let mut follow = Follow {
        read_up_to: files.read_up_to(),
        id: attached_id
            .clone()
            .or_else(|| files.job_id())
            .unwrap_or_default(),
        files,
        stopped: None,
        cancel_sent: false,
        resubmits: 0,
        last_said: String::new(),
    };
    match attached_id {
        Some(id) => note(format!(
            "following Slurm job {id} again (the worker restarted)"
        )),
        None => {
            // Submitted before the worker stopped and gone from the queue since: its run may
            // have ended meanwhile, the end waiting in its output, and is not run twice.
            if follow.files.job_id().is_some()
                && let Some(ended) = forward_output(&mut follow, events, cancel)
            {
                return Ok(ended);
            }
            // A run that stopped before its end resumes in the job submitted now.
            follow.stopped = None;
            process::write_inputs(executor, &follow.files, &request, job_id)?;
            follow.id = submit(executor, &follow.files, job_id, &note).await?;
        }
    }
    (hooks.on_submitted)(&follow.id);
    let poll = Duration::from_secs(executor.commands.config().poll_seconds.max(1));
    loop {
        if let Some(ended) = forward_output(&mut follow, events, cancel) {
            return Ok(ended);
        }
        if cancel.load(Ordering::SeqCst) && !follow.cancel_sent {
            if hooks.interrupted.load(Ordering::SeqCst) {
                // The worker is stopping: the Slurm job goes on, and the next start follows it.
                return Ok(Ended::Crashed(format!(
                    "the worker stopped; Slurm job {} goes on and is followed again at the next \
                     start",
                    follow.id
                )));
            }
            executor.commands.cancel(&follow.id).await?;
            follow.cancel_sent = true;
            note(format!("cancel requested: scancel {}", follow.id));
        }
        match executor.commands.queued(&follow.id).await {
            Ok(Some(queued)) => say_state(&mut follow, &queued, &note),
            Ok(None) => {
                if let Some(ended) = forward_output(&mut follow, events, cancel) {
                    return Ok(ended);
                }
                match left_the_queue(executor, &mut follow, job_id, &note).await? {
                    Some(ended) => return Ok(ended),
                    // Submitted again: the record names the Slurm job that runs it now.
                    None => {
                        (hooks.on_submitted)(&follow.id);
                        continue;
                    }
                }
            }
            Err(error) => note(format!("squeue did not answer ({error}); trying again")),
        }
        tokio::time::sleep(poll).await;
    }
}

/// The Slurm job this Easel job was submitted as, when Slurm still has it queued or running.
async fn attached(executor: &SlurmExecutor, files: &RunFiles) -> Option<String> {
    let id = files.job_id()?;
    matches!(executor.commands.queued(&id).await, Ok(Some(_))).then_some(id)
}

async fn submit(
    executor: &SlurmExecutor,
    files: &RunFiles,
    job_id: &str,
    note: &impl Fn(String),
) -> Result<String, String> {
    let script = files.path(files::SCRIPT);
    let log = files.path(files::SLURM_LOG);
    let id = executor
        .commands
        .submit(&script, &format!("easel-{job_id}"), &log)
        .await?;
    files
        .save_job_id(&id)
        .map_err(|e| format!("{}: {e}", files.path(files::JOB_ID).display()))?;
    note(format!("submitted to Slurm as job {id}"));
    Ok(id)
}

/// Passes on what the training process wrote since the last look; the run's end when its last
/// message says so (a run stopped without a cancel waits to be run again: see
/// `left_the_queue`).
fn forward_output(
    follow: &mut Follow,
    events: &mpsc::UnboundedSender<EventKind>,
    cancel: &AtomicBool,
) -> Option<Ended> {
    let (lines, next) = follow.files.new_lines(follow.read_up_to);
    let mut ended = None;
    for line in lines {
        let Ok(message) = serde_json::from_str::<FromChild>(&line) else {
            tracing::warn!(line, "unreadable line from a Slurm job's training process");
            continue;
        };
        match message {
            FromChild::Event { event } => {
                if matches!(event, EventKind::Started(_)) {
                    follow.stopped = None;
                }
                let _ = events.send(event);
            }
            FromChild::Cancelled { .. } if !cancel.load(Ordering::SeqCst) => {
                follow.stopped = Some(message);
            }
            other => ended = other.ended(),
        }
    }
    if next != follow.read_up_to {
        follow.read_up_to = next;
        follow.files.save_read_up_to(next);
    }
    ended
}

/// A state worth an event: waiting (with Slurm's reason) or running (on which nodes), each
/// said once.
fn say_state(follow: &mut Follow, queued: &commands::Queued, note: &impl Fn(String)) {
    let said = match queued.state.as_str() {
        // Its last run stopped without a cancel and it is queued again: Slurm requeued it.
        "PENDING" if follow.stopped.is_some() => format!(
            "preempted, requeued: Slurm job {} waits to run again ({}) and resumes from its \
             checkpoint",
            follow.id, queued.reason
        ),
        "PENDING" if queued.reason.is_empty() || queued.reason == "None" => {
            format!("waiting in the Slurm queue as job {}", follow.id)
        }
        "PENDING" => format!(
            "waiting in the Slurm queue as job {}: {}",
            follow.id, queued.reason
        ),
        "RUNNING" => format!("running as Slurm job {} on {}", follow.id, queued.nodes),
        "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" => format!(
            "preempted, requeued: Slurm job {} waits to run again and resumes from its checkpoint",
            follow.id
        ),
        _ => return,
    };
    if said != follow.last_said {
        note(said.clone());
        follow.last_said = said;
    }
}

/// The Slurm job is gone from the queue: its run ended with a message (read already), or it
/// was stopped before its end and is submitted again, or it died, and Slurm says how.
async fn left_the_queue(
    executor: &SlurmExecutor,
    follow: &mut Follow,
    job_id: &str,
    note: &impl Fn(String),
) -> Result<Option<Ended>, String> {
    if let Some(FromChild::Cancelled { completed_epochs }) = follow.stopped.take() {
        let allowed = executor.commands.config().max_resubmits;
        if follow.resubmits >= allowed {
            return Ok(Some(Ended::Failed(format!(
                "Slurm stopped job {} before its end {} times (its time limit, or preemption); \
                 not submitted again (executor.slurm.max_resubmits = {allowed})",
                follow.id,
                follow.resubmits + 1
            ))));
        }
        follow.resubmits += 1;
        note(format!(
            "Slurm job {} stopped after {completed_epochs} epoch(s) before its end (time limit or \
             preemption); submitting it again to resume from its checkpoint",
            follow.id
        ));
        follow.id = submit(executor, &follow.files, job_id, note).await?;
        return Ok(None);
    }
    if follow.cancel_sent {
        return Ok(Some(Ended::Cancelled {
            completed_epochs: 0,
        }));
    }
    let how = executor.commands.ended(&follow.id).await;
    Ok(Some(Ended::Crashed(died(follow, how.as_ref()))))
}

/// Why a Slurm job ended without its training process saying how.
fn died(follow: &Follow, how: Option<&commands::Ended>) -> String {
    let log = follow.files.log_tail(8);
    let said = if log.is_empty() {
        String::new()
    } else {
        format!("; its log ends:\n{log}")
    };
    let Some(how) = how else {
        return format!(
            "Slurm job {} left the queue without a word from its training process{said}",
            follow.id
        );
    };
    let cause = match (how.state.as_str(), how.exit_code.0) {
        (_, process::NODE_CANNOT_READ) => format!(
            "its compute node could not read the job's files under {} (is the worker's data dir \
             on a filesystem the compute nodes mount?)",
            follow.files.dir.display()
        ),
        ("OUT_OF_MEMORY", _) => "it ran out of the memory Slurm gave it (--mem)".to_owned(),
        ("TIMEOUT", _) => "it reached its time limit (executor.slurm.time)".to_owned(),
        ("NODE_FAIL", _) => "its compute node failed".to_owned(),
        ("CANCELLED", _) => "it was cancelled outside Easel (scancel)".to_owned(),
        (state, status) => format!(
            "it ended {state} (exit code {status}, reason {})",
            how.reason
        ),
    };
    format!("Slurm job {} ended: {cause}{said}", follow.id)
}
