//! A parsed TOML document that remembers where every key and value sits in the original text,
//! so any problem can be reported at the line and column where the user wrote it.

use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Key(String),
    Index(usize),
}

/// `train.epochs`, `model.head[2]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct KeyPath(pub Vec<Segment>);

impl KeyPath {
    /// Reads the dotted form written by `Display` (keys are plain identifiers in Easel's schemas).
    pub fn parse(text: &str) -> KeyPath {
        let mut segments = Vec::new();
        for part in text.split('.').filter(|part| !part.is_empty()) {
            let mut pieces = part.split('[');
            if let Some(key) = pieces.next().filter(|key| !key.is_empty()) {
                segments.push(Segment::Key(key.to_string()));
            }
            for index in pieces {
                if let Ok(index) = index.trim_end_matches(']').parse() {
                    segments.push(Segment::Index(index));
                }
            }
        }
        KeyPath(segments)
    }

    /// The keys before the first array index: what has to go to drop the value at this path.
    fn table_keys(&self) -> Vec<&str> {
        self.0
            .iter()
            .map_while(|segment| match segment {
                Segment::Key(key) => Some(key.as_str()),
                Segment::Index(_) => None,
            })
            .collect()
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) => {
                    if position > 0 {
                        f.write_str(".")?;
                    }
                    let bare = !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                    if bare {
                        f.write_str(key)?
                    } else {
                        write!(f, "{key:?}")?
                    }
                }
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// Whether `path` is `outer` or lies inside it (`model.head[1]` is inside `model.head`).
pub(crate) fn path_within(path: &str, outer: &str) -> bool {
    path == outer
        || outer.is_empty()
        || path
            .strip_prefix(outer)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

pub(crate) struct Document<'i> {
    line_starts: Vec<usize>,
    text: &'i str,
    pub root: Spanned<DeTable<'i>>,
}

impl<'i> Document<'i> {
    pub fn new(text: &'i str, root: Spanned<DeTable<'i>>) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(at, _)| at + 1))
            .collect();
        Document {
            line_starts,
            text,
            root,
        }
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn position(&self, offset: usize) -> crate::Position {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset);
        let line_start = self.line_starts[line - 1];
        let column = self
            .text
            .get(line_start..offset)
            .map_or(offset - line_start, |s| s.chars().count());
        crate::Position {
            line,
            column: column + 1,
        }
    }

    /// Where the value at `path` was written; for a key the file does not contain, where its
    /// closest written parent table was (`None` when not even that is in the file).
    pub fn locate(&self, path: &str) -> Option<usize> {
        let path = KeyPath::parse(path);
        let mut value: &Spanned<DeValue> = &Spanned::new(0..0, DeValue::Boolean(false));
        let mut table = Some(self.root.get_ref());
        let mut found: Option<usize> = None;
        for segment in &path.0 {
            let next = match (segment, table, value.get_ref()) {
                (Segment::Key(key), Some(table), _) => {
                    table.get_key_value(key.as_str()).map(|(k, v)| {
                        // A table written as a `[header]` has its own span; point at the key otherwise.
                        let at = if v.get_ref().is_table() {
                            k.span().start
                        } else {
                            v.span().start
                        };
                        (at, v)
                    })
                }
                (Segment::Index(index), None, DeValue::Array(items)) => {
                    items.get(*index).map(|item| (item.span().start, item))
                }
                _ => None,
            };
            let Some((at, next)) = next else { break };
            found = Some(at);
            value = next;
            table = next.get_ref().as_table();
        }
        found
    }

    /// The deepest key or value whose span covers `offset`.
    pub fn path_at(&self, offset: usize) -> Option<KeyPath> {
        let mut best: Option<KeyPath> = None;
        let mut prefix = Vec::new();
        search_table(self.root.get_ref(), offset, &mut prefix, &mut best);
        best
    }

    /// The table written exactly over `span` (`Some(empty path)` for the document itself): serde
    /// reports a missing key on the table that lacks it.
    pub fn table_spanning(&self, span: &Range<usize>) -> Option<KeyPath> {
        fn search(
            table: &DeTable,
            span: &Range<usize>,
            prefix: &mut Vec<Segment>,
        ) -> Option<KeyPath> {
            for (key, value) in table.iter() {
                if let DeValue::Table(inner) = value.get_ref() {
                    prefix.push(Segment::Key(key.get_ref().to_string()));
                    if value.span() == *span {
                        return Some(KeyPath(prefix.clone()));
                    }
                    let found = search(inner, span, prefix);
                    prefix.pop();
                    if found.is_some() {
                        return found;
                    }
                }
            }
            None
        }
        if self.root.span() == *span {
            return Some(KeyPath::default());
        }
        search(self.root.get_ref(), span, &mut Vec::new())
    }

    /// Drops the value at `path` (the whole array when the path points inside one) so the rest
    /// of the document can be read. Returns whether anything was removed.
    pub fn remove(&mut self, path: &KeyPath) -> bool {
        let keys = path.table_keys();
        let Some((last, parents)) = keys.split_last() else {
            return false;
        };
        let mut table = self.root.get_mut();
        for key in parents {
            match table.get_mut(*key).map(|value| value.get_mut()) {
                Some(DeValue::Table(inner)) => table = inner,
                _ => return false,
            }
        }
        table.remove(*last).is_some()
    }
}

fn covers(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && (offset < span.end || span.start == span.end)
}

fn consider(prefix: &[Segment], best: &mut Option<KeyPath>) {
    if best
        .as_ref()
        .is_none_or(|path| prefix.len() >= path.0.len())
    {
        *best = Some(KeyPath(prefix.to_vec()));
    }
}

fn search_table(
    table: &DeTable,
    offset: usize,
    prefix: &mut Vec<Segment>,
    best: &mut Option<KeyPath>,
) {
    for (key, value) in table.iter() {
        prefix.push(Segment::Key(key.get_ref().to_string()));
        if covers(&key.span(), offset) {
            consider(prefix, best);
        }
        search_value(value, offset, prefix, best);
        prefix.pop();
    }
}

fn search_value(
    value: &Spanned<DeValue>,
    offset: usize,
    prefix: &mut Vec<Segment>,
    best: &mut Option<KeyPath>,
) {
    if covers(&value.span(), offset) {
        consider(prefix, best);
    }
    match value.get_ref() {
        DeValue::Table(table) => search_table(table, offset, prefix, best),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                prefix.push(Segment::Index(index));
                search_value(item, offset, prefix, best);
                prefix.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_round_trip_through_text() {
        for text in ["train.epochs", "model.head[2]", "a.b[0][1].c"] {
            assert_eq!(KeyPath::parse(text).to_string(), text);
        }
    }

    #[test]
    fn overlap_respects_segment_boundaries() {
        assert!(path_within("data.path", "data"));
        assert!(path_within("model.head[1]", "model.head"));
        assert!(path_within("model.head", "model.head"));
        assert!(!path_within("data", "data.path"));
        assert!(!path_within("train.epochs", "train.epoch"));
        assert!(!path_within("data.paths", "data.path"));
    }

    #[test]
    fn positions_are_one_based_in_characters() {
        let text = "a = 1\n# é\n\"bé\" = 2\n";
        let (root, errors) = DeTable::parse_recoverable(text);
        assert!(errors.is_empty());
        let document = Document::new(text, root);
        let value_at = document.locate("bé").unwrap();
        assert_eq!(
            document.position(value_at),
            crate::Position { line: 3, column: 8 }
        );
        assert_eq!(document.position(0), crate::Position { line: 1, column: 1 });
    }
}
