//! Following a job's events: a live epoch table (or JSON lines), the last seen sequence
//! remembered so `client watch` re-attaches where it left off, Ctrl-C detaches.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use easel_proto::v1 as pb;
use tokio_stream::StreamExt;

use super::connection::Connection;
use crate::render::{EventView, Output};
use easel_events::{EventKind, Outcome};
use easel_proto::events::event_record;

/// How following ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed {
    Finished {
        outcome: Outcome,
        reason: String,
    },
    Detached,
    /// The stream ended without a final event (the worker stopped).
    Disconnected,
}

impl Followed {
    /// The exit status of a verb that followed `job` this far, after saying what to do next.
    pub fn exit_code(&self, job: &str) -> ExitCode {
        match self {
            Followed::Finished {
                outcome: Outcome::Succeeded,
                ..
            } => {
                eprintln!("fetch the results with: client fetch {job} --out {job}");
                ExitCode::SUCCESS
            }
            Followed::Finished { .. } => ExitCode::FAILURE,
            Followed::Detached => ExitCode::SUCCESS,
            Followed::Disconnected => {
                eprintln!("the worker closed the event stream; re-attach with: client watch {job}");
                ExitCode::from(2)
            }
        }
    }
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

/// Best effort: without a cursor, the next `watch` only shows events again.
fn save_cursor(job: &str, sequence: u64) {
    let Some(path) = cursor_path(job) else {
        return;
    };
    let saved = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, sequence.to_string()));
    if let Err(error) = saved {
        tracing::debug!(file = %path.display(), %error, "watch cursor not saved");
    }
}

pub async fn follow(
    connection: &mut Connection,
    job: &str,
    from_sequence: u64,
    json: bool,
) -> anyhow::Result<Followed> {
    let mut stream = connection.watch(job, from_sequence).await?;
    let mut view = EventView::new(Output::Stdout);
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
                let event = event.context("the event stream broke")?;
                save_cursor(job, event.sequence);
                if let Some(done) = show(&mut view, json, event) {
                    return Ok(done);
                }
            }
        }
    }
}

/// Prints one event (a JSON line with `json`, else through the shared view) and says whether the
/// job is over.
fn show(view: &mut EventView, json: bool, event: pb::JobEvent) -> Option<Followed> {
    let (sequence, time) = (event.sequence, event.time.clone());
    let Some(record) = event_record(event) else {
        // A kind a newer worker knows and this client does not.
        if json {
            println!(
                "{}",
                serde_json::json!({"sequence": sequence, "time": time, "kind": "unknown"})
            );
        }
        return None;
    };
    if json {
        match serde_json::to_string(&record) {
            Ok(line) => println!("{line}"),
            Err(error) => tracing::warn!(%error, sequence, "event not printable as JSON"),
        }
    } else {
        view.show(&record.kind);
    }
    // An interruption is not the end: the job is queued again on the worker.
    let ends = record.kind.ends_job();
    match record.kind {
        EventKind::Finished {
            outcome, reason, ..
        } if ends => Some(Followed::Finished { outcome, reason }),
        _ => None,
    }
}
