//! Stack routes: register a stack, replace its endpoints, remove it.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use switchyard_config::{Role, raw};
use utoipa::{IntoParams, ToSchema};

use super::{
    ApiPath, ApiQuery, check_name, existing_service, if_match, prefers_minimal, service_response,
};
use crate::auth::Caller;
use crate::change::Change;
use crate::error::{ApiError, ErrorBody};
use crate::json;
use crate::state::ControlState;
use crate::view::ServiceView;

/// `PUT /v1/services/{service}/stacks/{stack}/endpoints`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct EndpointsBody {
    /// The new endpoints, `host:port` or `https://host:port`; replaces a DNS source too.
    #[schema(example = json!(["127.0.0.1:9003", "127.0.0.1:9004"]), min_items = 1)]
    endpoints: Vec<String>,
}

impl EndpointsBody {
    /// The change this body asks for, to `stack`.
    pub(crate) fn into_change(self, stack: String) -> Change {
        Change::SetEndpoints {
            stack,
            endpoints: self.endpoints,
        }
    }
}

/// `DELETE /v1/services/{service}/stacks/{stack}` options.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeleteStackQuery {
    /// Remove the stack even while it has weight.
    force: Option<bool>,
    /// Accept a result where every remaining stack is at weight 0; without it such a removal
    /// is refused with 409 `no_traffic`.
    allow_no_traffic: Option<bool>,
}

#[utoipa::path(
    post, path = "/v1/services/{service}/stacks", tag = "stacks",
    operation_id = "add_stack",
    description = "Registers a stack (role deploy); weight defaults to 0.",
    params(
        ("service" = String, Path, description = "Service name"),
        ("If-Match" = Option<String>, Header, description = "Expected revision"),
    ),
    request_body = crate::openapi::StackBody,
    responses(
        (status = 201, description = "Registered", body = ServiceView),
        (status = 400, description = "Malformed JSON or an invalid value; the message names the field", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "The stack exists", body = ErrorBody),
        (status = 412, description = "Revision mismatch", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 422, description = "Unknown field or wrong type, or the proxy refused it", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn add(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath(service): ApiPath<String>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Deploy, Some(&service))?;
    existing_service(&state, &service)?;
    let if_match = if_match(request.headers())?;
    let body: raw::Stack = json::read(request).await?;
    let published = state
        .write(
            caller.name(),
            &service,
            if_match,
            Change::AddStack(Box::new(body)),
        )
        .await?;
    service_response(&state, &published, &service, StatusCode::CREATED, false)
}

#[utoipa::path(
    put, path = "/v1/services/{service}/stacks/{stack}/endpoints", tag = "stacks",
    description = "Replaces a stack's endpoints (role deploy).",
    params(
        ("service" = String, Path, description = "Service name"),
        ("stack" = String, Path, description = "Stack name"),
        ("If-Match" = Option<String>, Header, description = "Expected revision"),
        ("Prefer" = Option<String>, Header, description = "`return=minimal`: answer 204 with the new revision in `ETag` (and `Preference-Applied: return=minimal`) instead of the service view"),
    ),
    request_body = EndpointsBody,
    responses(
        (status = 200, description = "Applied", body = ServiceView),
        (status = 204, description = "Applied; `Prefer: return=minimal` asked for no view"),
        (status = 400, description = "Malformed JSON or an invalid endpoint; the message names it", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service or stack", body = ErrorBody),
        (status = 412, description = "Revision mismatch", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 422, description = "Unknown field or wrong type, or the proxy refused it", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn set_endpoints(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath((service, stack)): ApiPath<(String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Deploy, Some(&service))?;
    existing_service(&state, &service)?;
    check_name("stack", &stack)?;
    let if_match = if_match(request.headers())?;
    let minimal = prefers_minimal(request.headers());
    let change = json::read::<EndpointsBody>(request)
        .await?
        .into_change(stack);
    let published = state
        .write(caller.name(), &service, if_match, change)
        .await?;
    service_response(&state, &published, &service, StatusCode::OK, minimal)
}

#[utoipa::path(
    delete, path = "/v1/services/{service}/stacks/{stack}", tag = "stacks",
    operation_id = "delete_stack",
    description = "Removes a stack (role deploy); refused while it has weight unless force=true. Requests in flight on it finish. The replicas of a process or container stack are stopped (given the drain timeout of the deployment that made it).",
    params(
        ("service" = String, Path, description = "Service name"),
        ("stack" = String, Path, description = "Stack name"),
        ("If-Match" = Option<String>, Header, description = "Expected revision"),
        ("Prefer" = Option<String>, Header, description = "`return=minimal`: answer 204 with the new revision in `ETag` (and `Preference-Applied: return=minimal`) instead of the service view"),
        DeleteStackQuery,
    ),
    responses(
        (status = 200, description = "Removed", body = ServiceView),
        (status = 204, description = "Removed; `Prefer: return=minimal` asked for no view"),
        (status = 400, description = "Invalid name or query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service or stack", body = ErrorBody),
        (status = 409, description = "The stack still has weight, or removing it would leave every stack at weight 0 (`no_traffic`)", body = ErrorBody),
        (status = 412, description = "Revision mismatch", body = ErrorBody),
        (status = 422, description = "The proxy refused the change", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn remove(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath((service, stack)): ApiPath<(String, String)>,
    ApiQuery(query): ApiQuery<DeleteStackQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Deploy, Some(&service))?;
    existing_service(&state, &service)?;
    check_name("stack", &stack)?;
    let if_match = if_match(&headers)?;
    let change = Change::DeleteStack {
        stack: stack.clone(),
        force: query.force.unwrap_or(false),
        allow_no_traffic: query.allow_no_traffic.unwrap_or(false),
    };
    let published = state
        .write(caller.name(), &service, if_match, change)
        .await?;
    // Its process or container replicas stop now, not at the next start.
    state.deployments().release_removed(&service, vec![stack]);
    service_response(
        &state,
        &published,
        &service,
        StatusCode::OK,
        prefers_minimal(&headers),
    )
}
