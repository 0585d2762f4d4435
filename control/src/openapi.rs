//! The OpenAPI 3 document of the API, generated from the handlers' annotations and types.
//!
//! The request bodies for services and stacks are decoded as `switchyard_config::raw` types,
//! which do not depend on utoipa; [`ServiceBody`] and [`StackBody`] describe them here, and a
//! test keeps their field names equal to the raw types'. A second test checks that every route
//! of the router is in the document.

use axum::Json;
use switchyard_config::Role;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::api::{deployment, history, probe, service, stack};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};

/// The API description.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchyard control API",
        description = "Services, stacks and weights of a running Switchyard proxy. Errors are always {\"error\": {\"code\", \"message\"}}.",
    ),
    paths(
        probe::healthz,
        probe::readyz,
        document,
        service::list,
        service::create,
        service::show,
        service::remove,
        service::set_weights,
        stack::add,
        stack::set_endpoints,
        stack::remove,
        history::list,
        deployment::start,
        deployment::list,
        deployment::show,
        deployment::events,
        deployment::promote,
        deployment::pause,
        deployment::resume,
        deployment::abort,
    ),
    modifiers(&BearerAuth),
)]
pub(crate) struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token secret from `switchyard token new`; its SHA-256 is in the config",
                    ))
                    .build(),
            ),
        );
    }
}

#[utoipa::path(
    get, path = "/v1/openapi.json", tag = "meta",
    operation_id = "get_openapi",
    description = "This document.",
    responses(
        (status = 200, description = "The OpenAPI 3 document", content_type = "application/json"),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn document(caller: Caller) -> Result<Json<utoipa::openapi::OpenApi>, ApiError> {
    caller.authorize(Role::Read, None)?;
    Ok(Json(ApiDoc::openapi()))
}

/// `POST /v1/services`: a service, as in the configuration file's `[[services]]`.
#[derive(ToSchema)]
#[allow(dead_code)] // describes the body only; it is decoded as `raw::Service`
pub(crate) struct ServiceBody {
    /// Service name, `[a-z0-9][a-z0-9-]{0,62}`.
    name: String,
    /// Listener names the service is reachable on.
    listeners: Vec<String>,
    /// Host patterns (exact or `*.suffix`); empty means any host.
    hosts: Option<Vec<String>>,
    /// Path prefix; the longest matching prefix wins (default `/`).
    path_prefix: Option<String>,
    /// `round_robin` (default) or `least_request`.
    load_balancing: Option<String>,
    /// Header pinning a request to a stack; `""` disables pinning.
    pin_header: Option<String>,
    /// `{"cookie": NAME}` or `{"header": NAME}`.
    #[schema(value_type = Option<Object>)]
    sticky: Option<()>,
    /// Send the client's Host header upstream (default true).
    preserve_host: Option<bool>,
    /// `{"connect": "5s", "upstream_response": "60s", "request_body": "30s"}`.
    #[schema(value_type = Option<Object>)]
    timeouts: Option<()>,
    /// `Upgrade` protocols tunnelled to the endpoints (default `["websocket"]`; `h2c` refused).
    upgrades: Option<Vec<String>>,
    /// Active health check for the stacks, as in the configuration file.
    #[schema(value_type = Option<Object>)]
    health_check: Option<()>,
    /// Send to every endpoint when none is healthy.
    fail_open: Option<bool>,
    /// Passive health for the stacks: `enabled`, `consecutive_failures`, ejection times.
    #[schema(value_type = Option<Object>)]
    outlier_detection: Option<()>,
    /// Slow-start window for new endpoints, e.g. `30s`.
    slow_start: Option<String>,
    /// The stacks.
    stacks: Option<Vec<StackBody>>,
}

/// `POST /v1/services/{service}/stacks`: a stack, as in `[[services.stacks]]`.
#[derive(ToSchema)]
#[allow(dead_code)] // describes the body only; it is decoded as `raw::Stack`
#[schema(example = json!({"name": "green", "version": "v1.4", "endpoints": ["127.0.0.1:9003"], "weight": 0}))]
pub(crate) struct StackBody {
    /// Stack name, `[a-z0-9][a-z0-9-]{0,62}`.
    name: String,
    /// Version label.
    version: Option<String>,
    /// Weight 0..=10000 (default 0).
    weight: Option<i64>,
    /// `host:port` or `https://host:port`.
    endpoints: Option<Vec<String>>,
    /// `{"name": ..., "port": ...}` or `{"srv": ...}` instead of endpoints.
    #[schema(value_type = Option<Object>)]
    dns: Option<()>,
    /// Health check overriding the service's.
    #[schema(value_type = Option<Object>)]
    health_check: Option<()>,
    /// Passive health overriding the service's.
    #[schema(value_type = Option<Object>)]
    outlier_detection: Option<()>,
    /// Slow-start window overriding the service's, e.g. `30s`.
    slow_start: Option<String>,
    /// Upstream TLS: `ca`, `client_cert`, `sni`, `insecure_skip_verify`.
    #[schema(value_type = Option<Object>)]
    tls: Option<()>,
}

#[cfg(test)]
mod tests;
