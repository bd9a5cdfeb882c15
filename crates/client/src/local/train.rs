//! `client train --local experiment.toml --out DIR`: the whole training on this machine, with the
//! same run directory a worker writes (plus `events.jsonl` in the worker's line format, shown as
//! `client watch` shows a worker's job). Ctrl-C stops at the next step and
//! keeps the last checkpoint; running the same command again resumes from it.

use super::device::parse_device;
use crate::render::{EventView, Output};
use crate::spec_data::scan_spec_data;
use anyhow::Context;
use easel_engine::{DeviceChoice, TrainJob, TrainOutcome};
use easel_events::{EventKind, EventWriter, Outcome};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// Train here, on this machine (the only mode of `train`; `submit` sends a run to a worker).
    #[arg(long, required = true)]
    pub local: bool,
    /// The experiment spec (experiment.toml).
    pub spec: PathBuf,
    /// Run directory for weights, metrics, plots and the checkpoint (resumed when present).
    #[arg(long)]
    pub out: PathBuf,
    /// cpu, cuda, cuda:N or auto (CUDA when available).
    #[arg(long, default_value = "auto", value_parser = parse_device)]
    pub device: DeviceChoice,
    /// Folder for the decoded-image cache and shared frozen-backbone features (default:
    /// $EASEL_CACHE/decoded or ~/.cache/easel/decoded).
    #[arg(long, conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Decode the images every run instead of caching them.
    #[arg(long)]
    pub no_cache: bool,
}

/// Events go here as JSON lines, appended across resumptions.
pub const EVENTS_FILE: &str = easel_spec::outputs::EVENTS;

pub fn run(args: TrainArgs) -> anyhow::Result<ExitCode> {
    let spec = match easel_spec::load_experiment(&args.spec) {
        Ok(spec) => spec,
        Err(errors) => {
            eprintln!("{errors}");
            anyhow::bail!(
                "{} has {} problem(s); `client validate` checks it",
                args.spec.display(),
                errors.len()
            );
        }
    };
    let scan = scan_spec_data(&spec)?;
    for warning in scan.warnings() {
        eprintln!("warning: {warning}");
    }
    let errors = scan.errors();
    if !errors.is_empty() {
        anyhow::bail!(
            "the dataset cannot be trained on:\n  {}",
            errors.join("\n  ")
        );
    }

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let events_path = args.out.join(EVENTS_FILE);
    // The worker's line format: sequence numbers go on across resumptions.
    let (mut events, _) = EventWriter::open(events_path.clone())
        .with_context(|| format!("cannot open {}", events_path.display()))?;
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(default_cache_dir)
    };

    let cancel = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(Arc::clone(&cancel));

    let mut view = EventView::new(Output::Stderr);
    let mut write_error: Option<std::io::Error> = None;
    let mut log = |events: &mut EventWriter, kind: EventKind| {
        if write_error.is_none()
            && let Err(error) = events.append(kind)
        {
            write_error = Some(error);
        }
    };
    let job = TrainJob {
        spec: &spec,
        manifest: &scan.manifest,
        source: scan.source(),
        device: args.device,
        run_dir: &args.out,
        cache_dir: cache_dir.as_deref(),
        owner: "",
        price_per_hour: None,
        cancel: &cancel,
    };
    let outcome = easel_engine::train(&job, &mut |event| {
        view.show(&event);
        log(&mut events, event);
    });
    view.clear();
    let finished = match &outcome {
        Ok(TrainOutcome::Completed(report)) => EventKind::Finished {
            outcome: Outcome::Succeeded,
            reason: String::new(),
            report: Some(Box::new(report.clone())),
        },
        Ok(TrainOutcome::Cancelled { completed_epochs }) => EventKind::Finished {
            outcome: Outcome::Cancelled,
            reason: format!("cancelled by request after {completed_epochs} epoch(s)"),
            report: None,
        },
        Err(error) => EventKind::Finished {
            outcome: Outcome::Failed,
            reason: format!("training failed: {error}"),
            report: None,
        },
    };
    log(&mut events, finished);
    if let Some(error) = write_error {
        return Err(error).with_context(|| format!("cannot write {}", events_path.display()));
    }

    match outcome.context("training failed")? {
        TrainOutcome::Completed(report) => {
            let test = match (report.test_accuracy, report.test_loss) {
                (Some(accuracy), Some(loss)) => {
                    format!(", test accuracy {:.2}% (loss {loss:.4})", accuracy * 100.0)
                }
                _ => String::new(),
            };
            println!(
                "done: {} epochs on {} in {:.0} s; best validation accuracy {:.2}% at epoch {}{test}{}",
                report.epochs_run,
                report.device,
                report.seconds,
                report.best_validation_accuracy * 100.0,
                report.best_epoch,
                if report.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                }
            );
            println!("run directory: {}", args.out.display());
            Ok(ExitCode::SUCCESS)
        }
        TrainOutcome::Cancelled { completed_epochs } => {
            eprintln!(
                "stopped after {completed_epochs} complete epoch(s); run the same command again to resume from {}",
                args.out.join(easel_spec::outputs::CHECKPOINT).display()
            );
            // 130: the conventional status of a program ended by Ctrl-C.
            Ok(ExitCode::from(130))
        }
    }
}

/// The decoded-image cache shared by every local run (outside any run directory).
fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("EASEL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|dir| Path::new(&dir).join("easel")))
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/easel")))?;
    Some(base.join("decoded"))
}

/// First Ctrl-C: stop at the next step (the checkpoint of the last finished epoch stays).
/// Second: leave at once.
fn stop_on_ctrl_c(cancel: Arc<AtomicBool>) {
    let spawned = std::thread::Builder::new()
        .name("ctrl-c".into())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if tokio::signal::ctrl_c().await.is_err() {
                    return;
                }
                cancel.store(true, Ordering::SeqCst);
                eprintln!("\nstopping at the next step (Ctrl-C again to quit at once)");
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            });
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "ctrl-c handler not installed");
    }
}
