//! `POST .../deployments?dry_run=true`: everything a deployment request would be refused
//! for, found without changing anything, and the plan it would follow.
//!
//! Beyond the checks every start makes ([`Deployments::admit`](super::Deployments::admit):
//! fields, strategy, checks, durations, the stack it would register, no deployment in
//! progress), a dry run looks at the world: the process command and every command check's
//! program exist and are executable, and DNS names (a `dns` source, endpoints given by name)
//! resolve. It writes nothing: no record, no id, no history, no key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use utoipa::ToSchema;

use super::plan::{Check, Pause, Plan, split};
use super::spec::{DeploymentSpec, SourceSpec, StrategySpec};
use crate::error::ApiError;
use crate::state::ControlState;

/// The answer to a dry run: what the deployment would go through.
#[derive(Debug, Serialize, ToSchema)]
pub struct DryRunView {
    /// Always `true`: nothing was changed.
    pub dry_run: bool,
    /// The service.
    pub service: String,
    /// The new stack.
    pub stack: String,
    /// Its version.
    pub version: String,
    /// `blue_green` or `canary`.
    pub strategy: String,
    /// Every phase in order, each canary step on its own, with the weights it would set.
    pub phases: Vec<PlannedPhase>,
    /// What was looked at besides the fields (commands found, names resolved).
    pub verified: Vec<String>,
}

/// One phase (or canary step) of the plan.
#[derive(Debug, Serialize, ToSchema)]
pub struct PlannedPhase {
    /// The phase, as deployments report it (`provisioning`, `shifting`, ...).
    pub phase: String,
    /// With the step while shifting, e.g. `shifting(2/3)`.
    pub label: String,
    /// Weights the phase sets, by stack (shifting steps only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weights: Option<BTreeMap<String, u32>>,
    /// The pause after a step: a duration or `manual`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<String>,
    /// What the phase does, in words.
    pub detail: String,
}

/// Validates `spec` against `service` in full and describes its plan, changing nothing.
pub(crate) async fn dry_run(
    state: &ControlState,
    service: &str,
    if_match: Option<u64>,
    spec: &DeploymentSpec,
) -> Result<DryRunView, ApiError> {
    let deployments = state.deployments();
    let mut spec = spec.clone();
    deployments.complete_rolling(service, &mut spec);
    let spec = &spec;
    let (plan, _) = deployments.admit(state, service, if_match, spec)?;
    let mut problems = Vec::new();
    let mut verified = Vec::new();
    look_at_commands(spec, deployments.base_dir(), &mut problems, &mut verified);
    look_up_names(spec, &mut problems, &mut verified).await;
    if !problems.is_empty() {
        return Err(ApiError::Invalid(problems.join("; ")));
    }
    let before = state
        .published()
        .config
        .service(service)
        .map(|s| s.to_raw())
        .ok_or_else(|| ApiError::NotFound(format!("no service {service:?}")))?;
    let before: BTreeMap<String, u32> = before
        .stacks
        .iter()
        .map(|s| (s.name.clone(), u32::try_from(s.weight).unwrap_or(0)))
        .collect();
    Ok(DryRunView {
        dry_run: true,
        service: service.to_owned(),
        stack: spec.stack.clone(),
        version: spec.version.clone(),
        strategy: match spec.strategy {
            StrategySpec::BlueGreen { .. } => "blue_green",
            StrategySpec::Canary { .. } => "canary",
            StrategySpec::Rolling(_) => "rolling",
        }
        .to_owned(),
        phases: phases(spec, &plan, &before),
        verified,
    })
}

fn phase(phase: &str, detail: String) -> PlannedPhase {
    PlannedPhase {
        phase: phase.to_owned(),
        label: phase.to_owned(),
        weights: None,
        pause: None,
        detail,
    }
}

fn names(checks: &[Check]) -> String {
    checks
        .iter()
        .map(Check::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The phases the machine would go through when everything passes.
fn phases(spec: &DeploymentSpec, plan: &Plan, before: &BTreeMap<String, u32>) -> Vec<PlannedPhase> {
    let mut out = Vec::new();
    let source = match &spec.source {
        SourceSpec::Endpoints(eps) => format!("register endpoints {}", eps.join(", ")),
        SourceSpec::Dns(d) => format!(
            "register DNS {}",
            d.srv.clone().or_else(|| d.name.clone()).unwrap_or_default()
        ),
        SourceSpec::Process(p) => format!(
            "start {} replica(s) of {}",
            p.replicas.unwrap_or(1),
            p.command.join(" ")
        ),
        SourceSpec::Container(c) => format!(
            "start {} container(s) of {} (port {})",
            c.replicas.unwrap_or(1),
            c.image,
            c.port
        ),
    };
    out.push(phase(
        "provisioning",
        format!("{source}; stack {} at weight 0", spec.stack),
    ));
    out.push(phase(
        "waiting_healthy",
        format!(
            "every endpoint healthy within {}",
            switchyard_config::format_duration(plan.healthy_timeout)
        ),
    ));
    if !plan.pre.is_empty() {
        out.push(phase(
            "pre_integration",
            format!("directly against the new stack: {}", names(&plan.pre)),
        ));
    }
    let steps = plan.steps.len();
    for (i, s) in plan.steps.iter().enumerate() {
        let (detail, weights) = match &plan.rolling {
            Some(r) => {
                let b = r.batch(i);
                (
                    format!(
                        "replicas {}..{} of {} replaced by {} ({} % new)",
                        b.start, b.end, plan.stack, spec.version, s.percent
                    ),
                    None,
                )
            }
            None => (
                format!("{} % of the traffic on {}", s.percent, plan.stack),
                Some(split(before, &plan.stack, s.percent)),
            ),
        };
        if let Some(g) = plan
            .gates
            .iter()
            .find(|g| g.before == super::gate::Point::Step(i))
        {
            out.push(phase(
                "gate",
                format!(
                    "wait for {} to answer 200 (up to {})",
                    g.url,
                    switchyard_config::format_duration(g.timeout)
                ),
            ));
        }
        out.push(PlannedPhase {
            phase: "shifting".to_owned(),
            label: format!("shifting({}/{steps})", i + 1),
            detail,
            weights,
            pause: match s.pause {
                Pause::None => None,
                Pause::Manual => Some("manual".to_owned()),
                Pause::For(d) => Some(switchyard_config::format_duration(d)),
            },
        });
    }
    if !plan.post.is_empty() {
        out.push(phase(
            "post_integration",
            format!("through the public listener, pinned: {}", names(&plan.post)),
        ));
    }
    if let Some(g) = plan
        .gates
        .iter()
        .find(|g| g.before == super::gate::Point::Promote)
    {
        out.push(phase(
            "gate",
            format!(
                "wait for {} to answer 200 (up to {})",
                g.url,
                switchyard_config::format_duration(g.timeout)
            ),
        ));
    }
    let old: Vec<&str> = before
        .iter()
        .filter(|(n, w)| **w > 0 && n.as_str() != plan.stack)
        .map(|(n, _)| n.as_str())
        .collect();
    out.push(phase(
        "retiring",
        if plan.rolling.is_some() {
            format!("record and supervise the new replicas of {}", plan.stack)
        } else if old.is_empty() {
            "no previous stack with weight to retire".to_owned()
        } else {
            format!(
                "remove {} after {} (drain {})",
                old.join(", "),
                switchyard_config::format_duration(plan.retire_after),
                switchyard_config::format_duration(plan.drain)
            )
        },
    ));
    out.push(phase("succeeded", format!("{} live", spec.stack)));
    out
}

/// `program` as the process source or a command check would run it: a name with a slash
/// relative to `base`, a bare name found on `PATH`.
fn find_program(program: &str, base: &Path) -> Option<PathBuf> {
    if program.contains('/') {
        let p = Path::new(program);
        return Some(if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        });
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn executable(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("{} is not executable", path.display()));
    }
    Ok(())
}

fn look_at_commands(
    spec: &DeploymentSpec,
    base_dir: &Path,
    problems: &mut Vec<String>,
    verified: &mut Vec<String>,
) {
    let mut programs: Vec<(String, String, PathBuf)> = Vec::new();
    if let SourceSpec::Process(p) = &spec.source {
        let base = p.workdir.as_ref().map_or_else(
            || base_dir.to_path_buf(),
            |w| {
                let w = Path::new(w);
                if w.is_absolute() {
                    w.to_path_buf()
                } else {
                    base_dir.join(w)
                }
            },
        );
        if let Some(program) = p.command.first() {
            programs.push(("source.process.command".to_owned(), program.clone(), base));
        }
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    for (field, checks) in [
        ("pre_integration", &spec.pre_integration),
        ("post_integration", &spec.post_integration),
    ] {
        for (i, c) in checks.iter().enumerate() {
            if let Some(program) = c.command.as_ref().and_then(|a| a.first()) {
                programs.push((
                    format!("{field}[{i}].command"),
                    program.clone(),
                    cwd.clone(),
                ));
            }
        }
    }
    for (field, program, base) in programs {
        match find_program(&program, &base) {
            None => problems.push(format!("{field}: {program:?} is not on PATH")),
            Some(path) => match executable(&path) {
                Ok(()) => verified.push(format!("{field}: {} is executable", path.display())),
                Err(e) => problems.push(format!("{field}: {e}")),
            },
        }
    }
}

async fn look_up_names(
    spec: &DeploymentSpec,
    problems: &mut Vec<String>,
    verified: &mut Vec<String>,
) {
    let mut names: Vec<(String, String, u16)> = Vec::new();
    match &spec.source {
        SourceSpec::Dns(d) => {
            if let (Some(name), Some(port)) = (&d.name, d.port.and_then(|p| u16::try_from(p).ok()))
            {
                names.push(("source.dns.name".to_owned(), name.clone(), port));
            }
            if let Some(srv) = &d.srv {
                verified.push(format!(
                    "source.dns.srv: {srv} is looked up by the proxy's resolver once registered (not here)"
                ));
            }
        }
        SourceSpec::Endpoints(eps) => {
            for (i, e) in eps.iter().enumerate() {
                let Ok(ep) = switchyard_config::Endpoint::parse(e) else {
                    continue;
                };
                if ep.socket_addr().is_none() {
                    names.push((
                        format!("source.endpoints[{i}]"),
                        ep.host().to_owned(),
                        ep.port(),
                    ));
                }
            }
        }
        SourceSpec::Process(_) | SourceSpec::Container(_) => {}
    }
    for (field, name, port) in names {
        let lookup = tokio::net::lookup_host((name.as_str(), port));
        match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
            Ok(Ok(mut addrs)) => match addrs.next() {
                Some(a) => verified.push(format!("{field}: {name} resolves ({})", a.ip())),
                None => problems.push(format!("{field}: {name} resolves to no address")),
            },
            Ok(Err(e)) => problems.push(format!("{field}: {name} does not resolve: {e}")),
            Err(_) => problems.push(format!(
                "{field}: {name} did not resolve within {RESOLVE_TIMEOUT:?}"
            )),
        }
    }
}

/// Longest wait for one name to resolve.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
