//! `events.jsonl`: one [`EventRecord`] per line, appended. A crash mid-append leaves a torn last
//! line; reading cuts it off, so the next append starts on a clean line and sequence numbers go
//! on from the last whole event. No fsync per line: an event lost at power failure is one line
//! of progress, and the job's state lives elsewhere. A job's `finished` event, which says how it
//! ended, is flushed to disk.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{EventKind, EventRecord, now};

/// What reading a log found that is not an event: damage the worker did not write (bytes that
/// are not UTF-8, lines that are not events) and a torn last line (a crash or a full disk
/// mid-append).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogDamage {
    /// Whole lines that hold no event, 1-based, with why (at most `KEPT_DAMAGED_LINES`).
    pub unreadable_lines: Vec<(usize, String)>,
    /// How many whole lines hold no event.
    pub unreadable_count: usize,
    /// Bytes after the last newline (cut off the file when it is opened for appending).
    pub torn_tail_bytes: usize,
}

/// Damaged lines named one by one; past that, only counted.
const KEPT_DAMAGED_LINES: usize = 8;

impl LogDamage {
    /// Lines that are no events: something other than an append wrote the file.
    pub fn has_unreadable_lines(&self) -> bool {
        self.unreadable_count > 0
    }

    /// "line 12: invalid UTF-8; line 40: …", for a job's reason.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .unreadable_lines
            .iter()
            .map(|(line, why)| format!("line {line}: {why}"))
            .collect();
        if self.unreadable_count > self.unreadable_lines.len() {
            parts.push(format!(
                "{} more unreadable lines",
                self.unreadable_count - self.unreadable_lines.len()
            ));
        }
        if self.torn_tail_bytes > 0 {
            parts.push(format!(
                "a torn last line of {} bytes",
                self.torn_tail_bytes
            ));
        }
        parts.join("; ")
    }
}

/// A log's events and what else it held.
#[derive(Debug, Default)]
pub struct LogContents {
    pub events: Vec<EventRecord>,
    pub damage: LogDamage,
}

/// Reads the log at `path` (empty when there is none), cutting a torn last line off the file.
/// Lines that do not parse are skipped and logged.
pub fn read_log(path: &Path) -> io::Result<Vec<EventRecord>> {
    Ok(read_and_cut(path)?.0.events)
}

/// The log's contents, and whether a torn last line is still in the file (it could not be cut).
fn read_and_cut(path: &Path) -> io::Result<(LogContents, bool)> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok((LogContents::default(), false));
    };
    let contents = parse_log(path, &bytes);
    if contents.damage.torn_tail_bytes == 0 {
        return Ok((contents, false));
    }
    let keep = bytes.len() - contents.damage.torn_tail_bytes;
    let cut = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|file| file.set_len(keep as u64));
    if let Err(error) = &cut {
        tracing::warn!(file = %path.display(), %error, "torn last line not cut off");
    }
    Ok((contents, cut.is_err()))
}

/// The events of a log another thread may be appending to: whole lines only, the file untouched.
pub fn read_appended_log(path: &Path) -> io::Result<Vec<EventRecord>> {
    Ok(read_bytes(path)?.map_or_else(Vec::new, |bytes| parse_log(path, &bytes).events))
}

fn read_bytes(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every whole line's event; a line that is none is skipped, logged and counted, and bytes
/// after the last newline are a torn line, counted.
fn parse_log(path: &Path, bytes: &[u8]) -> LogContents {
    let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut contents = LogContents {
        damage: LogDamage {
            torn_tail_bytes: bytes.len() - whole,
            ..LogDamage::default()
        },
        ..LogContents::default()
    };
    for (index, line) in bytes[..whole].split(|&b| b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Ok(event) => contents.events.push(event),
            Err(why) => {
                tracing::warn!(file = %path.display(), line = index + 1, why, "event line skipped");
                let damage = &mut contents.damage;
                damage.unreadable_count += 1;
                if damage.unreadable_lines.len() < KEPT_DAMAGED_LINES {
                    damage.unreadable_lines.push((index + 1, why));
                }
            }
        }
    }
    contents
}

/// The start of every line the writer writes (`EventRecord`'s first field).
const EVENT_START: &[u8] = b"{\"sequence\":";

/// One line's event. A line that holds a torn write and then a whole event (an append after a
/// failed one that nothing cut off) yields that event.
fn parse_line(line: &[u8]) -> Result<EventRecord, String> {
    let why = match std::str::from_utf8(line) {
        Err(_) => "invalid UTF-8".to_string(),
        Ok(text) => match serde_json::from_str(text) {
            Ok(event) => return Ok(event),
            Err(error) => format!("not an event ({error})"),
        },
    };
    let last_start = line
        .windows(EVENT_START.len())
        .rposition(|window| window == EVENT_START)
        .filter(|&start| start > 0);
    last_start
        .and_then(|start| std::str::from_utf8(&line[start..]).ok())
        .and_then(|text| serde_json::from_str(text).ok())
        .ok_or(why)
}

/// Appends events to one log, numbering them after the last one already there.
pub struct EventWriter {
    path: PathBuf,
    last_sequence: u64,
    /// An append failed part-way (a full disk): the file may end in a torn line, so the next
    /// append starts on a line of its own.
    may_be_torn: bool,
}

impl EventWriter {
    /// Opens (or starts) the log at `path`; returns what it already holds.
    pub fn open(path: PathBuf) -> io::Result<(EventWriter, Vec<EventRecord>)> {
        let (writer, contents) = EventWriter::open_and_check(path)?;
        Ok((writer, contents.events))
    }

    /// Like [`EventWriter::open`], with what the log held besides its events.
    pub fn open_and_check(path: PathBuf) -> io::Result<(EventWriter, LogContents)> {
        let (contents, torn_tail_left) = read_and_cut(&path)?;
        let last_sequence = contents
            .events
            .iter()
            .map(|e| e.sequence)
            .max()
            .unwrap_or(0);
        Ok((
            EventWriter {
                path,
                last_sequence,
                may_be_torn: torn_tail_left,
            },
            contents,
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
        if self.may_be_torn {
            line.insert(0, '\n');
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if let Err(error) = file.write_all(line.as_bytes()) {
            self.may_be_torn = true;
            return Err(error);
        }
        self.may_be_torn = false;
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

    #[test]
    fn invalid_bytes_and_lines_that_are_no_events_cost_only_themselves() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (mut writer, _) = EventWriter::open(path.clone()).unwrap();
        writer.append(note("first")).unwrap();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"\xc3\x28 not text\n{\"half\": \n").unwrap();
        drop(file);
        writer.append(note("after the damage")).unwrap();
        // One byte of a two-byte character, as a torn write or a stray append leaves it.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"\xc3").unwrap();
        drop(file);

        let (mut writer, contents) = EventWriter::open_and_check(path.clone()).unwrap();
        let messages: Vec<String> = contents
            .events
            .iter()
            .map(|e| match &e.kind {
                EventKind::Note { message } => message.clone(),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(messages, ["first", "after the damage"]);
        assert_eq!(contents.damage.unreadable_count, 2);
        assert_eq!(contents.damage.torn_tail_bytes, 1);
        let described = contents.damage.describe();
        assert!(
            described.starts_with("line 2: invalid UTF-8; line 3: not an event (")
                && described.ends_with("; a torn last line of 1 bytes"),
            "{described}"
        );
        assert_eq!(writer.append(note("again")).unwrap().sequence, 3);
        assert_eq!(read_appended_log(&path).unwrap().len(), 3);
    }

    #[test]
    fn an_event_appended_after_a_torn_line_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        let (mut writer, _) = EventWriter::open(path.clone()).unwrap();
        writer.append(note("first")).unwrap();
        // A full disk cut an append short, and the next append went on right behind it.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"{\"sequence\":2,\"ti").unwrap();
        let whole = EventRecord {
            sequence: 2,
            time: now(),
            kind: note("written after the torn one"),
        };
        writeln!(file, "{}", serde_json::to_string(&whole).unwrap()).unwrap();
        drop(file);

        let events = read_appended_log(&path).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1], whole);
        let (writer, contents) = EventWriter::open_and_check(path).unwrap();
        assert_eq!(writer.last_sequence(), 2);
        assert!(!contents.damage.has_unreadable_lines());
    }
}
