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
mod shadow;
mod shape;
mod size;
mod validate;
mod webhook;

pub use duration::{
    EXPECTED_DURATION, MAX_PERIOD, MAX_TIMEOUT, expected_duration, format_duration, parse_duration,
    parse_duration_at_most,
};
pub use error::{ConfigError, FieldPath, Location, Problem, Segment};
pub use figures::{Figures, Quantiles, Reading, Window, quantiles};
pub use model::{
    CertPaths, Endpoint, HostPattern, ListenerSpec, ListenerTls, LoadBalancing, Name, Scheme,
    Sticky, UnknownSni, Weight,
};
pub use service::{
    CheckKind, DEFAULT_PIN_HEADER, DEFAULT_UPGRADES, DnsSource, HealthCheckSpec, OutlierSpec,
    ServiceSpec, StackSpec, UpstreamTlsSpec,
};
pub use settings::{
    AccessLogSpec, AccessLogTarget, Config, ControlSpec, DnsSpec, EtcdSpec, EtcdTls, Limits, Role,
    Runtime, Scheduler, StoreSpec, Timeouts, TokenSpec,
};
pub use shadow::{DEFAULT_SHADOW_MAX_BODY, DEFAULT_SHADOW_METHODS, MAX_SHADOW_BODY, ShadowSpec};
pub use size::{EXPECTED_SIZE, format_size, parse_size, parse_size_at_most};
pub use validate::{service as service_from_raw, stack as stack_from_raw};
pub use webhook::{HttpUrl, WEBHOOK_EVENTS, WebhookSpec, webhook};

use error::Problems;
use std::path::Path;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Parses and validates configuration text. `origin` names the file in errors and its folder
/// resolves relative paths. Every problem of the file is reported, sorted by line and column:
/// unknown keys and wrong types (from [`shape`]) with the semantic ones, except where a shape
/// problem already covers the field.
pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
    let at = |offset: usize| Some(Location::of_offset(text, offset));
    let error = |mut problems: Vec<Problem>| {
        problems.sort_by_key(|p| p.location.map(|l| (l.line, l.column)));
        ConfigError {
            origin: origin.to_path_buf(),
            problems,
        }
    };
    let table = DeTable::parse(text).map_err(|e| {
        error(vec![Problem {
            field: FieldPath::root(),
            location: at(e.span().map_or(0, |s| s.start)),
            message: format!("invalid TOML: {}", e.message().trim_end()),
        }])
    })?;
    let (raw, shape) = shape::read::<raw::File>(&table);
    let mut p = Problems::default();
    let config = raw.and_then(|raw| {
        let base = origin.parent().unwrap_or(Path::new("."));
        validate::file(&raw, base, &mut p)
    });
    if shape.is_empty() {
        if let Some(config) = config {
            return Ok(config);
        }
    }
    let mut problems: Vec<Problem> = shape
        .iter()
        .map(|s| Problem {
            field: s.field.clone(),
            location: at(s.span.start),
            message: match (&s.wrong_type, p.expected(&s.field)) {
                (Some(found), Some(expected)) => format!("expected {expected}, found {found}"),
                _ => s.message.clone(),
            },
        })
        .collect();
    // A value already reported as missing or of the wrong type was replaced by a placeholder;
    // what validation says about the placeholder is noise.
    problems.extend(
        p.found
            .into_iter()
            .filter(|(field, _)| !shape.iter().any(|s| field.is_within(&s.field)))
            .map(|(field, message)| Problem {
                location: locate(&table, &field).and_then(|s| at(s.start)),
                field,
                message,
            }),
    );
    Err(error(problems))
}

/// Reads and parses a configuration file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::unreadable(path, &e))?;
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
