//! Configuration errors: every problem names where it is (file, line, column), which field, and
//! what was expected. Validation collects all problems before failing.

use std::fmt;
use std::path::{Path, PathBuf};

/// A path to a field inside the configuration, e.g. `services[1].stacks[0].weight`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

/// One step of a [`FieldPath`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// A table key.
    Key(String),
    /// An array index.
    Index(usize),
}

impl FieldPath {
    /// The root of the document.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// This path extended by a key.
    pub fn key(&self, key: &str) -> Self {
        let mut v = self.0.clone();
        v.push(Segment::Key(key.to_owned()));
        Self(v)
    }

    /// This path extended by an index.
    pub fn index(&self, i: usize) -> Self {
        let mut v = self.0.clone();
        v.push(Segment::Index(i));
        Self(v)
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// Whether `self` is `other` or lies inside it.
    pub fn is_within(&self, other: &FieldPath) -> bool {
        self.0.starts_with(&other.0)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("(document)");
        }
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Segment::Key(k) if i == 0 => write!(f, "{k}")?,
                Segment::Key(k) => write!(f, ".{k}")?,
                Segment::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A line and column, both 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

impl Location {
    /// The location of byte offset `offset` in `text`.
    pub fn of_offset(text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Self { line, column }
    }
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field concerned.
    pub field: FieldPath,
    /// Where in the source it is, when known.
    pub location: Option<Location>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A configuration that cannot be used, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file (or `<api>`-like origin) the text came from.
    pub origin: PathBuf,
    /// All problems, in document order (line, then column; unlocated ones first).
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// The file could not be read: `cannot read FILE: No such file or directory`.
    pub fn unreadable(origin: &Path, error: &std::io::Error) -> Self {
        let reason = error.to_string();
        // The OS error number means nothing to the reader; the text says it all.
        let reason = match reason.find(" (os error ") {
            Some(i) => &reason[..i],
            None => &reason,
        };
        Self {
            origin: origin.to_path_buf(),
            problems: vec![Problem {
                field: FieldPath::root(),
                location: None,
                message: format!("cannot read {}: {reason}", origin.display()),
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.origin.display();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            let whole_file = p.field.segments().is_empty();
            match (p.location, whole_file) {
                (Some(l), false) => write!(f, "{origin}:{}:{}: {p}", l.line, l.column)?,
                (Some(l), true) => write!(f, "{origin}:{}:{}: {}", l.line, l.column, p.message)?,
                (None, false) => write!(f, "{origin}: {p}")?,
                // About the whole file, and the message names it.
                (None, true) => f.write_str(&p.message)?,
            }
        }
        Ok(())
    }
}

/// Collects problems while validating, and what each checked field expects.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    /// What is wrong, per field.
    pub(crate) found: Vec<(FieldPath, String)>,
    /// What a field expects, in the user's words (`an integer from 0 to 10000`): a value of
    /// the wrong type in that field is reported with it.
    pub(crate) expected: Vec<(FieldPath, String)>,
}

impl Problems {
    pub(crate) fn push(&mut self, field: &FieldPath, message: impl Into<String>) {
        self.found.push((field.clone(), message.into()));
    }

    /// Declares what `field` expects; validators call it for every field they read.
    pub(crate) fn expect(&mut self, field: &FieldPath, what: impl Into<String>) {
        self.expected.push((field.clone(), what.into()));
    }

    /// What `field` expects, when a validator declared it.
    pub(crate) fn expected(&self, field: &FieldPath) -> Option<&str> {
        self.expected
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, w)| w.as_str())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_columns_from_one() {
        let text = "a = 1\nbc = 2\n";
        assert_eq!(
            Location::of_offset(text, 0),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Location::of_offset(text, 6),
            Location { line: 2, column: 1 }
        );
        assert_eq!(
            Location::of_offset(text, 11),
            Location { line: 2, column: 6 }
        );
    }

    #[test]
    fn field_path_displays_keys_and_indices() {
        let p = FieldPath::root()
            .key("services")
            .index(1)
            .key("stacks")
            .index(0)
            .key("weight");
        assert_eq!(p.to_string(), "services[1].stacks[0].weight");
    }
}
