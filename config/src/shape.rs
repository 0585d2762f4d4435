//! The document's shape against the raw types, with every problem of the file collected.
//!
//! serde stops at the first error, and `deny_unknown_fields` turns an unknown key into that
//! first error, so one stray key hid every other problem. This module is a serde
//! `Deserializer` over toml's spanned document tree that keeps going:
//! - a table read as a struct is checked against the struct's own field list (the one serde
//!   passes to `deserialize_struct`), so every table of every raw type is covered; unknown keys
//!   are reported at the key and left out, so `deny_unknown_fields` never fires;
//! - a value of the wrong type is reported in user words (`expected an integer, found "x"`)
//!   and replaced by a neutral placeholder (`0`, `""`, `[]`, absent) so its siblings are read;
//! - an error that still escapes (a missing required field, an unknown enum variant) is
//!   recorded, that path gets a placeholder, and the document is read again. Each round fixes
//!   one path, so the rounds are bounded by the number of such errors.
//!
//! The raw types keep `deny_unknown_fields` for the JSON bodies of the control API; this reader
//! is only for the file. It does no semantic checks: `crate::validate` does, on the result.

use crate::error::FieldPath;
use serde::de::{self, DeserializeOwned};
use std::cell::RefCell;
use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

mod access;
mod node;
mod suggest;

use node::De;

/// One shape problem: where (field and byte span) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeProblem {
    /// The field concerned (for an unknown key, the key itself).
    pub(crate) field: FieldPath,
    /// Byte span in the text.
    pub(crate) span: Range<usize>,
    /// What is wrong, in the user's words.
    pub(crate) message: String,
    /// True for a value of the wrong type: validation may name a more precise expectation.
    pub(crate) wrong_type: Option<String>,
}

/// Reads `table` as `T`, collecting every shape problem. `None` only when a placeholder could
/// not stand in for a broken value (then the problems say why).
pub(crate) fn read<T: DeserializeOwned>(
    table: &Spanned<DeTable<'_>>,
) -> (Option<T>, Vec<ShapeProblem>) {
    let mut placeholders = HashSet::new();
    let mut escaped = Vec::new();
    loop {
        let ctx = Ctx {
            problems: RefCell::new(Vec::new()),
            placeholders: placeholders.clone(),
        };
        let root = De {
            node: Node::Table(table.get_ref()),
            path: FieldPath::root(),
            span: table.span(),
            ctx: &ctx,
        };
        match T::deserialize(root) {
            Ok(v) => {
                let mut all = ctx.problems.into_inner();
                all.append(&mut escaped);
                return (Some(v), all);
            }
            Err(e) => {
                let (field, span) = e.at.unwrap_or((FieldPath::root(), table.span()));
                escaped.push(ShapeProblem {
                    field: field.clone(),
                    span,
                    message: e.message,
                    wrong_type: None,
                });
                // A placeholder that failed again, or the root itself: nothing more to read.
                if field.segments().is_empty() || !placeholders.insert(field) {
                    let mut all = ctx.problems.into_inner();
                    all.append(&mut escaped);
                    return (None, all);
                }
            }
        }
    }
}

pub(super) struct Ctx {
    pub(super) problems: RefCell<Vec<ShapeProblem>>,
    pub(super) placeholders: HashSet<FieldPath>,
}

#[derive(Clone, Copy)]
pub(super) enum Node<'a, 'i> {
    Value(&'a DeValue<'i>),
    Table(&'a DeTable<'i>),
    /// Stands in for a missing or broken value: the neutral value of whatever is asked for.
    Placeholder,
}

/// An error that escaped a visitor; `at` is filled in by the innermost deserializer it passes.
#[derive(Debug)]
pub(super) struct Escaped {
    pub(super) message: String,
    pub(super) at: Option<(FieldPath, Range<usize>)>,
    pub(super) missing: Option<&'static str>,
}

impl fmt::Display for Escaped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Escaped {}

impl de::Error for Escaped {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            at: None,
            missing: None,
        }
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            message: "required key is missing".to_owned(),
            at: None,
            missing: Some(field),
        }
    }
}
