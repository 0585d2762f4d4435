//! What the API answers: views of services and stacks built from a published state.
//!
//! Views combine the desired state (spec, revision, promotions) with the data plane's runtime
//! figures (endpoint health, in-flight and total requests). The *active* stack is the one with
//! the highest weight, ties broken by the most recent promotion (then by configuration order);
//! none is active while every weight is zero.

use std::cmp::Reverse;

use serde::Serialize;
use switchyard_config::{DnsSource, ServiceSpec, StackSpec, Sticky};
use utoipa::ToSchema;

use crate::data_plane::{DataPlane, EndpointState, EndpointStatus};
use crate::store::{HistoryEntry, InstanceRecord, Origin, ServiceRecord};
use crate::writer::Published;

/// `GET /v1/services`
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceList {
    /// The services the token may see, in configuration order.
    pub services: Vec<ServiceSummary>,
    /// With `[store] kind = "etcd"`: the instances sharing the store and whether they serve
    /// the same state (absent for the local store, or while etcd is unreachable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instances: Option<InstanceList>,
}

/// `GET /v1/instances`
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    /// `local` (one instance, nothing to list) or `etcd`.
    pub store: String,
    /// Every registered instance, by id.
    pub instances: Vec<InstanceRecord>,
    /// Whether every instance serves the same desired state (same store revision).
    pub agree: bool,
}

/// A service in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceSummary {
    /// Service name.
    pub name: String,
    /// Increases on every change.
    pub revision: u64,
    /// The stack with the highest weight, if any has weight.
    pub active: Option<String>,
    /// Its stacks.
    pub stacks: Vec<StackSummary>,
}

/// A stack in the list.
#[derive(Debug, Serialize, ToSchema)]
pub struct StackSummary {
    /// Stack name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// Weight, 0..=10000.
    pub weight: u32,
    /// Number of endpoints.
    pub endpoint_count: usize,
    /// Endpoints by health state.
    pub health: HealthSummary,
}

/// Endpoints counted by health state.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct HealthSummary {
    /// Passing checks.
    pub healthy: usize,
    /// Failing checks.
    pub unhealthy: usize,
    /// Ejected by passive failure detection.
    pub ejected: usize,
    /// Not checked yet.
    pub unknown: usize,
    /// Not checked at all (`health_check = { kind = "none" }`), taking traffic.
    pub unchecked: usize,
}

/// `GET /v1/services/{service}`: one service in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    /// Service name.
    pub name: String,
    /// Increases on every change; send it as `If-Match` to guard a write.
    pub revision: u64,
    /// `file` while the configuration file owns it, `runtime` once changed through the API.
    pub origin: Origin,
    /// When it last changed (RFC 3339, UTC).
    pub updated_at: String,
    /// The stack with the highest weight, if any has weight.
    pub active: Option<String>,
    /// How requests reach it.
    pub routing: RoutingView,
    /// Its stacks, in configuration order.
    pub stacks: Vec<StackView>,
    /// The deployment in progress, if any.
    pub deployment: Option<crate::deploy::DeploymentSummary>,
}

/// The routing rules of a service.
#[derive(Debug, Serialize, ToSchema)]
pub struct RoutingView {
    /// Listener names.
    pub listeners: Vec<String>,
    /// Host patterns; empty means any host.
    pub hosts: Vec<String>,
    /// Path prefix.
    pub path_prefix: String,
    /// `round_robin` or `least_request`.
    pub load_balancing: String,
    /// Header pinning a request to a stack, `null` when disabled.
    pub pin_header: Option<String>,
    /// Sticky selection, if any.
    pub sticky: Option<StickyView>,
    /// Whether the client's Host goes upstream.
    pub preserve_host: bool,
    /// Whether all endpoints get traffic when none is healthy.
    pub fail_open: bool,
}

/// What keeps a user on one stack.
#[derive(Debug, Serialize, ToSchema)]
pub struct StickyView {
    /// Cookie name.
    pub cookie: Option<String>,
    /// Header name.
    pub header: Option<String>,
}

/// One stack in full.
#[derive(Debug, Serialize, ToSchema)]
pub struct StackView {
    /// Stack name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// Weight, 0..=10000.
    pub weight: u32,
    /// When its weight was last raised (RFC 3339, UTC).
    pub promoted_at: Option<String>,
    /// Its endpoints with their runtime state.
    pub endpoints: Vec<EndpointView>,
    /// DNS discovery, when the endpoints come from DNS.
    pub dns: Option<DnsView>,
    /// Endpoints by health state.
    pub health: HealthSummary,
}

/// DNS discovery of a stack.
#[derive(Debug, Serialize, ToSchema)]
pub struct DnsView {
    /// The A/AAAA or SRV name.
    pub name: String,
    /// The port for A/AAAA names; `null` for SRV.
    pub port: Option<u16>,
    /// Whether `name` is an SRV name.
    pub srv: bool,
    /// The last resolution (time, outcome, TTL, failures in a row), once the proxy has one.
    #[schema(value_type = Option<Object>)]
    pub resolution: Option<serde_json::Value>,
}

/// One endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointView {
    /// `host:port` or `https://host:port`.
    pub address: String,
    /// `healthy`, `unhealthy`, `ejected` or `unknown`.
    pub state: String,
    /// Requests in flight.
    pub in_flight: u64,
    /// Requests sent since it appeared.
    pub requests_total: u64,
    /// Last active check (time, outcome, status), consecutive counters, passive-health
    /// ejections and the endpoint's traffic figures over the last minute (`figures`: the
    /// attempts sent to it, responses by class, proxy errors by cause, latency quantiles),
    /// when the proxy has any.
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// Answer to a service deletion.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeletedView {
    /// The deleted service.
    pub service: String,
    /// Its revision after deletion (a later re-creation continues from it).
    pub revision: u64,
}

/// `GET /v1/history`
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryList {
    /// Entries, oldest first.
    pub entries: Vec<HistoryEntry>,
}

/// `GET /healthz`, `GET /readyz`
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusView {
    /// `ok` or `ready`.
    pub status: String,
    /// The data plane generation control last applied, if any.
    pub generation: Option<u64>,
    /// With a shared store (etcd): `available`, or `unavailable` while it cannot be reached
    /// (routing goes on with the last state; writes answer 503 `store_unavailable`). Absent
    /// for the local store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
}

/// The active stack: highest weight, then latest promotion, then first configured.
pub(crate) fn active_stack(spec: &ServiceSpec, record: Option<&ServiceRecord>) -> Option<String> {
    let promoted = |s: &StackSpec| {
        record
            .and_then(|r| r.promotions.get(s.name().as_str()))
            .map_or(0, |p| p.revision)
    };
    spec.stacks()
        .iter()
        .enumerate()
        .filter(|(_, s)| s.weight().get() > 0)
        .max_by_key(|(i, s)| (s.weight(), promoted(s), Reverse(*i)))
        .map(|(_, s)| s.name().as_str().to_owned())
}

/// The endpoints of a stack joined with the data plane's figures. Static endpoints are listed
/// as configured (`unknown` when the proxy reports nothing yet); DNS stacks list what the proxy
/// discovered.
fn endpoints(dp: &dyn DataPlane, service: &str, stack: &StackSpec) -> Vec<EndpointView> {
    let status = dp.endpoints(service, stack.name().as_str());
    let view = |s: &EndpointStatus| EndpointView {
        address: s.address.clone(),
        state: s.state.as_str().to_owned(),
        in_flight: s.in_flight,
        requests_total: s.requests_total,
        detail: s.detail.clone(),
    };
    if stack.dns().is_some() {
        return status.iter().map(view).collect();
    }
    stack
        .endpoints()
        .iter()
        .map(|e| {
            let address = e.to_string();
            status
                .iter()
                .find(|s| s.address == address)
                .map(view)
                .unwrap_or(EndpointView {
                    address,
                    state: EndpointState::Unknown.as_str().to_owned(),
                    in_flight: 0,
                    requests_total: 0,
                    detail: None,
                })
        })
        .collect()
}

fn health(endpoints: &[EndpointView]) -> HealthSummary {
    let mut h = HealthSummary::default();
    for e in endpoints {
        match e.state.as_str() {
            "healthy" => h.healthy += 1,
            "unhealthy" => h.unhealthy += 1,
            "ejected" => h.ejected += 1,
            "unchecked" => h.unchecked += 1,
            _ => h.unknown += 1,
        }
    }
    h
}

/// A service as listed.
pub(crate) fn summary(p: &Published, dp: &dyn DataPlane, spec: &ServiceSpec) -> ServiceSummary {
    let name = spec.name().as_str();
    let record = p.records.get(name);
    ServiceSummary {
        name: name.to_owned(),
        revision: record.map_or(0, |r| r.revision),
        active: active_stack(spec, record),
        stacks: spec
            .stacks()
            .iter()
            .map(|s| {
                let eps = endpoints(dp, name, s);
                StackSummary {
                    name: s.name().as_str().to_owned(),
                    version: s.version().to_owned(),
                    weight: s.weight().get(),
                    endpoint_count: eps.len(),
                    health: health(&eps),
                }
            })
            .collect(),
    }
}

/// One service in full, or `None` when it does not exist.
pub(crate) fn service(p: &Published, dp: &dyn DataPlane, name: &str) -> Option<ServiceView> {
    let name_of_service = name;
    let spec = p.config.service(name)?;
    let record = p.records.get(name);
    let stacks = spec
        .stacks()
        .iter()
        .map(|s| {
            let eps = endpoints(dp, name, s);
            StackView {
                name: s.name().as_str().to_owned(),
                version: s.version().to_owned(),
                weight: s.weight().get(),
                promoted_at: record
                    .and_then(|r| r.promotions.get(s.name().as_str()))
                    .map(|p| p.at.clone()),
                health: health(&eps),
                endpoints: eps,
                dns: s.dns().map(|d| match d {
                    DnsSource::Address { name, port } => DnsView {
                        name: name.clone(),
                        port: Some(*port),
                        srv: false,
                        resolution: dp.discovery(name_of_service, s.name().as_str()),
                    },
                    DnsSource::Srv { name } => DnsView {
                        name: name.clone(),
                        port: None,
                        srv: true,
                        resolution: dp.discovery(name_of_service, s.name().as_str()),
                    },
                }),
            }
        })
        .collect();
    Some(ServiceView {
        name: name.to_owned(),
        revision: record.map_or(0, |r| r.revision),
        origin: record.map_or(Origin::File, |r| r.origin),
        updated_at: record.map(|r| r.updated_at.clone()).unwrap_or_default(),
        active: active_stack(spec, record),
        routing: RoutingView {
            listeners: spec
                .listeners()
                .iter()
                .map(|l| l.as_str().to_owned())
                .collect(),
            hosts: spec.hosts().iter().map(ToString::to_string).collect(),
            path_prefix: spec.path_prefix().to_owned(),
            load_balancing: spec.load_balancing().as_str().to_owned(),
            pin_header: spec.pin_header().map(str::to_owned),
            sticky: spec.sticky().map(|s| match s {
                Sticky::Cookie(c) => StickyView {
                    cookie: Some(c.clone()),
                    header: None,
                },
                Sticky::Header(h) => StickyView {
                    cookie: None,
                    header: Some(h.clone()),
                },
            }),
            preserve_host: spec.preserve_host(),
            fail_open: spec.fail_open(),
        },
        stacks,
        deployment: None,
    })
}
