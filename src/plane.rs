//! The control plane's view of the data plane: [`ProxyPlane`] implements control's
//! [`DataPlane`] trait over the proxy's handle, so neither crate depends on the other.

use std::sync::Arc;
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
            Some(r)
        } else {
            None
        };
        Ok(Self(proxy, registry))
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
