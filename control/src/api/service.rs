//! Service routes: list, show, create, delete, and set weights.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use switchyard_config::{Role, raw};
use utoipa::ToSchema;

use super::{ApiPath, existing_service, if_match, prefers_minimal, service_response};
use crate::auth::Caller;
use crate::change::Change;
use crate::error::{ApiError, ErrorBody};
use crate::json;
use crate::state::ControlState;
use crate::view::{self, DeletedView, ServiceList, ServiceView};

/// `PUT /v1/services/{service}/weights`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WeightsBody {
    /// New weights (integers 0..=10000; `100.0` counts as 100) by stack name; stacks not
    /// named keep theirs.
    #[schema(example = json!({"blue": 90, "green": 10}))]
    weights: BTreeMap<String, i64>,
    /// Set every stack not named to weight 0.
    #[serde(default)]
    exclusive: bool,
    /// Accept a result where every stack is at weight 0 (every request then gets 503);
    /// without it such a write is refused with 409 `no_traffic`.
    #[serde(default)]
    allow_no_traffic: bool,
}

impl WeightsBody {
    /// The change this body asks for.
    pub(crate) fn into_change(self) -> Change {
        Change::SetWeights {
            weights: self.weights,
            exclusive: self.exclusive,
            allow_no_traffic: self.allow_no_traffic,
        }
    }
}

#[utoipa::path(
    get, path = "/v1/services", tag = "services",
    operation_id = "list_services",
    description = "Every service the token may see, with its stacks, weights, endpoint counts, health summary and active stack.",
    responses(
        (status = 200, description = "The services", body = ServiceList),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<ControlState>,
    caller: Caller,
) -> Result<Json<ServiceList>, ApiError> {
    caller.authorize(Role::Read, None)?;
    let published = state.published();
    let dp = state.data_plane().as_ref();
    let services = published
        .config
        .services()
        .iter()
        .filter(|s| caller.may_see(s.name().as_str()))
        .map(|s| view::summary(&published, dp, s))
        .collect();
    // Reads keep answering while etcd is away, without waiting on it: the instances are
    // left out then.
    let instances = match state.store_available() {
        Some(true) => super::instance::current(&state).await.ok(),
        Some(false) | None => None,
    };
    Ok(Json(ServiceList {
        services,
        instances,
    }))
}

#[utoipa::path(
    get, path = "/v1/services/{service}", tag = "services",
    operation_id = "get_service",
    description = "One service in full: revision (also the ETag), routing, stacks with endpoints and health, and the deployment in progress.",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "The service", body = ServiceView),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn show(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath(service): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Read, Some(&service))?;
    existing_service(&state, &service)?;
    service_response(&state, &state.published(), &service, StatusCode::OK, false)
}

#[utoipa::path(
    post, path = "/v1/services", tag = "services",
    operation_id = "create_service",
    description = "Creates a service at runtime (role admin).",
    params(("If-Match" = Option<String>, Header, description = "Expected revision (0 for a name never used)")),
    request_body = crate::openapi::ServiceBody,
    responses(
        (status = 201, description = "Created", body = ServiceView),
        (status = 400, description = "Malformed JSON or an invalid value; the message names the field", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 409, description = "The service exists, or another service has the route", body = ErrorBody),
        (status = 412, description = "Revision mismatch", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 422, description = "Unknown field or wrong type, or the proxy refused it", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn create(
    State(state): State<ControlState>,
    caller: Caller,
    request: Request,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Admin, None)?;
    let if_match = if_match(request.headers())?;
    let body: raw::Service = json::read(request).await?;
    caller.authorize(Role::Admin, Some(&body.name))?;
    let name = body.name.clone();
    let published = state
        .write(
            caller.name(),
            &name,
            if_match,
            Change::CreateService(Box::new(body)),
        )
        .await?;
    service_response(&state, &published, &name, StatusCode::CREATED, false)
}

#[utoipa::path(
    delete, path = "/v1/services/{service}", tag = "services",
    operation_id = "delete_service",
    description = "Deletes a service (role admin). The deletion survives restarts even if the configuration file still has the service.",
    params(
        ("service" = String, Path, description = "Service name"),
        ("If-Match" = Option<String>, Header, description = "Expected revision"),
    ),
    responses(
        (status = 200, description = "Deleted", body = DeletedView),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 412, description = "Revision mismatch", body = ErrorBody),
        (status = 422, description = "The proxy refused the change", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn remove(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath(service): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Admin, Some(&service))?;
    existing_service(&state, &service)?;
    let if_match = if_match(&headers)?;
    let stacks: Vec<String> = state
        .published()
        .config
        .service(&service)
        .map(|s| s.stacks().iter().map(|st| st.name().to_string()).collect())
        .unwrap_or_default();
    let published = state
        .write(caller.name(), &service, if_match, Change::DeleteService)
        .await?;
    // Its stacks' process or container replicas stop now, not at the next start.
    state.deployments().release_removed(&service, stacks);
    let revision = published.records.get(&service).map_or(0, |r| r.revision);
    Ok(Json(DeletedView { service, revision }).into_response())
}

#[utoipa::path(
    put, path = "/v1/services/{service}/weights", tag = "weights",
    description = "Sets the weights of the named stacks atomically (role operate); with exclusive, every other stack gets 0. Effective on the next request the proxy routes.",
    params(
        ("service" = String, Path, description = "Service name"),
        ("If-Match" = Option<String>, Header, description = "Expected revision"),
        ("Prefer" = Option<String>, Header, description = "`return=minimal`: answer 204 with the new revision in `ETag` (and `Preference-Applied: return=minimal`) instead of the service view"),
    ),
    request_body = WeightsBody,
    responses(
        (status = 200, description = "Applied", body = ServiceView),
        (status = 204, description = "Applied; `Prefer: return=minimal` asked for no view"),
        (status = 400, description = "Malformed JSON, unknown stack or weight out of range; the message names the field", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "Every stack would be at weight 0 (`no_traffic`) and allow_no_traffic is not set", body = ErrorBody),
        (status = 412, description = "Revision mismatch", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 422, description = "Unknown field, wrong type or duplicate key, or the proxy refused it", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn set_weights(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath(service): ApiPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Operate, Some(&service))?;
    existing_service(&state, &service)?;
    let if_match = if_match(request.headers())?;
    let minimal = prefers_minimal(request.headers());
    let change = json::read::<WeightsBody>(request).await?.into_change();
    let published = state
        .write(caller.name(), &service, if_match, change)
        .await?;
    service_response(&state, &published, &service, StatusCode::OK, minimal)
}
