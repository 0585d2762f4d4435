//! How the configuration file and the saved state combine into the desired state.
//!
//! The rule, applied on start and on every reload (SIGHUP):
//! - A service changed at runtime (created, changed or deleted through the API; its record's
//!   origin is `runtime`) is taken from the saved state, whatever the file says. A service
//!   deleted at runtime stays deleted (its record is a tombstone) even if the file still has it.
//! - Every other service comes from the file: it is added, updated or removed as the file says,
//!   and its revision increases whenever its content differs from the saved record.
//! - Everything that is not a service (listeners, tokens, timeouts, limits, the control
//!   listener) always comes from the file.
//!
//! The merged set is re-checked as a whole (listener references, routes claimed twice); a
//! runtime service that no longer fits the file (say its listener was removed) is an error that
//! names it, rather than a silent drop. Nothing here does I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use switchyard_config::{Config, Problem, ServiceSpec, raw, service_from_raw};

use crate::store::{Origin, Promotion, ServiceRecord};

/// Why the file and the saved state cannot be combined.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// A service saved at runtime is no longer valid on its own.
    #[error("saved service {service:?} is invalid: {}", describe(.problems))]
    InvalidSaved {
        /// The service.
        service: String,
        /// What is wrong with it.
        problems: Vec<Problem>,
    },
    /// The services together break a rule (unknown listener, a route claimed twice).
    #[error("saved services do not fit the configuration file: {}", describe(.problems))]
    Conflict {
        /// What is wrong.
        problems: Vec<Problem>,
    },
}

/// One service whose content the file changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Seeded {
    pub(crate) service: String,
    pub(crate) before: Option<raw::Service>,
    pub(crate) after: Option<raw::Service>,
    pub(crate) revision: u64,
}

/// The combined desired state.
#[derive(Debug)]
pub(crate) struct Merged {
    pub(crate) config: Config,
    pub(crate) records: BTreeMap<String, ServiceRecord>,
    pub(crate) changed: Vec<Seeded>,
}

/// Problems as one line: `field: message; field: message`.
pub(crate) fn describe(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Combines `file` with the `saved` records by the rule in this module's docs. `base_dir`
/// resolves relative paths of runtime services; `now` stamps changed records.
pub(crate) fn merge(
    file: &Config,
    saved: &BTreeMap<String, ServiceRecord>,
    base_dir: &Path,
    now: &str,
) -> Result<Merged, SeedError> {
    let mut records = saved.clone();
    let mut changed = Vec::new();
    let in_file: BTreeSet<&str> = file.services().iter().map(|s| s.name().as_str()).collect();

    for spec in file.services() {
        let name = spec.name().as_str();
        let after = Some(spec.to_raw());
        match records.get_mut(name) {
            Some(r) if r.origin == Origin::Runtime => {}
            Some(r) if r.spec == after => {}
            Some(r) => {
                let before = r.spec.take();
                update(r, before.as_ref(), after.clone(), now);
                changed.push(seeded(name, before, r));
            }
            None => {
                let mut r = ServiceRecord {
                    revision: 0,
                    origin: Origin::File,
                    spec: None,
                    promotions: BTreeMap::new(),
                    updated_at: now.to_owned(),
                };
                update(&mut r, None, after, now);
                changed.push(seeded(name, None, &r));
                records.insert(name.to_owned(), r);
            }
        }
    }
    // File services the file no longer has: tombstoned, so their revision keeps counting.
    for (name, r) in &mut records {
        if r.origin == Origin::File && r.spec.is_some() && !in_file.contains(name.as_str()) {
            let before = r.spec.take();
            update(r, before.as_ref(), None, now);
            changed.push(seeded(name, before, r));
        }
    }

    let mut services: Vec<ServiceSpec> = Vec::new();
    for spec in file.services() {
        let name = spec.name().as_str();
        match records.get(name) {
            Some(r) if r.origin == Origin::Runtime => {
                if let Some(raw) = &r.spec {
                    services.push(parse_saved(name, raw, base_dir)?);
                }
            }
            _ => services.push(spec.clone()),
        }
    }
    for (name, r) in &records {
        if r.origin == Origin::Runtime && !in_file.contains(name.as_str()) {
            if let Some(raw) = &r.spec {
                services.push(parse_saved(name, raw, base_dir)?);
            }
        }
    }
    let config = file
        .with_services(services)
        .map_err(|problems| SeedError::Conflict { problems })?;
    Ok(Merged {
        config,
        records,
        changed,
    })
}

fn parse_saved(name: &str, raw: &raw::Service, base_dir: &Path) -> Result<ServiceSpec, SeedError> {
    service_from_raw(raw, base_dir).map_err(|problems| SeedError::InvalidSaved {
        service: name.to_owned(),
        problems,
    })
}

fn seeded(name: &str, before: Option<raw::Service>, r: &ServiceRecord) -> Seeded {
    Seeded {
        service: name.to_owned(),
        before,
        after: r.spec.clone(),
        revision: r.revision,
    }
}

/// Moves a record to its next revision with `after` as its content.
pub(crate) fn update(
    r: &mut ServiceRecord,
    before: Option<&raw::Service>,
    after: Option<raw::Service>,
    now: &str,
) {
    r.revision += 1;
    promote(before, after.as_ref(), r.revision, now, &mut r.promotions);
    r.spec = after;
    r.updated_at = now.to_owned();
}

/// Records a promotion for every stack whose weight rose; forgets stacks that are gone.
fn promote(
    before: Option<&raw::Service>,
    after: Option<&raw::Service>,
    revision: u64,
    now: &str,
    promotions: &mut BTreeMap<String, Promotion>,
) {
    let Some(after) = after else {
        promotions.clear();
        return;
    };
    let old_weight = |name: &str| {
        before
            .and_then(|b| b.stacks.iter().find(|s| s.name == name))
            .map_or(0, |s| s.weight)
    };
    promotions.retain(|name, _| after.stacks.iter().any(|s| &s.name == name));
    for s in &after.stacks {
        if s.weight > old_weight(&s.name) {
            promotions.insert(
                s.name.clone(),
                Promotion {
                    at: now.to_owned(),
                    revision,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests;
