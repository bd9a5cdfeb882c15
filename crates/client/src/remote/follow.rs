//! Following a job's events: a live epoch table (or JSON lines), the last seen sequence
//! remembered so `client watch` re-attaches where it left off, Ctrl-C detaches.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use easel_proto::v1 as pb;
use tokio_stream::StreamExt;

use super::connection::{Client, explain};

/// How following ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    Finished {
        outcome: String,
        reason: String,
    },
    Detached,
    /// The stream ended without a final event (the worker stopped).
    Disconnected,
}

/// `~/.cache/easel/watch/<job>`: the last sequence this machine has shown for the job.
fn cursor_path(job: &str) -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("easel").join("watch").join(job))
}

pub fn saved_cursor(job: &str) -> u64 {
    cursor_path(job)
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn save_cursor(job: &str, sequence: u64) {
    if let Some(path) = cursor_path(job) {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(path, sequence.to_string());
    }
}

pub async fn follow(
    client: &mut Client,
    job: &str,
    from_sequence: u64,
    json: bool,
) -> anyhow::Result<Followed> {
    let mut stream = client
        .watch(pb::WatchRequest {
            job_id: job.to_owned(),
            from_sequence,
        })
        .await
        .map_err(explain)?
        .into_inner();
    let mut view = View::new(json);
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        tokio::select! {
            _ = &mut ctrl_c => {
                view.clear();
                eprintln!("detached; the job keeps running. Re-attach with: client watch {job}");
                return Ok(Followed::Detached);
            }
            next = stream.next() => {
                let Some(event) = next else {
                    view.clear();
                    return Ok(Followed::Disconnected);
                };
                let event = event.map_err(explain).context("the event stream broke")?;
                save_cursor(job, event.sequence);
                if let Some(done) = view.show(&event) {
                    return Ok(done);
                }
            }
        }
    }
}

struct View {
    json: bool,
    bar: Option<indicatif::ProgressBar>,
    header_shown: bool,
}

impl View {
    fn new(json: bool) -> Self {
        View {
            json,
            bar: None,
            header_shown: false,
        }
    }

    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }

    /// Prints above the progress bar; a hidden bar (output not a terminal) would swallow it.
    fn println(&self, line: String) {
        match &self.bar {
            Some(bar) if !bar.is_hidden() => bar.println(line),
            _ => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
            }
        }
    }

    fn show(&mut self, event: &pb::JobEvent) -> Option<Followed> {
        use pb::job_event::Kind;
        if self.json {
            println!("{}", super::json::event(event));
        }
        let kind = event.kind.as_ref()?;
        // An interruption is not the end: the job is queued again on the worker.
        let finished = match kind {
            Kind::Finished(f) if f.outcome != pb::Outcome::Interrupted as i32 => {
                Some(Followed::Finished {
                    outcome: super::json::outcome_name(f.outcome).to_owned(),
                    reason: f.reason.clone(),
                })
            }
            _ => None,
        };
        if self.json {
            return finished;
        }
        match kind {
            Kind::Queued(q) => self.println(format!("queued ({} job(s) ahead)", q.position)),
            Kind::Started(s) => {
                let resumed = if s.start_epoch > 1 {
                    format!(", resuming at epoch {}", s.start_epoch)
                } else {
                    String::new()
                };
                self.println(format!(
                    "training on {}: {} train / {} validation / {} test images, {} classes, {} parameters, {} epochs{resumed}",
                    s.device, s.train_images, s.validation_images, s.test_images, s.classes.len(), s.parameters, s.epochs
                ));
            }
            Kind::Step(s) => {
                let bar = self.bar.get_or_insert_with(|| {
                    let bar = indicatif::ProgressBar::new(s.steps_per_epoch);
                    bar.set_style(
                        indicatif::ProgressStyle::with_template(
                            "epoch {prefix} {bar:30} {pos}/{len} {msg}",
                        )
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                    );
                    bar
                });
                bar.set_length(s.steps_per_epoch);
                bar.set_prefix(s.epoch.to_string());
                bar.set_position(s.step);
                bar.set_message(format!(
                    "loss {:.4}  {:.0} img/s",
                    s.loss, s.images_per_second
                ));
            }
            Kind::Epoch(e) => {
                if !self.header_shown {
                    self.header_shown = true;
                    self.println(format!(
                        "{:>5}  {:>10}  {:>9}  {:>8}  {:>7}  {:>8}  {:>7}",
                        "epoch",
                        "train loss",
                        "train acc",
                        "val loss",
                        "val acc",
                        "img/s",
                        "seconds"
                    ));
                }
                self.println(format!(
                    "{:>5}  {:>10.4}  {:>8.2}%  {:>8.4}  {:>6.2}%  {:>8.0}  {:>7.1}",
                    e.epoch,
                    e.train_loss,
                    e.train_accuracy * 100.0,
                    e.validation_loss,
                    e.validation_accuracy * 100.0,
                    e.images_per_second,
                    e.seconds
                ));
            }
            Kind::ArtifactRetry(a) => self.println(format!(
                "storing {} failed (attempt {}), retrying: {}",
                a.name, a.attempt, a.error
            )),
            Kind::Note(n) => self.println(format!("note: {}", n.message)),
            Kind::Finished(f) => {
                self.clear();
                let outcome = super::json::outcome_name(f.outcome);
                if f.reason.is_empty() {
                    println!("job {outcome}");
                } else {
                    println!("job {outcome}: {}", f.reason);
                }
                if let Ok(report) = serde_json::from_str::<serde_json::Value>(&f.report_json) {
                    let best = report
                        .get("best_validation_accuracy")
                        .and_then(|v| v.as_f64());
                    let test = report.get("test_accuracy").and_then(|v| v.as_f64());
                    if let Some(best) = best {
                        println!("best validation accuracy {:.2}%", best * 100.0);
                    }
                    if let Some(test) = test {
                        println!("test accuracy {:.2}%", test * 100.0);
                    }
                }
            }
            Kind::CheckpointWritten(_) | Kind::ArtifactWritten(_) | Kind::ArtifactStored(_) => {}
        }
        finished
    }
}
