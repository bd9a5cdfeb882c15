//! `events.jsonl`: one [`EventRecord`] per line, appended. A crash mid-append leaves a torn last
//! line; reading cuts it off, so the next append starts on a clean line and sequence numbers go
//! on from the last whole event. No fsync per line: an event lost at power failure is one line
//! of progress, and the job's state lives elsewhere. A job's `finished` event, which says how it
//! ended, is flushed to disk.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{EventKind, EventRecord, now};

/// Reads the log at `path` (empty when there is none), cutting a torn last line off the file.
/// Lines that do not parse are skipped and logged.
pub fn read_log(path: &Path) -> io::Result<Vec<EventRecord>> {
    let Some(text) = read_text(path)? else {
        return Ok(Vec::new());
    };
    if !text.is_empty() && !text.ends_with('\n') {
        let keep = text.rfind('\n').map_or(0, |i| i + 1);
        OpenOptions::new()
            .write(true)
            .open(path)?
            .set_len(keep as u64)?;
    }
    Ok(parse_whole_lines(path, &text))
}

/// The events of a log another thread may be appending to: whole lines only, the file untouched.
pub fn read_appended_log(path: &Path) -> io::Result<Vec<EventRecord>> {
    Ok(read_text(path)?.map_or_else(Vec::new, |text| parse_whole_lines(path, &text)))
}

fn read_text(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_whole_lines(path: &Path, text: &str) -> Vec<EventRecord> {
    let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    let mut events = Vec::new();
    for (number, line) in whole.lines().enumerate() {
        match serde_json::from_str(line) {
            Ok(event) => events.push(event),
            Err(error) => tracing::warn!(
                file = %path.display(),
                line = number + 1,
                %error,
                "event line skipped"
            ),
        }
    }
    events
}

/// Appends events to one log, numbering them after the last one already there.
pub struct EventWriter {
    path: PathBuf,
    last_sequence: u64,
}

impl EventWriter {
    /// Opens (or starts) the log at `path`; returns what it already holds.
    pub fn open(path: PathBuf) -> io::Result<(EventWriter, Vec<EventRecord>)> {
        let events = read_log(&path)?;
        let last_sequence = events.last().map_or(0, |e| e.sequence);
        Ok((
            EventWriter {
                path,
                last_sequence,
            },
            events,
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn last_sequence(&self) -> u64 {
        self.last_sequence
    }

    /// Writes `kind` as the next event. The file is opened per event, so a worker holding the
    /// logs of thousands of jobs holds no file handles for them.
    pub fn append(&mut self, kind: EventKind) -> io::Result<EventRecord> {
        let record = EventRecord {
            sequence: self.last_sequence + 1,
            time: now(),
            kind,
        };
        let mut line = serde_json::to_string(&record).map_err(io::Error::other)?;
        line.push('\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        file.write_all(line.as_bytes())?;
        if matches!(record.kind, EventKind::Finished { .. }) {
            file.sync_data()?;
        }
        self.last_sequence = record.sequence;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(text: &str) -> EventKind {
        EventKind::Note {
            message: text.into(),
        }
    }

    #[test]
    fn sequences_go_on_after_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (mut writer, existing) = EventWriter::open(path.clone()).unwrap();
        assert!(existing.is_empty());
        for i in 0..3 {
            writer.append(note(&format!("n{i}"))).unwrap();
        }
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq")
            .unwrap();
        let (mut writer, existing) = EventWriter::open(path.clone()).unwrap();
        assert_eq!(existing.len(), 3);
        assert_eq!(writer.last_sequence(), 3);
        assert_eq!(writer.append(note("again")).unwrap().sequence, 4);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(
            text.lines()
                .all(|l| serde_json::from_str::<EventRecord>(l).is_ok())
        );
    }
}
