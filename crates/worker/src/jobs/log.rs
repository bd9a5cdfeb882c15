//! One job's event log: `events.jsonl` (the line format and its crash repair are
//! [`easel_events::EventWriter`]'s), its newest events kept in memory too, with a watch channel
//! that tells followers the latest sequence number. A long run logs tens of thousands of events
//! and a worker keeps every job it ran, so only the newest few stay in memory; a follower further
//! behind reads the file.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::watch;

use easel_events::{EventKind, EventRecord, EventWriter, LogContents};

/// The newest events of each job kept in memory (what live followers ask for).
const KEPT_IN_MEMORY: usize = 512;

use crate::error::{Error, Result};

pub struct EventLog {
    path: PathBuf,
    state: Mutex<Logged>,
    latest: watch::Sender<u64>,
}

struct Logged {
    writer: EventWriter,
    /// The newest events, in order, at most `KEPT_IN_MEMORY`.
    recent: VecDeque<EventRecord>,
}

impl EventLog {
    /// Opens (or starts) the log at `path`, reading what is there.
    pub fn open(path: PathBuf) -> Result<EventLog> {
        Ok(EventLog::open_checked(path)?.0)
    }

    /// Like [`EventLog::open`], with everything the file held: its events and its damage (its
    /// torn last line is cut off already).
    pub fn open_checked(path: PathBuf) -> Result<(EventLog, LogContents)> {
        let (writer, contents) =
            EventWriter::open_and_check(path.clone()).map_err(|e| Error::io(&path, e))?;
        let last = writer.last_sequence();
        let skipped = contents.events.len().saturating_sub(KEPT_IN_MEMORY);
        let recent = contents.events.iter().skip(skipped).cloned().collect();
        let log = EventLog {
            path,
            state: Mutex::new(Logged { writer, recent }),
            latest: watch::channel(last).0,
        };
        Ok((log, contents))
    }

    /// Moves a damaged file aside (`events.jsonl.damaged`, kept for a person to look at) and
    /// puts its readable `events` (as [`EventLog::open_checked`] found them) back in their
    /// place, so later reads and appends see a clean log. Returns where the damaged file went.
    pub fn set_damage_aside(&self, events: &[EventRecord]) -> Result<PathBuf> {
        let _appending = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut text = String::new();
        for event in events {
            let line = serde_json::to_string(event)
                .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?;
            text.push_str(&line);
            text.push('\n');
        }
        let aside = self.path.with_extension("jsonl.damaged");
        let fresh = self.path.with_extension("jsonl.partial");
        std::fs::write(&fresh, text).map_err(|e| Error::io(&fresh, e))?;
        std::fs::rename(&self.path, &aside).map_err(|e| Error::io(&aside, e))?;
        std::fs::rename(&fresh, &self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(aside)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event with the next sequence number and wakes followers.
    pub fn append(&self, kind: EventKind) -> Result<EventRecord> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let record = state
            .writer
            .append(kind)
            .map_err(|e| Error::io(&self.path, e))?;
        if state.recent.len() == KEPT_IN_MEMORY {
            state.recent.pop_front();
        }
        state.recent.push_back(record.clone());
        drop(state);
        self.latest.send_replace(record.sequence);
        Ok(record)
    }

    /// Events with sequence > `after`: from memory when it still holds them all, else from
    /// the file.
    pub fn after(&self, after: u64) -> Vec<EventRecord> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let in_memory = match state.recent.front() {
            Some(first) => first.sequence <= after.saturating_add(1),
            None => state.writer.last_sequence() <= after,
        };
        if in_memory {
            let start = state.recent.partition_point(|e| e.sequence <= after);
            return state.recent.range(start..).cloned().collect();
        }
        drop(state);
        match easel_events::read_appended_log(&self.path) {
            Ok(events) => events.into_iter().filter(|e| e.sequence > after).collect(),
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "event log unreadable; newest events only");
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                state
                    .recent
                    .iter()
                    .filter(|e| e.sequence > after)
                    .cloned()
                    .collect()
            }
        }
    }

    /// The job is over: memory keeps none of its events, which are read from the file now.
    pub fn settle(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.recent = VecDeque::new();
    }

    pub fn last_sequence(&self) -> u64 {
        *self.latest.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sequences_survive_reopen_and_after_is_exact() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let log = EventLog::open(path.clone()).unwrap();
        for i in 0..5 {
            log.append(EventKind::Note {
                message: format!("n{i}"),
            })
            .unwrap();
        }
        // A torn last line (crash mid-write) is skipped.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq")
            .unwrap();
        let reopened = EventLog::open(path).unwrap();
        assert_eq!(reopened.last_sequence(), 5);
        let after: Vec<u64> = reopened.after(2).iter().map(|e| e.sequence).collect();
        assert_eq!(after, [3, 4, 5]);
        reopened
            .append(EventKind::Note {
                message: "after the crash".into(),
            })
            .unwrap();
        assert_eq!(
            EventLog::open(dir.path().join("events.jsonl"))
                .unwrap()
                .last_sequence(),
            6
        );
    }

    #[test]
    fn only_the_newest_events_stay_in_memory_and_older_ones_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = EventLog::open(dir.path().join("events.jsonl")).unwrap();
        let total = KEPT_IN_MEMORY as u64 * 3;
        for i in 1..=total {
            log.append(EventKind::Note {
                message: format!("n{i}"),
            })
            .unwrap();
        }
        let held = |log: &EventLog| log.state.lock().unwrap().recent.len();
        assert_eq!(held(&log), KEPT_IN_MEMORY);
        for after in [0, 1, total - KEPT_IN_MEMORY as u64 - 1, total - 5, total] {
            let sequences: Vec<u64> = log.after(after).iter().map(|e| e.sequence).collect();
            assert_eq!(
                sequences,
                (after + 1..=total).collect::<Vec<_>>(),
                "after {after}"
            );
        }
        let reopened = EventLog::open(dir.path().join("events.jsonl")).unwrap();
        assert_eq!(held(&reopened), KEPT_IN_MEMORY);
        assert_eq!(reopened.after(0).len() as u64, total);
        // A finished job's log holds nothing in memory and still answers from its file.
        reopened.settle();
        assert_eq!(held(&reopened), 0);
        assert_eq!(reopened.after(total - 2).len(), 2);
        assert!(reopened.after(total).is_empty());
    }
}
