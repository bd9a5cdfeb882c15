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

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use easel_dataset::{BlobStoreSource, ImageSource, LocalSource, Manifest};
use easel_engine::{DeviceChoice, TrainJob, TrainOutcome};
use easel_events::EventKind;
use easel_spec::worker::DeviceName;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::sandbox::{Confinement, child_environment};
use super::submission::parse_spec;

/// The subcommand of the worker binary that trains one job.
pub const CHILD_COMMAND: &str = "train-job";

/// Lines of a crashed training's stderr kept for the job's reason.
const STDERR_TAIL_LINES: usize = 5;

/// How long a training process may take to exit once its run has ended.
const EXIT_GRACE: Duration = Duration::from_secs(30);

/// How often the supervisor passes a cancel on.
const CANCEL_POLL: Duration = Duration::from_millis(100);

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
}

/// Everything a run needs, in a form another process can read.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainRequest {
    /// The resolved spec (uploaded weights already replaced by their blob's path).
    pub spec_toml: String,
    pub manifest_path: PathBuf,
    pub images: ImagesAt,
    pub device: String,
    pub run_dir: PathBuf,
    pub cache_dir: PathBuf,
    /// What the training process may reach (a thread of the worker is not confined).
    pub sandbox: Confinement,
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
    Completed(serde_json::Value),
    Cancelled {
        completed_epochs: u32,
    },
    /// The engine refused or failed, saying why.
    Failed(String),
    /// The training process or thread itself died (what happened, for the reason).
    Crashed(String),
}

/// One line of the child's stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum FromChild {
    Event { event: EventKind },
    Completed { report: serde_json::Value },
    Cancelled { completed_epochs: u32 },
    Failed { error: String },
}

impl FromChild {
    fn ended(self) -> Option<Ended> {
        match self {
            FromChild::Event { .. } => None,
            FromChild::Completed { report } => Some(Ended::Completed(report)),
            FromChild::Cancelled { completed_epochs } => {
                Some(Ended::Cancelled { completed_epochs })
            }
            FromChild::Failed { error } => Some(Ended::Failed(error)),
        }
    }
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
        Training::ChildProcess { executable, .. } => {
            let child = start_child(executable)?;
            tokio::spawn(supervise(
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

/// Runs the engine on `request` in this process.
pub fn run_request(
    request: &TrainRequest,
    cancel: &AtomicBool,
    on_event: &mut dyn FnMut(EventKind),
) -> Ended {
    let spec = match parse_spec(&request.spec_toml) {
        Ok(spec) => spec,
        Err(error) => return Ended::Failed(error.to_string()),
    };
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
    let Some(device) = DeviceName::parse(&request.device) else {
        return Ended::Failed(format!("`{}` is not a device", request.device));
    };
    let train_job = TrainJob {
        spec: &spec,
        manifest: &manifest,
        source: source.as_ref(),
        device: DeviceChoice::from(device),
        run_dir: &request.run_dir,
        cache_dir: Some(&request.cache_dir),
        cancel,
    };
    match easel_engine::train(&train_job, on_event) {
        Ok(TrainOutcome::Completed(report)) => {
            Ended::Completed(serde_json::to_value(&report).unwrap_or_default())
        }
        Ok(TrainOutcome::Cancelled { completed_epochs }) => Ended::Cancelled { completed_epochs },
        Err(error) => Ended::Failed(format!("training failed: {error}")),
    }
}

fn read_manifest(path: &Path) -> Result<Manifest, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Manifest::from_json(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn start_child(executable: &Path) -> Result<tokio::process::Child, String> {
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
    command.spawn().map_err(|e| {
        format!(
            "could not start the training process {}: {e}",
            executable.display()
        )
    })
}

/// Feeds the child its request and cancel, passes its events on, and says how it ended.
async fn supervise(
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
    let ended = match sandboxed {
        Ok(()) => run_request(&request, &cancel, &mut |event| {
            send(&FromChild::Event { event })
        }),
        Err(reason) => Ended::Failed(reason),
    };
    send(&match ended {
        Ended::Completed(report) => FromChild::Completed { report },
        Ended::Cancelled { completed_epochs } => FromChild::Cancelled { completed_epochs },
        Ended::Failed(error) | Ended::Crashed(error) => FromChild::Failed { error },
    });
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

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
            spec_toml: String::new(),
            manifest_path: dir.join("manifest.json"),
            images: ImagesAt::Blobs(dir.join("blobs")),
            device: "cpu".into(),
            run_dir: dir.join("run"),
            cache_dir: dir.join("cache"),
            sandbox: Confinement::default(),
        }
    }

    /// Runs `training` to its end: the events it passed on, and how it ended.
    async fn run_child(training: &Training, dir: &Path, cancel: bool) -> (Vec<EventKind>, Ended) {
        let cancel = Arc::new(AtomicBool::new(cancel));
        let Launched { mut events, ended } = launch(training, "job", request(dir), cancel).unwrap();
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
        let training = child_script(
            dir.path(),
            r#"printf '%s\n' '{"type":"event","event":{"kind":"note","message":"epoch one"}}'
printf '%s' '{"type":"completed",'
sleep 0.5
printf '%s\n' '"report":{"test_accuracy":0.75}}'"#,
        );
        let (events, ended) = run_child(&training, dir.path(), false).await;
        assert_eq!(
            ended,
            Ended::Completed(serde_json::json!({"test_accuracy": 0.75}))
        );
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
        let classes = 1000;
        let report = serde_json::json!({
            "classes": (0..classes).map(|c| format!("class-{c}")).collect::<Vec<_>>(),
            "confusion": (0..classes)
                .map(|row| (0..classes).map(|col| u64::from(row == col) * 7).collect::<Vec<u64>>())
                .collect::<Vec<_>>(),
        });
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
        assert_eq!(ended, Ended::Completed(report));
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
