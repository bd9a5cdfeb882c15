//! Showing a job's events to a person, the same way wherever they come from: the engine here
//! (`train --local`) or a worker (`submit`, `watch`). Lines go above a progress bar for the
//! current epoch; without a terminal there is no bar, only the lines.

use std::io::Write;

use easel_events::{EpochMetrics, EventKind, RunInfo};
use indicatif::{ProgressBar, ProgressStyle};

use crate::format::count;

/// Where the lines go: `watch` prints to stdout (its output is the job's story); `train --local`
/// to stderr (its stdout is the final summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Stdout,
    Stderr,
}

pub struct EventView {
    output: Output,
    bar: Option<ProgressBar>,
    header_shown: bool,
    /// From the `started` event; unknown when following began after it.
    epochs: Option<u32>,
}

impl EventView {
    pub fn new(output: Output) -> Self {
        EventView {
            output,
            bar: None,
            header_shown: false,
            epochs: None,
        }
    }

    pub fn show(&mut self, kind: &EventKind) {
        match kind {
            EventKind::Queued { position } => {
                self.println(&format!("queued ({position} job(s) ahead)"))
            }
            EventKind::Started(info) => {
                self.epochs = Some(info.epochs);
                self.println(&started_line(info));
            }
            EventKind::Step(step) => {
                let epochs = self.epochs;
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = ProgressBar::new(step.steps_per_epoch);
                    if let Ok(style) = ProgressStyle::with_template(
                        "epoch {prefix} [{bar:30}] {pos}/{len} steps (eta {eta}) {msg}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar
                });
                bar.set_length(step.steps_per_epoch);
                bar.set_prefix(match epochs {
                    Some(epochs) => format!("{}/{epochs}", step.epoch),
                    None => step.epoch.to_string(),
                });
                bar.set_position(step.step);
                bar.set_message(format!(
                    "loss {:.4}, {:.0} img/s",
                    step.loss, step.images_per_second
                ));
            }
            EventKind::Epoch(metrics) => {
                if !self.header_shown {
                    self.header_shown = true;
                    self.println(&epoch_header());
                }
                self.println(&epoch_row(metrics));
            }
            EventKind::ArtifactRetry {
                name,
                attempt,
                error,
            } => self.println(&format!(
                "storing {name} failed (attempt {attempt}), retrying: {error}"
            )),
            EventKind::Note { message } => self.println(&format!("note: {message}")),
            EventKind::Finished {
                outcome,
                reason,
                report,
            } => {
                self.clear();
                let outcome = outcome.name();
                if reason.is_empty() {
                    self.println(&format!("job {outcome}"));
                } else {
                    self.println(&format!("job {outcome}: {reason}"));
                }
                if let Some(report) = report {
                    self.println(&format!(
                        "best validation accuracy {:.2}%",
                        report.best_validation_accuracy * 100.0
                    ));
                    if let Some(test) = report.test_accuracy {
                        self.println(&format!("test accuracy {:.2}%", test * 100.0));
                    }
                }
            }
            EventKind::CheckpointWritten { .. }
            | EventKind::ArtifactWritten { .. }
            | EventKind::ArtifactStored { .. } => {}
        }
    }

    /// Removes the progress bar (before the caller prints its own last lines).
    pub fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Prints above the progress bar; a hidden bar (output not a terminal) would swallow it.
    fn println(&self, line: &str) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => {
                let written = match self.output {
                    Output::Stdout => writeln!(std::io::stdout().lock(), "{line}"),
                    Output::Stderr => writeln!(std::io::stderr().lock(), "{line}"),
                };
                if let Err(error) = written {
                    tracing::debug!(%error, "event line not printed");
                }
            }
        }
    }
}

fn started_line(info: &RunInfo) -> String {
    let resumed = if info.start_epoch > 1 {
        format!(", resuming at epoch {}", info.start_epoch)
    } else {
        String::new()
    };
    format!(
        "training on {}: {} train / {} validation / {} test images, {} classes, {} parameters ({} trainable), {} epochs of {} steps{resumed}",
        info.device,
        count(info.train_images),
        count(info.validation_images),
        count(info.test_images),
        info.classes.len(),
        count(info.parameters),
        count(info.trainable_parameters),
        info.epochs,
        count(info.steps_per_epoch),
    )
}

fn epoch_header() -> String {
    format!(
        "{:>5}  {:>10}  {:>9}  {:>8}  {:>7}  {:>8}  {:>8}  {:>7}",
        "epoch", "train loss", "train acc", "val loss", "val acc", "lr", "img/s", "seconds"
    )
}

fn epoch_row(m: &EpochMetrics) -> String {
    format!(
        "{:>5}  {:>10.4}  {:>8.2}%  {:>8.4}  {:>6.2}%  {:>8.2e}  {:>8.0}  {:>7.1}",
        m.epoch,
        m.train_loss,
        m.train_accuracy * 100.0,
        m.validation_loss,
        m.validation_accuracy * 100.0,
        m.learning_rate,
        m.images_per_second,
        m.seconds
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_rows_line_up_under_the_header() {
        let row = epoch_row(&EpochMetrics {
            epoch: 12,
            train_loss: 0.123456,
            train_accuracy: 0.5,
            validation_loss: 1.5,
            validation_accuracy: 0.9876,
            per_class_accuracy: vec![],
            confusion: vec![],
            images_per_second: 3617.4,
            learning_rate: 0.003,
            seconds: 12.34,
        });
        assert_eq!(row.len(), epoch_header().len(), "{row}\n{}", epoch_header());
        assert!(row.contains("98.76%"), "{row}");
        assert!(row.contains("3.00e-3"), "{row}");
    }
}
