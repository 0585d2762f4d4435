//! Planning one write: validate it against the current desired state and build the next one.
//!
//! [`plan`] is pure: it reads the current [`Config`] and records and returns the next config and
//! the service's next record, or the [`ApiError`] to answer. Nothing is changed on error, so a
//! refused write leaves the state byte-for-byte as it was. The order of checks is: the service
//! (and stack) exist → the body is valid in full (every problem, each naming its field) → every
//! stack whose targets changed has something to route to ([`routable`]) → the service keeps
//! some traffic unless the write says otherwise (409 `no_traffic`) → the services still fit
//! together → `If-Match` names the current revision. These rules hold for every write, so a
//! deployment's new stack is checked by the same code ([`plan`] as a dry run).

use std::collections::BTreeMap;
use std::path::Path;

use switchyard_config::{
    Config, Endpoint, Problem, Segment, ServiceSpec, StackSpec, Weight, raw, service_from_raw,
    stack_from_raw,
};

use crate::error::ApiError;
use crate::seed::{describe, update};
use crate::store::{Origin, Promotion, ServiceRecord};

/// A change to one service, as asked through the API.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    /// Create the service (the body's name).
    CreateService(Box<raw::Service>),
    /// Delete the service.
    DeleteService,
    /// Set the weights of the named stacks; with `exclusive`, zero the others.
    SetWeights {
        weights: BTreeMap<String, i64>,
        exclusive: bool,
        allow_no_traffic: bool,
    },
    /// Register a new stack.
    AddStack(Box<raw::Stack>),
    /// Replace a stack's endpoints.
    SetEndpoints {
        stack: String,
        endpoints: Vec<String>,
    },
    /// Remove a stack; refused while it has weight unless forced.
    DeleteStack {
        stack: String,
        force: bool,
        allow_no_traffic: bool,
    },
    /// Set or clear the service's shadow setting (a deployment's shadow step).
    SetShadow(Option<Box<raw::Shadow>>),
    /// Put the service back exactly as recorded, ownership and promotions included (a
    /// deployment's rollback).
    Restore {
        spec: Box<raw::Service>,
        origin: Origin,
        promotions: BTreeMap<String, Promotion>,
    },
}

impl Change {
    /// The history's name for the change.
    pub(crate) fn action(&self) -> &'static str {
        match self {
            Self::CreateService(_) => "create_service",
            Self::DeleteService => "delete_service",
            Self::SetWeights { .. } => "set_weights",
            Self::AddStack(_) => "add_stack",
            Self::SetEndpoints { .. } => "set_endpoints",
            Self::DeleteStack { .. } => "delete_stack",
            Self::Restore { .. } => "restore_service",
            Self::SetShadow(_) => "set_shadow",
        }
    }

    /// How the write says that leaving the service without traffic is meant, or `None` when
    /// it says so already (a rollback restores whatever was before).
    fn no_traffic_override(&self) -> Option<&'static str> {
        match self {
            Self::SetWeights {
                allow_no_traffic: true,
                ..
            }
            | Self::DeleteStack {
                allow_no_traffic: true,
                ..
            }
            | Self::Restore { .. } => None,
            Self::DeleteStack { .. } => Some("pass ?allow_no_traffic=true"),
            _ => Some("send \"allow_no_traffic\": true in the body"),
        }
    }
}

/// The one rule for what a stack routes to: at least one endpoint or a DNS source. `field`
/// names the field the client sets them with.
pub(crate) fn routable(stack: &StackSpec, field: &str) -> Result<(), ApiError> {
    if stack.endpoints().is_empty() && stack.dns().is_none() {
        return Err(ApiError::NoEndpoints(format!(
            "{field}: stack {:?} would have nothing to route to: expected at least one endpoint or a DNS source",
            stack.name().as_str()
        )));
    }
    Ok(())
}

/// Every stack of `next` whose targets are new or changed must be [`routable`].
fn check_routable(
    current: Option<&ServiceSpec>,
    next: &ServiceSpec,
    change: &Change,
) -> Result<(), ApiError> {
    if matches!(change, Change::Restore { .. }) {
        return Ok(());
    }
    for (i, s) in next.stacks().iter().enumerate() {
        let before = current.and_then(|c| c.stack(s.name().as_str()));
        if before.is_some_and(|b| b.endpoints() == s.endpoints() && b.dns() == s.dns()) {
            continue;
        }
        let field = match change {
            Change::CreateService(_) => format!("stacks[{i}].endpoints"),
            _ => "endpoints".to_owned(),
        };
        routable(s, &field)?;
    }
    Ok(())
}

fn carries_traffic(s: &ServiceSpec) -> bool {
    s.stacks().iter().any(|st| st.weight().get() > 0)
}

/// Refuses a write that takes a service from some traffic to none, unless it says so.
fn check_traffic(
    current: Option<&ServiceSpec>,
    next: Option<&ServiceSpec>,
    change: &Change,
) -> Result<(), ApiError> {
    let (Some(cur), Some(next)) = (current, next) else {
        return Ok(());
    };
    let Some(how) = change.no_traffic_override() else {
        return Ok(());
    };
    if carries_traffic(cur) && !carries_traffic(next) {
        return Err(ApiError::NoTraffic(format!(
            "this would leave every stack of service {:?} at weight 0, so every request would get 503; {how} to do it anyway",
            cur.name().as_str()
        )));
    }
    Ok(())
}

/// The outcome of a valid write.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The next desired state (equal to the current one when `unchanged`).
    pub(crate) config: Config,
    /// The service's next record.
    pub(crate) record: ServiceRecord,
    /// The service before.
    pub(crate) before: Option<raw::Service>,
    /// Nothing would change: no revision, no write, no apply.
    pub(crate) unchanged: bool,
}

/// Validates `change` to `service` against the current state and builds the next one.
pub(crate) fn plan(
    config: &Config,
    records: &BTreeMap<String, ServiceRecord>,
    service: &str,
    if_match: Option<u64>,
    change: &Change,
    base_dir: &Path,
    now: &str,
) -> Result<Plan, ApiError> {
    let current = config.service(service);
    let next = match (change, current) {
        (Change::CreateService(_), Some(_)) => {
            return Err(ApiError::Conflict(format!(
                "service {service:?} exists already"
            )));
        }
        (Change::CreateService(raw), None) => {
            Some(service_from_raw(raw, base_dir).map_err(|p| ApiError::Invalid(describe(&p)))?)
        }
        (_, None) => {
            return Err(ApiError::NotFound(format!("no service {service:?}")));
        }
        (Change::DeleteService, Some(_)) => None,
        (
            Change::SetWeights {
                weights, exclusive, ..
            },
            Some(cur),
        ) => Some(set_weights(cur, weights, *exclusive)?),
        (Change::AddStack(raw), Some(cur)) => Some(add_stack(cur, raw, base_dir)?),
        (Change::SetEndpoints { stack, endpoints }, Some(cur)) => {
            Some(set_endpoints(cur, stack, endpoints)?)
        }
        (Change::DeleteStack { stack, force, .. }, Some(cur)) => {
            Some(delete_stack(cur, stack, *force)?)
        }
        (Change::SetShadow(shadow), Some(cur)) => Some(
            cur.with_shadow(shadow.as_deref().cloned())
                .map_err(|p| ApiError::Invalid(describe(&p)))?,
        ),
        (Change::Restore { spec, .. }, Some(_)) => {
            Some(service_from_raw(spec, base_dir).map_err(|p| ApiError::Invalid(describe(&p)))?)
        }
    };
    if let Some(n) = &next {
        check_routable(current, n, change)?;
    }
    check_traffic(current, next.as_ref(), change)?;

    let mut services: Vec<ServiceSpec> = Vec::with_capacity(config.services().len() + 1);
    let mut index = None;
    for s in config.services() {
        if s.name().as_str() == service {
            if let Some(n) = &next {
                index = Some(services.len());
                services.push(n.clone());
            }
        } else {
            services.push(s.clone());
        }
    }
    if current.is_none() {
        if let Some(n) = &next {
            index = Some(services.len());
            services.push(n.clone());
        }
    }
    let next_config = config
        .with_services(services)
        .map_err(|p| cross_service(&p, index))?;

    let old = records.get(service);
    let revision = old.map_or(0, |r| r.revision);
    if let Some(expected) = if_match {
        if expected != revision {
            return Err(ApiError::RevisionMismatch {
                service: service.to_owned(),
                expected,
                current: revision,
            });
        }
    }

    let before = current.map(ServiceSpec::to_raw);
    let after = next.as_ref().map(ServiceSpec::to_raw);
    let mut record = old.cloned().unwrap_or_else(|| ServiceRecord {
        revision: 0,
        origin: Origin::Runtime,
        spec: None,
        promotions: BTreeMap::new(),
        updated_at: now.to_owned(),
    });
    if before.is_some() && before == after {
        return Ok(Plan {
            config: next_config,
            record,
            before,
            unchanged: true,
        });
    }
    record.origin = Origin::Runtime;
    update(&mut record, before.as_ref(), after, now);
    if let Change::Restore {
        origin, promotions, ..
    } = change
    {
        record.origin = *origin;
        record.promotions = promotions.clone();
    }
    Ok(Plan {
        config: next_config,
        record,
        before,
        unchanged: false,
    })
}

fn set_weights(
    cur: &ServiceSpec,
    weights: &BTreeMap<String, i64>,
    exclusive: bool,
) -> Result<ServiceSpec, ApiError> {
    if weights.is_empty() {
        return Err(ApiError::Invalid(
            "weights: expected at least one stack name with its weight".into(),
        ));
    }
    let known: Vec<&str> = cur.stacks().iter().map(|s| s.name().as_str()).collect();
    let mut problems = Vec::new();
    let mut parsed = BTreeMap::new();
    for (name, w) in weights {
        if !known.contains(&name.as_str()) {
            problems.push(format!(
                "weights.{name}: unknown stack {name:?}: expected one of {known:?}"
            ));
        }
        match Weight::new(*w) {
            Ok(w) => {
                parsed.insert(name.as_str(), w);
            }
            Err(e) => problems.push(format!("weights.{name}: {e}")),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems.join("; ")));
    }
    let stacks = cur
        .stacks()
        .iter()
        .map(|s| match parsed.get(s.name().as_str()) {
            Some(w) => s.with_weight(*w),
            None if exclusive => s.with_weight(Weight::default()),
            None => s.clone(),
        })
        .collect();
    cur.with_stacks(stacks).map_err(ApiError::Invalid)
}

fn add_stack(
    cur: &ServiceSpec,
    raw: &raw::Stack,
    base_dir: &Path,
) -> Result<ServiceSpec, ApiError> {
    let stack = stack_from_raw(raw, base_dir).map_err(|p| ApiError::Invalid(describe(&p)))?;
    if cur.stack(stack.name().as_str()).is_some() {
        return Err(ApiError::Conflict(format!(
            "stack {:?} exists already in service {:?}",
            raw.name,
            cur.name().as_str()
        )));
    }
    let mut stacks: Vec<StackSpec> = cur.stacks().to_vec();
    stacks.push(stack);
    cur.with_stacks(stacks).map_err(ApiError::Invalid)
}

fn find_stack<'a>(cur: &'a ServiceSpec, stack: &str) -> Result<&'a StackSpec, ApiError> {
    cur.stack(stack).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no stack {stack:?} in service {:?}",
            cur.name().as_str()
        ))
    })
}

fn set_endpoints(
    cur: &ServiceSpec,
    stack: &str,
    endpoints: &[String],
) -> Result<ServiceSpec, ApiError> {
    let target = find_stack(cur, stack)?;
    let mut problems = Vec::new();
    let mut parsed: Vec<Endpoint> = Vec::with_capacity(endpoints.len());
    for (i, e) in endpoints.iter().enumerate() {
        match Endpoint::parse(e) {
            Ok(ep) if parsed.contains(&ep) => {
                problems.push(format!("endpoints[{i}]: duplicate endpoint {e:?}"));
            }
            Ok(ep) => parsed.push(ep),
            Err(m) => problems.push(format!("endpoints[{i}]: {m}")),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems.join("; ")));
    }
    let replaced = target.with_endpoints(parsed);
    let stacks = cur
        .stacks()
        .iter()
        .map(|s| {
            if s.name().as_str() == stack {
                replaced.clone()
            } else {
                s.clone()
            }
        })
        .collect();
    cur.with_stacks(stacks).map_err(ApiError::Invalid)
}

fn delete_stack(cur: &ServiceSpec, stack: &str, force: bool) -> Result<ServiceSpec, ApiError> {
    let target = find_stack(cur, stack)?;
    let weight = target.weight().get();
    if weight > 0 && !force {
        return Err(ApiError::Conflict(format!(
            "stack {stack:?} still has weight {weight}: set it to 0 first, or pass ?force=true"
        )));
    }
    let stacks = cur
        .stacks()
        .iter()
        .filter(|s| s.name().as_str() != stack)
        .cloned()
        .collect();
    cur.with_stacks(stacks).map_err(ApiError::Invalid)
}

/// Maps the whole-set problems of the changed service (at `index`) to an answer: a route or
/// name another service already holds is a conflict, anything else (an unknown listener) is an
/// invalid value. Paths inside the changed service lose their `services[i].` prefix.
fn cross_service(problems: &[Problem], index: Option<usize>) -> ApiError {
    let mut conflict = false;
    let lines: Vec<String> = problems
        .iter()
        .map(|p| {
            let segs = p.field.segments();
            if matches!(segs.last(), Some(Segment::Key(k)) if k == "path_prefix" || k == "name") {
                conflict = true;
            }
            match segs {
                [Segment::Key(s), Segment::Index(i), rest @ ..]
                    if s == "services" && Some(*i) == index && !rest.is_empty() =>
                {
                    let mut field = switchyard_config::FieldPath::root();
                    for seg in rest {
                        field = match seg {
                            Segment::Key(k) => field.key(k),
                            Segment::Index(n) => field.index(*n),
                        };
                    }
                    format!("{field}: {}", p.message)
                }
                _ => p.to_string(),
            }
        })
        .collect();
    if conflict {
        ApiError::Conflict(lines.join("; "))
    } else {
        ApiError::Invalid(lines.join("; "))
    }
}

#[cfg(test)]
mod tests;
