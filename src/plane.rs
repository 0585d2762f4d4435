//! The control plane's view of the data plane: [`ProxyPlane`] implements control's
//! [`DataPlane`] trait over the proxy's handle, so neither crate depends on the other.

use std::sync::Arc;
use switchyard_config::Config;
use switchyard_control::{BoxFuture, DataPlane, EndpointState, EndpointStatus, PublicListener};
use switchyard_proxy::{Health, ProxyHandle};

/// The proxy, as control drives it.
pub struct ProxyPlane(pub ProxyHandle);

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
        // One stack's status (checks, counters, ejections), shown as each endpoint's detail.
        let details: Vec<serde_json::Value> = self
            .0
            .stack_status(service, stack)
            .map(|s| {
                s.endpoints
                    .iter()
                    .filter_map(|e| serde_json::to_value(e).ok())
                    .collect()
            })
            .unwrap_or_default();
        self.0
            .endpoints(service, stack)
            .iter()
            .map(|e| EndpointStatus {
                address: e.key().endpoint.to_string(),
                state: match e.health() {
                    Health::Healthy => EndpointState::Healthy,
                    Health::Unhealthy => EndpointState::Unhealthy,
                    Health::Ejected => EndpointState::Ejected,
                    Health::Unknown => EndpointState::Unknown,
                },
                in_flight: u64::from(e.in_flight()),
                requests_total: e.requests_total(),
                detail: details
                    .iter()
                    .find(|d| {
                        d["endpoint"] == e.key().endpoint.to_string()
                            && d["address"] == e.addr().to_string()
                    })
                    .cloned(),
            })
            .collect()
    }

    fn discovery(&self, service: &str, stack: &str) -> Option<serde_json::Value> {
        let dns = self.0.stack_status(service, stack)?.dns?;
        serde_json::to_value(dns).ok()
    }
}
