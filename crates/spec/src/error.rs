//! Problems found in a configuration file, each with the key path and the line/column where a
//! person can fix it. Parsing collects all of them instead of stopping at the first.

use std::fmt;

/// A problem found by a `validate()` before positions are known: a dotted key path
/// (`train.epochs`, `model.head[2]`) and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// One problem in one file, ready to show: `configs/x.toml:12:10: train.epochs: must be at least 1, got -3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The file as the user named it (or another label for text that came from elsewhere).
    pub origin: String,
    /// Dotted key path; empty for problems with the file as a whole (syntax, unreadable file).
    pub path: String,
    /// 1-based line and column (in characters); `None` when the key is absent from the file
    /// (e.g. a required table that was never written).
    pub position: Option<Position>,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.origin)?;
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        if !self.path.is_empty() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found in a file, in file order. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecErrors {
    pub errors: Vec<SpecError>,
}

impl SpecErrors {
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, SpecError> {
        self.errors.iter()
    }

    /// A single problem with the file as a whole (e.g. it cannot be read).
    pub fn whole_file(origin: &str, message: impl Into<String>) -> Self {
        SpecErrors {
            errors: vec![SpecError {
                origin: origin.to_string(),
                path: String::new(),
                position: None,
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.errors.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl<'a> IntoIterator for &'a SpecErrors {
    type Item = &'a SpecError;
    type IntoIter = std::slice::Iter<'a, SpecError>;
    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}
