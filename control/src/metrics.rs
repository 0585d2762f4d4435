//! The control plane's own Prometheus metrics, in a registry of its own (never the global
//! default): API requests by route template and status, configuration reloads by result, and
//! deployments (the phase of each service's latest one, and how many ended by result).
//!
//! `GET /metrics` appends this registry's exposition to the data plane's (see
//! `api::probe::metrics`); every name here is unique to control, so the two concatenate into
//! one valid exposition. None of this is on the proxy's request path.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use prometheus::{IntCounterVec, Opts, Registry};

use crate::deploy::{Deployments, Phase};
use crate::state::ControlState;

/// Every phase, in the order of [`phase_index`].
const PHASES: [Phase; 11] = [
    Phase::Provisioning,
    Phase::WaitingHealthy,
    Phase::PreIntegration,
    Phase::Shadowing,
    Phase::Shifting,
    Phase::PostIntegration,
    Phase::Retiring,
    Phase::Succeeded,
    Phase::RollingBack,
    Phase::RolledBack,
    Phase::Failed,
];

/// Position of `p` in [`PHASES`] (exhaustive, so a new phase cannot be forgotten).
fn phase_index(p: Phase) -> usize {
    match p {
        Phase::Provisioning => 0,
        Phase::WaitingHealthy => 1,
        Phase::PreIntegration => 2,
        Phase::Shadowing => 3,
        Phase::Shifting => 4,
        Phase::PostIntegration => 5,
        Phase::Retiring => 6,
        Phase::Succeeded => 7,
        Phase::RollingBack => 8,
        Phase::RolledBack => 9,
        Phase::Failed => 10,
    }
}

/// Label of the route a request matched when it matched none.
const UNMATCHED: &str = "unmatched";

/// The control plane's metrics.
pub(crate) struct ControlMetrics {
    registry: Registry,
    requests: IntCounterVec,
    reloads: IntCounterVec,
}

impl ControlMetrics {
    /// Metrics over `deployments`, registered in a new registry.
    pub(crate) fn new(deployments: Arc<Deployments>) -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "switchyard_control_requests_total",
                "Control API requests, by route template (`unmatched` for none) and status code.",
            ),
            &["route", "status"],
        )
        .expect("static metric options are valid");
        let reloads = IntCounterVec::new(
            Opts::new(
                "switchyard_config_reloads_total",
                "Reloads of the configuration file (SIGHUP), by result (`ok` or `failed`).",
            ),
            &["result"],
        )
        .expect("static metric options are valid");
        for result in ["ok", "failed"] {
            // Both series exist from the start, so a first failure is a change from 0.
            reloads.with_label_values(&[result]);
        }
        let registered = registry
            .register(Box::new(requests.clone()))
            .and_then(|()| registry.register(Box::new(reloads.clone())))
            .and_then(|()| registry.register(Box::new(DeploymentCollector::new(deployments))));
        registered.expect("control metric names are unique in their own registry");
        Self {
            registry,
            requests,
            reloads,
        }
    }

    /// Counts a configuration reload.
    pub(crate) fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "failed" }])
            .inc();
    }

    /// The exposition of these metrics (text format 0.0.4).
    pub(crate) fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            tracing::warn!(error = %e, "cannot encode the control plane's metrics");
            out.clear();
        }
        out
    }
}

/// Middleware counting every API request by its route template (never the raw path) and
/// status.
pub(crate) async fn track(State(state): State<ControlState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned());
    let response = next.run(req).await;
    state
        .metrics()
        .requests
        .with_label_values(&[
            route.as_deref().unwrap_or(UNMATCHED),
            response.status().as_str(),
        ])
        .inc();
    response
}

/// Reads the deployments at scrape time: the phase of each service's latest deployment
/// (`switchyard_deployment_phase{service,phase}`, 1 for its phase and 0 for the others, as
/// kube-state-metrics does for pod phases) and the finished ones by result.
struct DeploymentCollector {
    deployments: Arc<Deployments>,
    descs: Vec<Desc>,
}

const PHASE_NAME: &str = "switchyard_deployment_phase";
const PHASE_HELP: &str =
    "Phase of the latest deployment of each service: 1 for its phase, 0 for the others.";
const RESULTS_NAME: &str = "switchyard_deployments_total";
const RESULTS_HELP: &str = "Deployments recorded in the state folder that ended, by result (succeeded, rolled_back, failed).";

impl DeploymentCollector {
    fn new(deployments: Arc<Deployments>) -> Self {
        let desc = |name: &str, help: &str, labels: &[&str]| {
            Desc::new(
                name.to_owned(),
                help.to_owned(),
                labels.iter().map(|l| (*l).to_owned()).collect(),
                HashMap::new(),
            )
            .expect("static metric descriptions are valid")
        };
        Self {
            deployments,
            descs: vec![
                desc(PHASE_NAME, PHASE_HELP, &["service", "phase"]),
                desc(RESULTS_NAME, RESULTS_HELP, &["result"]),
            ],
        }
    }
}

fn pairs(labels: &[(&str, &str)]) -> Vec<LabelPair> {
    labels
        .iter()
        .map(|(n, v)| {
            let mut p = LabelPair::default();
            p.set_name((*n).to_owned());
            p.set_value((*v).to_owned());
            p
        })
        .collect()
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<proto::Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_owned());
    f.set_help(help.to_owned());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

impl Collector for DeploymentCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut latest: BTreeMap<String, (u64, Phase)> = BTreeMap::new();
        let mut results = [0u64; 3];
        for (service, id, phase) in self.deployments.phases() {
            match phase {
                Phase::Succeeded => results[0] += 1,
                Phase::RolledBack => results[1] += 1,
                Phase::Failed => results[2] += 1,
                _ => {}
            }
            let e = latest.entry(service).or_insert((id, phase));
            if id >= e.0 {
                *e = (id, phase);
            }
        }
        let mut phases = Vec::new();
        for (service, (_, current)) in &latest {
            for p in PHASES {
                let mut g = proto::Gauge::default();
                g.set_value(if phase_index(p) == phase_index(*current) {
                    1.0
                } else {
                    0.0
                });
                let mut m = proto::Metric::default();
                m.set_label(pairs(&[
                    ("service", service.as_str()),
                    ("phase", p.as_str()),
                ]));
                m.set_gauge(g);
                phases.push(m);
            }
        }
        let mut ended = Vec::new();
        for (result, n) in ["succeeded", "rolled_back", "failed"].iter().zip(results) {
            let mut c = proto::Counter::default();
            c.set_value(n as f64);
            let mut m = proto::Metric::default();
            m.set_label(pairs(&[("result", *result)]));
            m.set_counter(c);
            ended.push(m);
        }
        let mut out = Vec::new();
        if !phases.is_empty() {
            out.push(family(PHASE_NAME, PHASE_HELP, MetricType::GAUGE, phases));
        }
        out.push(family(
            RESULTS_NAME,
            RESULTS_HELP,
            MetricType::COUNTER,
            ended,
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_is_listed_at_its_index() {
        for (i, p) in PHASES.iter().enumerate() {
            assert_eq!(phase_index(*p), i, "{}", p.as_str());
        }
    }
}
