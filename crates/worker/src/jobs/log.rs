//! One job's event log: `events.jsonl` (the line format and its crash repair are
//! [`easel_events::EventWriter`]'s) kept in memory too, with a watch channel that tells followers
//! the latest sequence number.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::watch;

use easel_events::{EventKind, EventRecord, EventWriter};

use crate::error::{Error, Result};

pub struct EventLog {
    path: PathBuf,
    state: Mutex<Logged>,
    latest: watch::Sender<u64>,
}

struct Logged {
    writer: EventWriter,
    events: Vec<EventRecord>,
}

impl EventLog {
    /// Opens (or starts) the log at `path`, reading what is there.
    pub fn open(path: PathBuf) -> Result<EventLog> {
        let (writer, events) = EventWriter::open(path.clone()).map_err(|e| Error::io(&path, e))?;
        let last = writer.last_sequence();
        Ok(EventLog {
            path,
            state: Mutex::new(Logged { writer, events }),
            latest: watch::channel(last).0,
        })
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
        state.events.push(record.clone());
        drop(state);
        self.latest.send_replace(record.sequence);
        Ok(record)
    }

    /// Events with sequence > `after`.
    pub fn after(&self, after: u64) -> Vec<EventRecord> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let start = state.events.partition_point(|e| e.sequence <= after);
        state.events[start..].to_vec()
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
}
