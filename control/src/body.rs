//! Every JSON request body the API accepts, decoded and validated as its handler does it, behind
//! one public function over bytes: the entry point of the fuzz targets in `fuzz/` and of their
//! regression tests.
//!
//! It changes nothing. Writes are planned (`crate::change::plan`, which is pure) against a fixed
//! in-memory state of one service `web` with stacks `blue` (weight 100) and `green` (weight 0),
//! and the plan is dropped; a deployment body goes through the same validation as
//! `POST .../deployments` before anything is started.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use switchyard_config::{Config, raw};

use crate::change::{Change, plan};
use crate::deploy::DeploymentSpec;
use crate::error::ApiError;
use crate::json;

/// Which request body the bytes are.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// `POST /v1/services`
    Service,
    /// `POST /v1/services/{service}/stacks`
    Stack,
    /// `PUT /v1/services/{service}/weights`
    Weights,
    /// `PUT /v1/services/{service}/stacks/{stack}/endpoints`
    Endpoints,
    /// `POST /v1/services/{service}/deployments`
    Deployment,
}

impl BodyKind {
    /// Every kind, in a fixed order (a fuzz input's first byte picks one).
    pub const ALL: [Self; 5] = [
        Self::Service,
        Self::Stack,
        Self::Weights,
        Self::Endpoints,
        Self::Deployment,
    ];
}

const STATE: &str = r#"
[[listeners]]
name = "public"
bind = "127.0.0.1:0"

[[services]]
name = "web"
listeners = ["public"]

[[services.stacks]]
name = "blue"
weight = 100
endpoints = ["127.0.0.1:9001"]

[[services.stacks]]
name = "green"
weight = 0
endpoints = ["127.0.0.1:9002"]
"#;

fn state() -> &'static Config {
    static STATE_CONFIG: OnceLock<Config> = OnceLock::new();
    STATE_CONFIG.get_or_init(|| {
        switchyard_config::parse(STATE, Path::new("state.toml"))
            .expect("the fixed state is a valid configuration")
    })
}

/// Decodes `bytes` as the `kind` body and validates it as its handler would against the fixed
/// state; `Ok` when the handler would go on to apply it.
#[doc(hidden)]
pub fn check_body(kind: BodyKind, bytes: &[u8]) -> Result<(), ApiError> {
    let change = match kind {
        BodyKind::Service => {
            let body: raw::Service = json::decode(bytes)?;
            let name = body.name.clone();
            return plan_change(&name, Change::CreateService(Box::new(body)));
        }
        BodyKind::Stack => Change::AddStack(Box::new(json::decode::<raw::Stack>(bytes)?)),
        BodyKind::Weights => json::decode::<crate::api::service::WeightsBody>(bytes)?.into_change(),
        BodyKind::Endpoints => {
            json::decode::<crate::api::stack::EndpointsBody>(bytes)?.into_change("blue".to_owned())
        }
        BodyKind::Deployment => {
            let spec: DeploymentSpec = json::decode(bytes)?;
            return crate::deploy::validate_spec(&spec)
                .map(drop)
                .map_err(|p| ApiError::Invalid(p.join("; ")));
        }
    };
    plan_change("web", change)
}

fn plan_change(service: &str, change: Change) -> Result<(), ApiError> {
    plan(
        state(),
        &BTreeMap::new(),
        service,
        None,
        &change,
        Path::new("."),
        "1970-01-01T00:00:00Z",
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_bodies_of_every_kind_pass() {
        let ok: [(BodyKind, &str); 5] = [
            (
                BodyKind::Service,
                r#"{"name":"api","listeners":["public"],"path_prefix":"/api","stacks":[{"name":"a","weight":1,"endpoints":["127.0.0.1:1"]}]}"#,
            ),
            (
                BodyKind::Stack,
                r#"{"name":"canary","endpoints":["127.0.0.1:9003"]}"#,
            ),
            (BodyKind::Weights, r#"{"weights":{"blue":90,"green":10}}"#),
            (BodyKind::Endpoints, r#"{"endpoints":["127.0.0.1:9009"]}"#),
            (
                BodyKind::Deployment,
                r#"{"stack":"v2","version":"v2","source":{"endpoints":["127.0.0.1:9010"]}}"#,
            ),
        ];
        for (kind, body) in ok {
            assert!(
                check_body(kind, body.as_bytes()).is_ok(),
                "{kind:?}: {body}"
            );
        }
    }

    #[test]
    fn invalid_bodies_are_refused_with_an_api_error() {
        assert!(check_body(BodyKind::Weights, br#"{"weights":{"nope":1}}"#).is_err());
        assert!(check_body(BodyKind::Stack, b"{").is_err());
        assert!(check_body(BodyKind::Deployment, br#"{"stack":"","version":" "}"#).is_err());
    }
}
