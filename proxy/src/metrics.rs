//! Prometheus view of the data plane: a [`Collector`] that reads, at scrape time, the same
//! per-stack atomics the live figures come from (`crate::traffic`) and the current snapshot's
//! state (weights, endpoint health, generation). The request path therefore pays once for
//! figures and metrics, and never looks up a label, formats a string or takes a lock for them:
//! all of that happens here, when Prometheus scrapes.
//!
//! Metric names follow Prometheus conventions (`switchyard_` prefix, base units, `_total`);
//! labels are bounded (listener, protocol, service, stack, version, endpoint, code class,
//! cause).

use crate::error::Cause;
use crate::handle::Shared;
use crate::listener::PROTOCOLS;
use crate::traffic::{BOUNDS_US, HistogramReading, PROMETHEUS_BOUNDS_US};
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// (name, help, type, label names) of every family the collector exports.
const FAMILIES: &[(&str, &str, MetricType, &[&str])] = &[
    (
        "switchyard_requests_total",
        "Requests answered, by listener, service, stack and status class (proxy errors by the status sent).",
        MetricType::COUNTER,
        &["listener", "service", "stack", "code_class"],
    ),
    (
        "switchyard_request_duration_seconds",
        "Time from request to the end of the response body.",
        MetricType::HISTOGRAM,
        &["service", "stack"],
    ),
    (
        "switchyard_upstream_connect_duration_seconds",
        "Time to open a new upstream connection (TCP, TLS and HTTP handshake).",
        MetricType::HISTOGRAM,
        &["service", "stack"],
    ),
    (
        "switchyard_request_bytes_total",
        "Request body bytes sent to endpoints.",
        MetricType::COUNTER,
        &["service", "stack"],
    ),
    (
        "switchyard_response_bytes_total",
        "Response body bytes received from endpoints.",
        MetricType::COUNTER,
        &["service", "stack"],
    ),
    (
        "switchyard_proxy_errors_total",
        "Answers the proxy generated for a stack, by cause (as in x-switchyard-error).",
        MetricType::COUNTER,
        &["service", "stack", "cause"],
    ),
    (
        "switchyard_stack_weight",
        "Weight of each stack in the routing snapshot.",
        MetricType::GAUGE,
        &["service", "stack", "version"],
    ),
    (
        "switchyard_endpoint_healthy",
        "1 when the endpoint takes traffic, else 0.",
        MetricType::GAUGE,
        &["service", "stack", "endpoint"],
    ),
    (
        "switchyard_endpoint_requests_total",
        "Requests sent to each endpoint.",
        MetricType::COUNTER,
        &["service", "stack", "endpoint"],
    ),
    (
        "switchyard_upstream_pool_idle",
        "Idle pooled upstream connections.",
        MetricType::GAUGE,
        &["service", "stack"],
    ),
    (
        "switchyard_routing_snapshot_generation",
        "Generation of the routing snapshot requests route on.",
        MetricType::GAUGE,
        &[],
    ),
    (
        "switchyard_downstream_connections",
        "Open client connections, by listener and protocol (a plain-HTTP connection counts from its first request).",
        MetricType::GAUGE,
        &["listener", "protocol"],
    ),
    (
        "switchyard_downstream_connections_accepted_total",
        "Client connections accepted.",
        MetricType::COUNTER,
        &["listener"],
    ),
    (
        "switchyard_tls_handshakes_total",
        "TLS handshakes completed on HTTPS listeners.",
        MetricType::COUNTER,
        &["listener"],
    ),
    (
        "switchyard_tls_handshake_errors_total",
        "TLS handshakes that failed or timed out on HTTPS listeners.",
        MetricType::COUNTER,
        &["listener"],
    ),
    (
        "switchyard_endpoint_ejections_total",
        "Passive-health (outlier detection) ejections of each endpoint.",
        MetricType::COUNTER,
        &["service", "stack", "endpoint"],
    ),
    (
        "switchyard_access_log_dropped_total",
        "Access-log lines dropped because the writer fell behind (or could not write).",
        MetricType::COUNTER,
        &[],
    ),
    (
        "switchyard_shadow_copies_total",
        "Shadow copies of live requests sent to the service's shadow stack.",
        MetricType::COUNTER,
        &["service", "stack"],
    ),
    (
        "switchyard_shadow_dropped_total",
        "Shadow copies not sent, by reason: queue_full, body_too_large, body_incomplete.",
        MetricType::COUNTER,
        &["service", "reason"],
    ),
    (
        "switchyard_worker_connections_accepted_total",
        "Client connections accepted by each thread-per-core worker (absent without workers).",
        MetricType::COUNTER,
        &["worker"],
    ),
    (
        "switchyard_downstream_connections_dormant",
        "Kept-alive plain HTTP/1.1 connections idle past a second, parked without a task of their own (also counted in switchyard_downstream_connections).",
        MetricType::GAUGE,
        &["listener"],
    ),
];

/// The data plane's metrics, read from the live snapshot at scrape time.
pub(crate) struct ProxyCollector {
    shared: Arc<Shared>,
    /// Listener names by their position in the configuration.
    listeners: Vec<String>,
    /// Whether each listener terminates TLS, by position.
    tls: Vec<bool>,
    descs: Vec<Desc>,
}

impl ProxyCollector {
    pub(crate) fn new(shared: Arc<Shared>, listeners: Vec<String>, tls: Vec<bool>) -> Self {
        let descs = FAMILIES
            .iter()
            .map(|(name, help, _, labels)| {
                Desc::new(
                    (*name).to_owned(),
                    (*help).to_owned(),
                    labels.iter().map(|l| (*l).to_owned()).collect(),
                    HashMap::new(),
                )
                .expect("static metric descriptions are valid")
            })
            .collect();
        Self {
            shared,
            listeners,
            tls,
            descs,
        }
    }
}

fn labels(names: &[&str], values: &[&str]) -> Vec<LabelPair> {
    names
        .iter()
        .zip(values)
        .map(|(n, v)| {
            let mut p = LabelPair::default();
            p.set_name((*n).to_owned());
            p.set_value((*v).to_owned());
            p
        })
        .collect()
}

fn value_metric(label: Vec<LabelPair>, kind: MetricType, v: f64) -> proto::Metric {
    let mut m = proto::Metric::default();
    m.set_label(label);
    if kind == MetricType::COUNTER {
        let mut c = proto::Counter::default();
        c.set_value(v);
        m.set_counter(c);
    } else {
        let mut g = proto::Gauge::default();
        g.set_value(v);
        m.set_gauge(g);
    }
    m
}

/// A Prometheus histogram (0.5 ms … 10 s) from the fine-grained latency buckets.
fn histogram_metric(label: Vec<LabelPair>, h: &HistogramReading) -> proto::Metric {
    let counts = h.counts;
    let mut buckets = Vec::with_capacity(PROMETHEUS_BOUNDS_US.len());
    let mut cumulative = 0u64;
    let mut fine = 0usize;
    for bound in PROMETHEUS_BOUNDS_US {
        while fine < BOUNDS_US.len() && BOUNDS_US[fine] <= bound {
            cumulative += counts[fine];
            fine += 1;
        }
        let mut b = proto::Bucket::default();
        b.set_upper_bound(bound as f64 / 1e6);
        b.set_cumulative_count(cumulative);
        buckets.push(b);
    }
    let mut hist = proto::Histogram::default();
    hist.set_sample_count(counts.iter().sum());
    hist.set_sample_sum(h.sum_seconds);
    hist.set_bucket(buckets);
    let mut m = proto::Metric::default();
    m.set_label(label);
    m.set_histogram(hist);
    m
}

/// The status class label of a status code.
fn class_label(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

impl Collector for ProxyCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snap = self.shared.snapshot.load_full();
        let mut out: Vec<Vec<proto::Metric>> = FAMILIES.iter().map(|_| Vec::new()).collect();
        let l = |i: usize| FAMILIES[i].3;
        for svc in snap.services() {
            let service = svc.name().as_str();
            for st in svc.stacks() {
                let stack = st.name().as_str();
                let stats = st.stats();
                for li in 0..stats.listener_slots().min(self.listeners.len().max(1)) {
                    let listener = self.listeners.get(li).map_or("", String::as_str);
                    let mut by_class = [0u64; 5];
                    for (i, n) in stats.classes(li).into_iter().enumerate() {
                        by_class[i] += n;
                    }
                    for (cause, n) in Cause::ALL.iter().zip(stats.errors(li)) {
                        by_class[usize::from(cause.status().as_u16() / 100).clamp(1, 5) - 1] += n;
                    }
                    for (i, n) in by_class.into_iter().enumerate() {
                        if n == 0 {
                            continue;
                        }
                        let class = class_label(u16::try_from(i + 1).unwrap_or(5) * 100);
                        out[0].push(value_metric(
                            labels(l(0), &[listener, service, stack, class]),
                            MetricType::COUNTER,
                            n as f64,
                        ));
                    }
                }
                let ss = [service, stack];
                out[1].push(histogram_metric(labels(l(1), &ss), &stats.total()));
                out[2].push(histogram_metric(labels(l(2), &ss), &stats.connect()));
                let (bytes_in, bytes_out) = stats.bytes();
                out[3].push(value_metric(
                    labels(l(3), &ss),
                    MetricType::COUNTER,
                    bytes_in as f64,
                ));
                out[4].push(value_metric(
                    labels(l(4), &ss),
                    MetricType::COUNTER,
                    bytes_out as f64,
                ));
                let mut errors = [0u64; crate::traffic::CAUSES];
                for li in 0..stats.listener_slots() {
                    for (a, b) in errors.iter_mut().zip(stats.errors(li)) {
                        *a += b;
                    }
                }
                for (cause, n) in Cause::ALL.iter().zip(errors) {
                    if n > 0 {
                        out[5].push(value_metric(
                            labels(l(5), &[service, stack, cause.label()]),
                            MetricType::COUNTER,
                            n as f64,
                        ));
                    }
                }
                out[6].push(value_metric(
                    labels(l(6), &[service, stack, st.version()]),
                    MetricType::GAUGE,
                    f64::from(st.weight()),
                ));
                let mut idle = 0usize;
                let mut seen: Vec<*const crate::endpoint::EndpointState> = Vec::new();
                for ep in st.endpoints() {
                    // SRV weights repeat an endpoint; report it once.
                    if seen.contains(&Arc::as_ptr(ep)) {
                        continue;
                    }
                    seen.push(Arc::as_ptr(ep));
                    let name = ep.addr().to_string();
                    let healthy = if ep.health() == crate::endpoint::Health::Healthy {
                        1.0
                    } else {
                        0.0
                    };
                    out[7].push(value_metric(
                        labels(l(7), &[service, stack, &name]),
                        MetricType::GAUGE,
                        healthy,
                    ));
                    out[8].push(value_metric(
                        labels(l(8), &[service, stack, &name]),
                        MetricType::COUNTER,
                        ep.requests_total() as f64,
                    ));
                    out[15].push(value_metric(
                        labels(l(15), &[service, stack, &name]),
                        MetricType::COUNTER,
                        ep.outlier.total() as f64,
                    ));
                    idle += ep.pool().idle();
                }
                out[9].push(value_metric(
                    labels(l(9), &ss),
                    MetricType::GAUGE,
                    idle as f64,
                ));
            }
        }
        out[10].push(value_metric(
            Vec::new(),
            MetricType::GAUGE,
            snap.generation() as f64,
        ));
        let count = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
        for (i, c) in self.shared.connections.iter().enumerate() {
            let listener = self.listeners.get(i).map_or("", String::as_str);
            for (p, open) in PROTOCOLS.iter().zip(&c.open) {
                out[11].push(value_metric(
                    labels(l(11), &[listener, *p]),
                    MetricType::GAUGE,
                    count(open),
                ));
            }
            out[12].push(value_metric(
                labels(l(12), &[listener]),
                MetricType::COUNTER,
                count(&c.accepted),
            ));
            if self.tls.get(i).copied().unwrap_or(false) {
                out[13].push(value_metric(
                    labels(l(13), &[listener]),
                    MetricType::COUNTER,
                    count(&c.handshakes),
                ));
                out[14].push(value_metric(
                    labels(l(14), &[listener]),
                    MetricType::COUNTER,
                    count(&c.handshake_errors),
                ));
            } else {
                // Only plain connections park (see `crate::listener`'s lot).
                out[20].push(value_metric(
                    labels(l(20), &[listener]),
                    MetricType::GAUGE,
                    count(&c.dormant),
                ));
            }
        }
        for (w, accepted) in self.shared.worker_accepted.iter().enumerate() {
            out[19].push(value_metric(
                labels(l(19), &[&w.to_string()]),
                MetricType::COUNTER,
                count(accepted),
            ));
        }
        if let Some(log) = &self.shared.settings.access_log {
            out[16].push(value_metric(
                Vec::new(),
                MetricType::COUNTER,
                log.dropped() as f64,
            ));
        }
        for svc in snap.services() {
            let Some((stack, counters)) = svc.shadow() else {
                continue;
            };
            let service = svc.name().as_str();
            let (copies, full, too_large, incomplete) = counters.counts();
            out[17].push(value_metric(
                labels(l(17), &[service, stack.name().as_str()]),
                MetricType::COUNTER,
                copies as f64,
            ));
            for (reason, n) in [
                ("queue_full", full),
                ("body_too_large", too_large),
                ("body_incomplete", incomplete),
            ] {
                out[18].push(value_metric(
                    labels(l(18), &[service, reason]),
                    MetricType::COUNTER,
                    n as f64,
                ));
            }
        }
        FAMILIES
            .iter()
            .zip(out)
            .filter(|(_, metrics)| !metrics.is_empty())
            .map(|((name, help, kind, _), metrics)| {
                let mut f = MetricFamily::default();
                f.set_name((*name).to_owned());
                f.set_help((*help).to_owned());
                f.set_field_type(*kind);
                f.set_metric(metrics);
                f
            })
            .collect()
    }
}
