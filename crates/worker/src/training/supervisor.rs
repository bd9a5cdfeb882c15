//! The worker's side of a training process: starts it with a cleared environment, feeds it its
//! request and cancel, passes its events on, copies its log, and says how it ended whatever
//! happened to it (a crash, a hang after cancel, a hang on exit).

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use easel_events::EventKind;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::protocol::FromChild;
use super::sandbox::child_environment;
use super::{CHILD_COMMAND, Ended, TrainRequest};

/// Lines of a crashed training's stderr kept for the job's reason.
const STDERR_TAIL_LINES: usize = 5;

/// How long a training process may take to exit once its run has ended.
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// How often the supervisor passes a cancel on.
const CANCEL_POLL: Duration = Duration::from_millis(100);

/// Starts the training process; `visible_gpu` is the one GPU it may see (its `cuda:0`).
pub(super) fn start_child(
    executable: &Path,
    visible_gpu: Option<&str>,
) -> Result<tokio::process::Child, String> {
    let mut command = tokio::process::Command::new(executable);
    command
        .arg(CHILD_COMMAND)
        // Only what training needs: the worker's credentials and tokens stay with the worker.
        .env_clear()
        .envs(child_environment(
            std::env::vars_os(),
            &std::env::temp_dir(),
        ))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // A worker dropping the run (it stops) takes the process with it.
        .kill_on_drop(true);
    // Ctrl-C in the worker's terminal reaches the worker alone, which stops the child at a
    // checkpoint instead of it dying mid-step.
    #[cfg(unix)]
    command.process_group(0);
    if let Some(gpu) = visible_gpu {
        command.env("CUDA_VISIBLE_DEVICES", gpu);
        // Indices in PCI bus order, as nvidia-smi numbers cards, so the process's memory
        // queries name its own card. A worker that was itself given an order, or a list of
        // cards (whose entries mean cards in its own order), keeps its order for the child.
        let told = |name: &str| std::env::var_os(name).is_some();
        if !told("CUDA_DEVICE_ORDER") && !told("CUDA_VISIBLE_DEVICES") {
            command.env("CUDA_DEVICE_ORDER", "PCI_BUS_ID");
        }
    }
    command.spawn().map_err(|e| {
        format!(
            "could not start the training process {}: {e}",
            executable.display()
        )
    })
}

/// Feeds the child its request and cancel, passes its events on, and says how it ended.
pub(super) async fn supervise(
    mut child: tokio::process::Child,
    request: TrainRequest,
    cancel: Arc<AtomicBool>,
    job_id: String,
    events: mpsc::UnboundedSender<EventKind>,
    ended: oneshot::Sender<Ended>,
) {
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = ended.send(Ended::Crashed("started without its pipes".into()));
        return;
    };
    let tail = Arc::new(Mutex::new(VecDeque::new()));
    let forwarding = tokio::spawn(forward_stderr(stderr, tail.clone()));
    let mut line = match serde_json::to_string(&request) {
        Ok(line) => line,
        Err(error) => {
            let _ = child.start_kill();
            let _ = ended.send(Ended::Failed(format!(
                "the run cannot be described: {error}"
            )));
            return;
        }
    };
    line.push('\n');
    if let Err(error) = stdin.write_all(line.as_bytes()).await {
        tracing::warn!(job = %job_id, %error, "the training process did not take its request");
    }
    // The pipe is read by a task of its own and whole lines come through a channel: a read
    // inside `select!` that loses the race to a tick would drop the part of a line it had taken.
    let (lines_tx, mut lines) = mpsc::channel(LINES_IN_FLIGHT);
    let reading = tokio::spawn(read_lines(stdout, lines_tx));
    let followed = follow(&mut lines, &mut stdin, &cancel, &events).await;
    if let Followed::Unresponsive { epochs_done } = &followed {
        tracing::warn!(job = %job_id, grace_seconds = CANCEL_GRACE.as_secs(), "the training process did not stop after cancel; killed");
        let _ = events.send(EventKind::Note {
            message: format!(
                "the training process did not stop within {} s of the cancel; it was killed \
                 after {epochs_done} epoch(s)",
                CANCEL_GRACE.as_secs()
            ),
        });
        let _ = child.start_kill();
    }
    // Whatever it writes after its final message still goes to the log, so the pipe never
    // fills and blocks its exit.
    let draining = tokio::spawn(async move {
        while let Some(line) = lines.recv().await {
            log_line(&line);
        }
    });
    // A process that said how its run ended (or stopped talking) gets a while to exit; one that
    // hangs in its teardown (a driver, say) is killed rather than holding the job.
    let status = match tokio::time::timeout(EXIT_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            let _ = child.start_kill();
            child.wait().await
        }
    };
    // A process it started may still hold the pipe open; the run's end does not wait for it.
    if tokio::time::timeout(EXIT_GRACE, reading).await.is_err() {
        tracing::warn!(job = %job_id, "the training process's output stayed open after it exited");
    }
    draining.abort();
    let _ = forwarding.await;
    let ended_as = match followed {
        Followed::Ended(outcome) => outcome,
        Followed::Unresponsive { epochs_done } => Ended::Cancelled {
            completed_epochs: epochs_done,
        },
        Followed::Silent => {
            let tail = tail.lock().expect("stderr tail poisoned");
            Ended::Crashed(describe_end(status, &tail))
        }
    };
    if let Ended::Crashed(reason) = &ended_as {
        tracing::error!(job = %job_id, reason, "the training process died");
    }
    let _ = ended.send(ended_as);
}

/// Lines of the child's stdout read ahead of the supervisor.
const LINES_IN_FLIGHT: usize = 256;

/// How long a training process may take to stop once told to cancel: a step and a checkpoint
/// take far less; longer means it is stuck (in native code, a driver) and would hold its device.
const CANCEL_GRACE: Duration = Duration::from_secs(60);

/// How following a training process's messages ended.
enum Followed {
    /// It said how its run ended.
    Ended(Ended),
    /// Its stdout closed without a final message: it died.
    Silent,
    /// It was told to cancel and said nothing final within `CANCEL_GRACE`.
    Unresponsive { epochs_done: u32 },
}

/// Passes the child's events on and its cancel in, until it says how its run ended.
async fn follow(
    lines: &mut mpsc::Receiver<String>,
    stdin: &mut tokio::process::ChildStdin,
    cancel: &AtomicBool,
    events: &mpsc::UnboundedSender<EventKind>,
) -> Followed {
    let mut poll = tokio::time::interval(CANCEL_POLL);
    let mut cancel_deadline: Option<tokio::time::Instant> = None;
    let mut epochs_done = 0;
    loop {
        let grace_over = async {
            match cancel_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = lines.recv() => match line {
                Some(line) => match serde_json::from_str::<FromChild>(&line) {
                    Ok(FromChild::Event { event }) => {
                        if let EventKind::Epoch(metrics) = &event {
                            epochs_done = metrics.epoch;
                        }
                        let _ = events.send(event);
                    }
                    Ok(last) => return last.ended().map_or(Followed::Silent, Followed::Ended),
                    // Native code may print to stdout too; it is no message of the run.
                    Err(_) => log_line(&line),
                },
                None => return Followed::Silent,
            },
            _ = poll.tick(), if cancel_deadline.is_none() => {
                if cancel.load(Ordering::SeqCst) {
                    cancel_deadline = Some(tokio::time::Instant::now() + CANCEL_GRACE);
                    let _ = stdin.write_all(b"cancel\n").await;
                }
            }
            () = grace_over => return Followed::Unresponsive { epochs_done },
        }
    }
}

/// Sends each line of `stdout` on until the pipe ends; never stops early, so the child never
/// blocks on a full pipe while it lives.
async fn read_lines(stdout: tokio::process::ChildStdout, lines: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    while let Some(line) = next_line(&mut reader).await {
        if let Err(unsent) = lines.send(line).await {
            log_line(&unsent.0);
        }
    }
}

/// Copies the child's log lines into the worker's, keeping the last few.
async fn forward_stderr(stderr: tokio::process::ChildStderr, tail: Arc<Mutex<VecDeque<String>>>) {
    let mut lines = BufReader::new(stderr);
    while let Some(line) = next_line(&mut lines).await {
        log_line(&line);
        let mut tail = tail.lock().expect("stderr tail poisoned");
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

/// The next line, bytes that are not UTF-8 replaced (native code writes what it likes); `None`
/// at the end or when the pipe fails. Never stops early on odd bytes: a pipe left unread
/// would block the child once it filled.
async fn next_line<R: tokio::io::AsyncBufRead + Unpin>(reader: &mut R) -> Option<String> {
    let mut bytes = Vec::new();
    match reader.read_until(b'\n', &mut bytes).await {
        Ok(0) | Err(_) => None,
        Ok(_) => {
            let line = String::from_utf8_lossy(&bytes);
            Some(line.trim_end_matches(['\n', '\r']).to_owned())
        }
    }
}

/// Copies a line of the child's into the worker's log; a log that cannot be written (a full
/// disk) must not stop the reading.
fn log_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// "was killed by signal 9 (SIGKILL…)", with the last lines it wrote.
fn describe_end(status: std::io::Result<ExitStatus>, tail: &VecDeque<String>) -> String {
    let how = match status {
        Err(error) => format!("could not be waited for: {error}"),
        Ok(status) => describe_status(status),
    };
    let last: Vec<&str> = tail
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect();
    if last.is_empty() {
        format!("the training process {how}")
    } else {
        format!(
            "the training process {how}; its last output: {}",
            last.join(" | ")
        )
    }
}

fn describe_status(status: ExitStatus) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(signal) = status.signal() {
            let name = match signal {
                6 => " (SIGABRT: aborted, often by libtorch)",
                7 => " (SIGBUS)",
                9 => " (SIGKILL: the out-of-memory killer does this when memory runs out)",
                11 => " (SIGSEGV: a crash in native code)",
                15 => " (SIGTERM)",
                _ => "",
            };
            return format!("was killed by signal {signal}{name}");
        }
    }
    match status.code() {
        Some(code) => format!("exited with status {code} before saying how the run ended"),
        None => "ended without a status".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::training::sandbox::Confinement;
    use crate::training::{ImagesAt, Launched, Training, launch};
    use easel_events::RunReport;

    #[test]
    fn a_signal_is_named_with_what_usually_sends_it_and_the_last_output_follows() {
        use std::os::unix::process::ExitStatusExt;
        let tail: VecDeque<String> = ["loading", "", "terminate called after throwing"]
            .into_iter()
            .map(String::from)
            .collect();
        let reason = describe_end(Ok(ExitStatus::from_raw(9)), &tail);
        assert_eq!(
            reason,
            "the training process was killed by signal 9 (SIGKILL: the out-of-memory killer \
             does this when memory runs out); its last output: loading | terminate called after throwing"
        );
        let exited = describe_end(Ok(ExitStatus::from_raw(101 << 8)), &VecDeque::new());
        assert_eq!(
            exited,
            "the training process exited with status 101 before saying how the run ended"
        );
    }

    /// A stand-in for `worker train-job`: a shell script that takes its request and then runs
    /// `body`, the way a training process writes to its pipes.
    fn child_script(dir: &Path, body: &str) -> Training {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("train-job.sh");
        std::fs::write(&path, format!("#!/bin/sh\nread request\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Training::ChildProcess {
            executable: path,
            hidden: Vec::new(),
        }
    }

    fn request(dir: &Path) -> TrainRequest {
        TrainRequest {
            spec: easel_spec::parse_experiment("[data]\npath = \"/images\"\n", "test").unwrap(),
            manifest_path: dir.join("manifest.json"),
            images: ImagesAt::Blobs(dir.join("blobs")),
            device: easel_spec::worker::DeviceName::Cpu,
            run_dir: dir.join("run"),
            cache_dir: dir.join("cache"),
            owner: String::new(),
            sandbox: Confinement::default(),
            price_per_hour: None,
        }
    }

    /// A run's report over `classes` classes, its confusion matrix `classes` x `classes`.
    fn report(classes: usize, test_accuracy: f64) -> RunReport {
        RunReport {
            name: "run".into(),
            classes: (0..classes).map(|c| format!("class-{c}")).collect(),
            device: "cpu".into(),
            epochs_run: 1,
            best_epoch: 1,
            best_validation_accuracy: 0.5,
            final_metrics: easel_events::EpochMetrics {
                epoch: 1,
                train_loss: 0.5,
                train_accuracy: 0.5,
                validation_loss: 0.5,
                validation_accuracy: 0.5,
                per_class_accuracy: vec![1.0; classes],
                confusion: (0..classes)
                    .map(|row| (0..classes).map(|col| u64::from(row == col) * 7).collect())
                    .collect(),
                images_per_second: 1.0,
                learning_rate: 0.01,
                seconds: 1.0,
            },
            test_accuracy: Some(test_accuracy),
            test_loss: Some(0.5),
            stopped_early: false,
            seconds: 1.0,
            dataset_digest: "d".into(),
        }
    }

    /// Runs `training` to its end: the events it passed on, and how it ended.
    async fn run_child(training: &Training, dir: &Path, cancel: bool) -> (Vec<EventKind>, Ended) {
        let cancel = Arc::new(AtomicBool::new(cancel));
        let hooks = super::super::RunHooks {
            interrupted: Arc::default(),
            on_submitted: Box::new(|_| {}),
        };
        let Launched { mut events, ended } =
            launch(training, "job", request(dir), cancel, hooks).unwrap();
        let ended = ended.await.unwrap();
        let mut passed = Vec::new();
        while let Ok(event) = events.try_recv() {
            passed.push(event);
        }
        (passed, ended)
    }

    #[tokio::test]
    async fn a_final_line_written_in_two_pieces_with_a_pause_between_is_read_whole() {
        let dir = tempfile::tempdir().unwrap();
        // The pause outlasts several cancel polls: a read cut off by one would lose the first half.
        let finished = serde_json::to_string(&report(2, 0.75)).unwrap();
        let training = child_script(
            dir.path(),
            &format!(
                r#"printf '%s\n' '{{"type":"event","event":{{"kind":"note","message":"epoch one"}}}}'
printf '%s' '{{"type":"completed",'
sleep 0.5
printf '%s\n' '"report":{finished}}}'"#
            ),
        );
        let (events, ended) = run_child(&training, dir.path(), false).await;
        assert_eq!(ended, Ended::Completed(Box::new(report(2, 0.75))));
        assert_eq!(
            events,
            [EventKind::Note {
                message: "epoch one".into()
            }]
        );
    }

    #[tokio::test]
    async fn a_thousand_class_runs_final_line_arrives_whole_and_later_output_is_drained() {
        let dir = tempfile::tempdir().unwrap();
        // A 1,000-class confusion matrix: a final line of megabytes, many pipe buffers long.
        let report = report(1000, 0.75);
        let final_line = serde_json::json!({"type": "completed", "report": report}).to_string();
        assert!(final_line.len() > 1 << 20, "{}", final_line.len());
        std::fs::write(dir.path().join("final.json"), format!("{final_line}\n")).unwrap();
        // After its final message it writes a megabyte more (native code's noise) and only then
        // exits: unread, that output would fill the pipe and block it.
        let training = child_script(
            dir.path(),
            &format!(
                "cat '{final}'\nhead -c 1000000 /dev/zero | tr '\\0' x\necho\ntouch '{done}'",
                final = dir.path().join("final.json").display(),
                done = dir.path().join("exited-by-itself").display(),
            ),
        );
        let (_, ended) = run_child(&training, dir.path(), false).await;
        assert_eq!(ended, Ended::Completed(Box::new(report)));
        assert!(
            dir.path().join("exited-by-itself").exists(),
            "the process finished writing and exited on its own"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_training_process_that_ignores_cancel_is_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        // Stuck in native code: it reads no cancel line and never ends by itself.
        let training = child_script(dir.path(), "trap '' TERM INT\nwhile :; do sleep 1; done");
        // Paused time runs the grace period out at once. Before the supervisor killed such a
        // process, this never ended: the job held its device for good.
        let (events, ended) = run_child(&training, dir.path(), true).await;
        assert_eq!(
            ended,
            Ended::Cancelled {
                completed_epochs: 0
            }
        );
        assert!(
            events.iter().any(|event| matches!(
                event,
                EventKind::Note { message } if message.contains("did not stop within 60 s")
            )),
            "{events:?}"
        );
    }
}
