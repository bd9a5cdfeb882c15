//! `client train --local experiment.toml --out DIR`: the whole training on this machine, with the
//! same run directory a worker writes (plus `events.jsonl`). Ctrl-C stops at the next step and
//! keeps the last checkpoint; running the same command again resumes from it.

use super::device::parse_device;
use super::format::count;
use crate::spec_data::scan_spec_data;
use anyhow::Context;
use easel_engine::{DeviceChoice, EpochMetrics, TrainEvent, TrainJob, TrainOutcome};
use indicatif::{ProgressBar, ProgressStyle};
use std::fs::File;
use std::io::{BufWriter, Write};
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
    /// Folder for the decoded-image cache (default: $EASEL_CACHE/decoded or ~/.cache/easel/decoded).
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
    let events_file = File::options()
        .create(true)
        .append(true)
        .open(&events_path)
        .with_context(|| format!("cannot open {}", events_path.display()))?;
    let mut events = BufWriter::new(events_file);
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(default_cache_dir)
    };

    let cancel = Arc::new(AtomicBool::new(false));
    stop_on_ctrl_c(Arc::clone(&cancel));

    let mut progress = Progress::default();
    let mut write_error: Option<std::io::Error> = None;
    let job = TrainJob {
        spec: &spec,
        manifest: &scan.manifest,
        source: scan.source(),
        device: args.device,
        run_dir: &args.out,
        cache_dir: cache_dir.as_deref(),
        cancel: &cancel,
    };
    let outcome = easel_engine::train(&job, &mut |event| {
        if write_error.is_none()
            && let Err(error) = write_event(&mut events, &event)
        {
            write_error = Some(error);
        }
        progress.show(&event);
    });
    progress.finish();
    events
        .flush()
        .with_context(|| format!("cannot write {}", events_path.display()))?;
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

fn write_event(out: &mut impl Write, event: &TrainEvent) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, event)?;
    out.write_all(b"\n")?;
    // Flushed at epoch boundaries so a crash loses at most the steps of one epoch.
    if matches!(
        event,
        TrainEvent::Epoch(_) | TrainEvent::CheckpointWritten { .. }
    ) {
        out.flush()?;
    }
    Ok(())
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

/// A progress bar over all steps of the run, with a line per epoch.
#[derive(Default)]
struct Progress {
    bar: Option<ProgressBar>,
    epochs: u32,
}

impl Progress {
    fn show(&mut self, event: &TrainEvent) {
        match event {
            TrainEvent::Started(info) => {
                let total = info.steps_per_epoch * u64::from(info.epochs);
                let bar = ProgressBar::new(total);
                if let Ok(style) = ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} steps {elapsed_precise} (eta {eta}) {msg}",
                ) {
                    bar.set_style(style.progress_chars("=> "));
                }
                // `start_epoch` is 1-based: the epochs before it are done (a resumed run).
                bar.set_position(
                    info.steps_per_epoch * u64::from(info.start_epoch.saturating_sub(1)),
                );
                bar.set_prefix(format!("epoch {}/{}", info.start_epoch, info.epochs));
                self.epochs = info.epochs;
                // Lines go above the bar from now on, so it is never left half-drawn.
                self.bar = Some(bar);
                self.println(&format!(
                    "training on {}: {} classes, {} train / {} validation / {} test images, {} parameters ({} trainable), {} steps per epoch",
                    info.device,
                    info.classes.len(),
                    count(info.train_images),
                    count(info.validation_images),
                    count(info.test_images),
                    count(info.parameters),
                    count(info.trainable_parameters),
                    count(info.steps_per_epoch)
                ));
            }
            TrainEvent::Step(step) => {
                if let Some(bar) = &self.bar {
                    bar.set_prefix(format!("epoch {}/{}", step.epoch, self.epochs));
                    bar.set_position(
                        u64::from(step.epoch.saturating_sub(1)) * step.steps_per_epoch + step.step,
                    );
                    bar.set_message(format!(
                        "loss {:.4}, {:.0} img/s",
                        step.loss, step.images_per_second
                    ));
                }
            }
            TrainEvent::Epoch(metrics) => {
                if let Some(bar) = &self.bar {
                    bar.set_position(
                        u64::from(metrics.epoch) * bar.length().unwrap_or(0)
                            / u64::from(self.epochs.max(1)),
                    );
                    bar.set_prefix(format!(
                        "epoch {}/{}",
                        (metrics.epoch + 1).min(self.epochs),
                        self.epochs
                    ));
                    bar.set_message(format!(
                        "validation accuracy {:.2}%",
                        metrics.validation_accuracy * 100.0
                    ));
                }
                self.println(&epoch_line(metrics, self.epochs));
            }
            TrainEvent::Note { message } => self.println(message),
            TrainEvent::CheckpointWritten { .. } => {}
            TrainEvent::ArtifactWritten { name, bytes } => {
                tracing::debug!(name, bytes, "artifact written")
            }
        }
    }

    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => eprintln!("{line}"),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

fn epoch_line(metrics: &EpochMetrics, epochs: u32) -> String {
    format!(
        "epoch {}/{epochs}: train loss {:.4} acc {:.2}% | validation loss {:.4} acc {:.2}% | lr {:.2e} | {:.0} img/s, {:.1} s",
        metrics.epoch,
        metrics.train_loss,
        metrics.train_accuracy * 100.0,
        metrics.validation_loss,
        metrics.validation_accuracy * 100.0,
        metrics.learning_rate,
        metrics.images_per_second,
        metrics.seconds
    )
}
