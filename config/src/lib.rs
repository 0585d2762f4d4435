//! The Switchyard vocabulary: raw configuration types, the validated model and its defaults.
//!
//! This crate does no I/O but reading a file, depends on no other workspace crate and no async
//! runtime, so every rule is testable from a string. [`parse`] turns TOML text into a
//! [`Config`]; every problem is reported with the file, line, column and field.

mod duration;
mod error;
mod figures;
mod model;
pub mod raw;
mod service;
mod settings;
mod validate;

pub use duration::{format_duration, parse_duration};
pub use error::{ConfigError, FieldPath, Location, Problem, Segment};
pub use figures::{Figures, Quantiles, Window};
pub use model::{
    CertPaths, Endpoint, HostPattern, ListenerSpec, ListenerTls, LoadBalancing, Name, Scheme,
    Sticky, UnknownSni, Weight,
};
pub use service::{
    CheckKind, DEFAULT_PIN_HEADER, DEFAULT_UPGRADES, DnsSource, HealthCheckSpec, OutlierSpec,
    ServiceSpec, StackSpec, UpstreamTlsSpec,
};
pub use settings::{Config, ControlSpec, DnsSpec, Limits, Role, Runtime, Timeouts, TokenSpec};
pub use validate::{service as service_from_raw, stack as stack_from_raw};

use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Parses and validates configuration text. `origin` names the file in errors and its folder
/// resolves relative paths.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let at =
        |span: Option<std::ops::Range<usize>>| span.map(|s| Location::of_offset(text, s.start));
    let table = DeTable::parse(text).map_err(|e| ConfigError {
        origin: origin.to_path_buf(),
        problems: vec![Problem {
            field: FieldPath::root(),
            location: at(e.span()),
            message: format!("invalid TOML: {}", e.message().trim_end()),
        }],
    })?;
    let de = toml::de::Deserializer::from(table.clone());
    let raw: raw::File = serde_path_to_error::deserialize(de).map_err(|e| {
        let field = FieldPath::from_serde(e.path());
        let inner = e.inner();
        let location = at(inner.span())
            .or_else(|| locate(&table, &field).map(|s| Location::of_offset(text, s.start)));
        ConfigError {
            origin: origin.to_path_buf(),
            problems: vec![Problem {
                field,
                location,
                message: inner.message().trim_end().to_owned(),
            }],
        }
    })?;
    let base = origin.parent().unwrap_or(Path::new("."));
    validate::file(&raw, base).map_err(|p| ConfigError {
        origin: origin.to_path_buf(),
        problems: p
            .0
            .into_iter()
            .map(|(field, message)| {
                let location = locate(&table, &field).map(|s| Location::of_offset(text, s.start));
                Problem {
                    field,
                    location,
                    message,
                }
            })
            .collect(),
    })
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::whole(path, format!("cannot read file: {e}")))?;
    parse(&text, path)
}

/// The span of the deepest part of `field` present in the document.
fn locate(table: &Spanned<DeTable<'_>>, field: &FieldPath) -> Option<std::ops::Range<usize>> {
    let mut span = None;
    let mut current: Option<&DeValue<'_>> = None;
    let mut tbl: Option<&DeTable<'_>> = Some(table.get_ref());
    for seg in field.segments() {
        let next: Option<&Spanned<DeValue<'_>>> = match (seg, tbl, current) {
            (Segment::Key(k), Some(t), _) => {
                t.iter().find(|(key, _)| key.get_ref() == k).map(|(_, v)| v)
            }
            (Segment::Index(i), _, Some(DeValue::Array(a))) => a.get(*i),
            _ => None,
        };
        let Some(v) = next else { break };
        span = Some(v.span());
        current = Some(v.get_ref());
        tbl = match v.get_ref() {
            DeValue::Table(t) => Some(t),
            _ => None,
        };
    }
    span
}

#[cfg(test)]
mod tests;
