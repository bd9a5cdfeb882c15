//! Reading any `deny_unknown_fields` serde type from TOML while collecting every problem at once.
//!
//! serde stops at the first error, so the document is parsed once into spanned tables, then
//! deserialized repeatedly: each failure is recorded with its key path and position, the key it
//! names is dropped, and the rest is read again. What deserializes in the end is checked by the
//! type's [`Validate`] implementation, whose problems get their positions from the same spans.

use crate::document::{Document, path_within};
use crate::error::{Problem, SpecError, SpecErrors};
use crate::messages::humanize;
use serde::de::DeserializeOwned;
use std::path::Path;
use toml::de::DeTable;

/// Semantic checks that types alone cannot express. Returns every problem, not the first.
pub trait Validate {
    fn validate(&self) -> Vec<Problem>;
}

/// A value read from TOML with the problems found so far, able to place further problems
/// (from validation or file checks) at the line where their key was written.
pub struct Parsed<'i, T> {
    origin: String,
    document: Option<Document<'i>>,
    /// Whatever could be read once the offending keys were dropped; `None` after a syntax error.
    pub value: Option<T>,
    errors: Vec<SpecError>,
}

/// Bounds the drop-and-retry loop; a file with more type errors than this is reported in part.
const MAX_DESERIALIZE_ATTEMPTS: usize = 64;

/// Parses `text` (named `origin` in messages) into `T`, collecting syntax errors or every
/// unknown key and wrong type. Does not run validation; see [`Parsed::validated`].
pub fn read_toml<'i, T: DeserializeOwned>(text: &'i str, origin: &str) -> Parsed<'i, T> {
    let (root, syntax_errors) = DeTable::parse_recoverable(text);
    let mut document = Document::new(text, root);
    let mut parsed = Parsed {
        origin: origin.to_string(),
        document: None,
        value: None,
        errors: Vec::new(),
    };
    if !syntax_errors.is_empty() {
        for error in syntax_errors {
            let position = error.span().map(|span| document.position(span.start));
            parsed.errors.push(SpecError {
                origin: parsed.origin.clone(),
                path: String::new(),
                position,
                message: syntax_message(text, &error),
            });
        }
        parsed.document = Some(document);
        return parsed;
    }

    for _ in 0..MAX_DESERIALIZE_ATTEMPTS {
        let attempt = T::deserialize(toml::de::Deserializer::from(document.root.clone()));
        let error = match attempt {
            Ok(value) => {
                parsed.value = Some(value);
                break;
            }
            Err(error) => error,
        };
        let span = error.span();
        let missing_key = error.message().starts_with("missing field ");
        let (path, position) = match &span {
            // serde's span is the table lacking the key: name that table and point at its header.
            Some(span) if missing_key => {
                let table = document.table_spanning(span).unwrap_or_default();
                let at = document.locate(&table.to_string());
                (table, at.map(|offset| document.position(offset)))
            }
            // On the key for an unknown key, on the value for a wrong type.
            Some(span) => (
                document.path_at(span.start).unwrap_or_default(),
                Some(document.position(span.start)),
            ),
            None => (Default::default(), None),
        };
        parsed.errors.push(SpecError {
            origin: parsed.origin.clone(),
            path: path.to_string(),
            position,
            message: humanize(error.message()),
        });
        if missing_key {
            // Nothing to drop makes a missing key appear: this is as far as the value reads.
            break;
        }
        if !document.remove(&path) {
            break;
        }
    }
    parsed.document = Some(document);
    parsed
}

/// The parser's message, naming the key when it is a duplicate.
fn syntax_message(text: &str, error: &toml::de::Error) -> String {
    let key = error
        .span()
        .and_then(|span| text.get(span))
        .filter(|key| !key.is_empty() && key.len() <= 64);
    match (error.message(), key) {
        ("duplicate key", Some(key)) => format!("invalid TOML: duplicate key `{}`", key.trim()),
        (message, _) => format!("invalid TOML: {message}"),
    }
}

impl<'i, T> Parsed<'i, T> {
    /// Where a key path was written, as a ready-to-show error.
    pub fn error_at(&self, problem: Problem) -> SpecError {
        let position = self.document.as_ref().and_then(|document| {
            document
                .locate(&problem.path)
                .map(|offset| document.position(offset))
        });
        SpecError {
            origin: self.origin.clone(),
            path: problem.path,
            position,
            message: problem.message,
        }
    }

    /// Adds problems found after parsing. A problem at or inside a key that already failed to
    /// parse is dropped: it would only describe the default that stood in for the bad value.
    /// (A problem about a whole table, like "no dataset given", is kept even when one of its
    /// keys failed: it may be the very thing to fix.)
    pub fn add_problems(&mut self, problems: impl IntoIterator<Item = Problem>) {
        for problem in problems {
            let shadowed = self
                .errors
                .iter()
                .any(|error| !error.path.is_empty() && path_within(&problem.path, &error.path));
            if !shadowed {
                let error = self.error_at(problem);
                self.errors.push(error);
            }
        }
    }

    /// The problems so far, in file order (problems without a position last).
    pub fn errors(&self) -> &[SpecError] {
        &self.errors
    }

    /// The value when nothing is wrong, else every problem in file order.
    pub fn finish(mut self) -> Result<T, SpecErrors> {
        match self.value {
            Some(value) if self.errors.is_empty() => Ok(value),
            _ => {
                self.errors.sort_by_key(|error| {
                    error
                        .position
                        .map_or((usize::MAX, usize::MAX), |p| (p.line, p.column))
                });
                Err(SpecErrors {
                    errors: self.errors,
                })
            }
        }
    }
}

impl<T: Validate> Parsed<'_, T> {
    /// Runs `T::validate` on whatever could be read and adds its problems.
    pub fn validated(mut self) -> Self {
        if let Some(problems) = self.value.as_ref().map(Validate::validate) {
            self.add_problems(problems);
        }
        self
    }
}

/// Parses and validates `text`: `Ok` only when there is no problem at all.
pub fn parse_toml<T: DeserializeOwned + Validate>(
    text: &str,
    origin: &str,
) -> Result<T, SpecErrors> {
    read_toml::<T>(text, origin).validated().finish()
}

/// Reads, parses and validates a file; messages name it as the caller wrote it.
pub fn load_toml<T: DeserializeOwned + Validate>(path: &Path) -> Result<T, SpecErrors> {
    let origin = path.display().to_string();
    let text = read_text(path)?;
    parse_toml(&text, &origin)
}

pub(crate) fn read_text(path: &Path) -> Result<String, SpecErrors> {
    std::fs::read_to_string(path).map_err(|error| {
        SpecErrors::whole_file(
            &path.display().to_string(),
            format!("cannot read the file: {error}"),
        )
    })
}
