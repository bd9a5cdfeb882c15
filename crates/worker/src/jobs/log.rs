//! One job's event log: appended to `events.jsonl` (fsync'd per line is not needed: a torn last
//! line is skipped on load) and kept in memory, with a watch channel that tells followers the
//! latest sequence number.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tokio::sync::watch;

use super::events::{EventKind, EventRecord};
use crate::error::{Error, Result};

pub struct EventLog {
    path: PathBuf,
    events: Mutex<Vec<EventRecord>>,
    latest: watch::Sender<u64>,
}

impl EventLog {
    /// Opens (or starts) the log at `path`, reading what is there.
    pub fn open(path: PathBuf) -> Result<EventLog> {
        let events: Vec<EventRecord> = match std::fs::read_to_string(&path) {
            Ok(text) => {
                // A crash mid-append leaves a torn last line: cut it so the next append starts clean.
                if !text.is_empty() && !text.ends_with('\n') {
                    let keep = text.rfind('\n').map_or(0, |i| i + 1);
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|e| Error::io(&path, e))?;
                    file.set_len(keep as u64).map_err(|e| Error::io(&path, e))?;
                }
                text.lines()
                    .filter_map(|line| serde_json::from_str(line).ok())
                    .collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let last = events.last().map_or(0, |e| e.sequence);
        Ok(EventLog {
            path,
            events: Mutex::new(events),
            latest: watch::channel(last).0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends an event with the next sequence number and wakes followers.
    pub fn append(&self, kind: EventKind) -> Result<EventRecord> {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let record = EventRecord {
            sequence: events.last().map_or(0, |e| e.sequence) + 1,
            time: super::clock::now(),
            kind,
        };
        let mut line =
            serde_json::to_string(&record).map_err(|e| Error::Internal(e.to_string()))?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))?;
        file.write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))?;
        events.push(record.clone());
        let sequence = record.sequence;
        drop(events);
        self.latest.send_replace(sequence);
        Ok(record)
    }

    /// Events with sequence > `after`.
    pub fn after(&self, after: u64) -> Vec<EventRecord> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let start = events.partition_point(|e| e.sequence <= after);
        events[start..].to_vec()
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
