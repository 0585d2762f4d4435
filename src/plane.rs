//! The control plane's view of the data plane: [`ProxyPlane`] implements control's
//! [`DataPlane`] trait over the proxy's handle, so neither crate depends on the other. Its
//! registry holds the proxy's metrics, the process's (CPU, memory, open files) and the
//! expiry of the certificates the listeners serve.

use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, LabelPair, MetricFamily, MetricType};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_certs::CertStore;
use switchyard_config::{Config, Figures, Reading, Window};
use switchyard_control::{BoxFuture, DataPlane, EndpointState, EndpointStatus, PublicListener};
use switchyard_proxy::{ProxyHandle, ShownHealth};

/// The proxy, as control drives it, and the metrics registry `GET /metrics` encodes.
pub struct ProxyPlane(pub ProxyHandle, pub Option<prometheus::Registry>);

impl ProxyPlane {
    /// A plane over `proxy` with its metrics in a registry of their own (no global default
    /// registry), or without metrics when `metrics` is false.
    pub fn new(proxy: ProxyHandle, metrics: bool) -> Result<Self, prometheus::Error> {
        let registry = if metrics {
            let r = prometheus::Registry::new();
            proxy.register_metrics(&r)?;
            r.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))?;
            Some(r)
        } else {
            None
        };
        Ok(Self(proxy, registry))
    }

    /// Adds `switchyard_tls_certificate_expiry_seconds` for the certificates in `stores`
    /// (read at scrape time, so a reload shows); nothing when metrics are off.
    pub fn with_certificates(self, stores: Vec<Arc<CertStore>>) -> Result<Self, prometheus::Error> {
        if let Some(r) = &self.1 {
            r.register(Box::new(CertExpiry::new(stores)))?;
        }
        Ok(self)
    }
}

const EXPIRY_NAME: &str = "switchyard_tls_certificate_expiry_seconds";
const EXPIRY_HELP: &str = "When each served certificate expires (its notAfter), in seconds since the Unix epoch, by its first DNS name (the earliest when several share one).";

/// The expiry of every certificate the listeners and the control API serve.
struct CertExpiry {
    stores: Vec<Arc<CertStore>>,
    desc: Desc,
}

impl CertExpiry {
    fn new(stores: Vec<Arc<CertStore>>) -> Self {
        let desc = Desc::new(
            EXPIRY_NAME.to_owned(),
            EXPIRY_HELP.to_owned(),
            vec!["name".to_owned()],
            Default::default(),
        )
        .expect("a static metric description is valid");
        Self { stores, desc }
    }
}

impl Collector for CertExpiry {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut by_name: BTreeMap<String, SystemTime> = BTreeMap::new();
        for store in &self.stores {
            for c in store.current() {
                let name = c
                    .dns_names
                    .first()
                    .cloned()
                    .unwrap_or_else(|| c.cert.display().to_string());
                let e = by_name.entry(name).or_insert(c.not_after);
                *e = (*e).min(c.not_after);
            }
        }
        if by_name.is_empty() {
            return Vec::new();
        }
        let metrics = by_name
            .into_iter()
            .map(|(name, not_after)| {
                let seconds = match not_after.duration_since(UNIX_EPOCH) {
                    Ok(d) => d.as_secs_f64(),
                    Err(e) => -e.duration().as_secs_f64(),
                };
                let mut label = LabelPair::default();
                label.set_name("name".to_owned());
                label.set_value(name);
                let mut g = proto::Gauge::default();
                g.set_value(seconds);
                let mut m = proto::Metric::default();
                m.set_label(vec![label]);
                m.set_gauge(g);
                m
            })
            .collect();
        let mut f = MetricFamily::default();
        f.set_name(EXPIRY_NAME.to_owned());
        f.set_help(EXPIRY_HELP.to_owned());
        f.set_field_type(MetricType::GAUGE);
        f.set_metric(metrics);
        vec![f]
    }
}

impl DataPlane for ProxyPlane {
    fn apply(&self, desired: Arc<Config>) -> BoxFuture<'_, Result<u64, String>> {
        Box::pin(self.0.apply(desired))
    }

    fn listeners(&self) -> Vec<PublicListener> {
        self.0
            .listeners()
            .iter()
            .map(|l| PublicListener {
                name: l.name.to_string(),
                address: l.addr,
                tls: l.tls,
            })
            .collect()
    }

    fn endpoints(&self, service: &str, stack: &str) -> Vec<EndpointStatus> {
        // One stack's status (checks, counters, ejections), each endpoint once, its whole
        // status as the detail.
        let Some(status) = self.0.stack_status(service, stack) else {
            return Vec::new();
        };
        status
            .endpoints
            .iter()
            .map(|e| EndpointStatus {
                address: e.endpoint.clone(),
                state: match e.state {
                    ShownHealth::Healthy => EndpointState::Healthy,
                    ShownHealth::Unhealthy => EndpointState::Unhealthy,
                    ShownHealth::Ejected => EndpointState::Ejected,
                    ShownHealth::Unknown => EndpointState::Unknown,
                    ShownHealth::Unchecked => EndpointState::Unchecked,
                },
                in_flight: u64::from(e.in_flight),
                requests_total: e.requests_total,
                detail: serde_json::to_value(e).ok(),
            })
            .collect()
    }

    fn stack_figures(&self, service: &str, stack: &str, window: Window) -> Option<Figures> {
        self.0.stack_figures(service, stack, window)
    }

    fn stack_reading(&self, service: &str, stack: &str) -> Option<Reading> {
        self.0.stack_reading(service, stack)
    }

    fn metrics(&self) -> Option<String> {
        let families = self.1.as_ref()?.gather();
        let mut out = String::new();
        match prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            Ok(()) => Some(out),
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode metrics");
                None
            }
        }
    }

    fn discovery(&self, service: &str, stack: &str) -> Option<serde_json::Value> {
        let dns = self.0.stack_status(service, stack)?.dns?;
        serde_json::to_value(dns).ok()
    }
}
