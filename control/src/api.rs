//! The HTTP API: the route table, the router, and what every handler shares.
//!
//! Every route is declared once in [`routes`]; the router is built from that table and the
//! OpenAPI document test walks the same table, so a route cannot exist undocumented. Handlers
//! follow one order: authenticate (the [`Caller`](crate::Caller) extractor, 401) → authorize role and service
//! (403) → read and decode the body (413, 415, 400, 422) → hand the change to the writer, which
//! validates it against the current state and answers 404/400/409/412 or applies it.

pub(crate) mod dashboard;
pub(crate) mod deployment;
pub(crate) mod history;
pub(crate) mod instance;
pub(crate) mod probe;
pub(crate) mod service;
pub(crate) mod stack;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use switchyard_config::Name;

use crate::error::ApiError;
use crate::json::BODY_LIMIT;
use crate::state::ControlState;
use crate::writer::Published;

/// One route of the API.
pub(crate) struct Route {
    #[cfg_attr(not(test), allow(dead_code))] // read by the OpenAPI coverage test
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    handler: MethodRouter<ControlState>,
}

impl Route {
    /// A route answering `method` on `path` with `handler`.
    fn new<H, T>(method: Method, path: &'static str, handler: H) -> Self
    where
        H: Handler<T, ControlState>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone())
            .expect("the route table uses standard methods only");
        Self {
            method,
            path,
            handler: on(filter, handler),
        }
    }
}

/// Every route of the API.
pub(crate) fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        Route::new(M::GET, "/healthz", probe::healthz),
        Route::new(M::GET, "/readyz", probe::readyz),
        Route::new(M::GET, "/metrics", probe::metrics),
        Route::new(M::GET, "/v1/openapi.json", crate::openapi::document),
        Route::new(M::GET, "/ui/", crate::ui::index),
        Route::new(M::GET, "/ui/app.js", crate::ui::script),
        Route::new(M::GET, "/ui/style.css", crate::ui::style),
        Route::new(M::GET, "/v1/whoami", dashboard::whoami),
        Route::new(M::GET, "/v1/dashboard/events", dashboard::events),
        Route::new(M::GET, "/v1/services", service::list),
        Route::new(M::POST, "/v1/services", service::create),
        Route::new(M::GET, "/v1/services/{service}", service::show),
        Route::new(M::DELETE, "/v1/services/{service}", service::remove),
        Route::new(
            M::PUT,
            "/v1/services/{service}/weights",
            service::set_weights,
        ),
        Route::new(M::POST, "/v1/services/{service}/stacks", stack::add),
        Route::new(
            M::PUT,
            "/v1/services/{service}/stacks/{stack}/endpoints",
            stack::set_endpoints,
        ),
        Route::new(
            M::DELETE,
            "/v1/services/{service}/stacks/{stack}",
            stack::remove,
        ),
        Route::new(M::GET, "/v1/history", history::list),
        Route::new(M::GET, "/v1/instances", instance::list),
        Route::new(
            M::POST,
            "/v1/services/{service}/deployments",
            deployment::start,
        ),
        Route::new(
            M::GET,
            "/v1/services/{service}/deployments",
            deployment::list,
        ),
        Route::new(
            M::GET,
            "/v1/services/{service}/deployments/{id}",
            deployment::show,
        ),
        Route::new(
            M::GET,
            "/v1/services/{service}/deployments/{id}/events",
            deployment::events,
        ),
        Route::new(
            M::POST,
            "/v1/services/{service}/deployments/{id}/promote",
            deployment::promote,
        ),
        Route::new(
            M::POST,
            "/v1/services/{service}/deployments/{id}/pause",
            deployment::pause,
        ),
        Route::new(
            M::POST,
            "/v1/services/{service}/deployments/{id}/resume",
            deployment::resume,
        ),
        Route::new(
            M::POST,
            "/v1/services/{service}/deployments/{id}/abort",
            deployment::abort,
        ),
        Route::new(
            M::POST,
            "/v1/services/{service}/rollback",
            deployment::rollback,
        ),
    ]
}

/// The control API over `state`, ready to serve or to call with `tower::ServiceExt::oneshot`.
pub fn router(state: ControlState) -> Router {
    let mut router = Router::new();
    for route in routes() {
        router = router.route(route.path, route.handler);
    }
    router
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        // Counted by route template, so after routing: a layer on the router wraps each route.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::track,
        ))
        .with_state(state)
}

async fn no_route(uri: Uri) -> ApiError {
    ApiError::NoRoute(uri.path().to_owned())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

/// Path parameters, with rejections in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(crate) struct ApiPath<T>(pub(crate) T);

/// Query parameters, with rejections in the API's error shape.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(crate) struct ApiQuery<T>(pub(crate) T);

/// Checks a name taken from the path, naming the parameter in the error.
fn check_name(param: &str, value: &str) -> Result<(), ApiError> {
    Name::new(value)
        .map(drop)
        .map_err(|e| ApiError::Invalid(format!("{param}: {e}")))
}

/// Checks the name of a service taken from the path and that the service exists: every route
/// under `/v1/services/{service}` answers 404 for a service that does not.
fn existing_service(state: &ControlState, service: &str) -> Result<(), ApiError> {
    check_name("service", service)?;
    match state.published().config.service(service) {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound(format!("no service {service:?}"))),
    }
}

/// The revision in `If-Match`: `"3"`, `W/"3"` or `3` (at most 19 digits, so it fits a `u64`);
/// `*` and absence mean no condition. Exactly what `openapi::rules::IF_MATCH_PATTERN` says.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let bad = || ApiError::Invalid("If-Match: expected a service revision such as \"3\"".into());
    let text = value.to_str().map_err(|_| bad())?;
    if text == "*" {
        return Ok(None);
    }
    let digits = match text.strip_prefix("W/") {
        Some(rest) => unquote(rest).ok_or_else(bad)?,
        None => unquote(text).unwrap_or(text),
    };
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    digits.parse().map(Some).map_err(|_| bad())
}

/// `t` without its surrounding double quotes, if it has both.
fn unquote(t: &str) -> Option<&str> {
    t.strip_prefix('"').and_then(|t| t.strip_suffix('"'))
}

/// A service's full view with its revision as `ETag`.
fn service_response(
    state: &ControlState,
    published: &Published,
    name: &str,
    status: StatusCode,
    minimal: bool,
) -> Result<Response, ApiError> {
    if minimal && status == StatusCode::OK {
        // The revision is all the caller needs to chain writes (If-Match); no view is built.
        let revision = published.records.get(name).map_or(0, |r| r.revision);
        let etag = HeaderValue::from_str(&format!("\"{revision}\"")).map_err(ApiError::internal)?;
        let mut response = StatusCode::NO_CONTENT.into_response();
        let headers = response.headers_mut();
        headers.insert(header::ETAG, etag);
        headers.insert(PREFERENCE_APPLIED, HeaderValue::from_static(RETURN_MINIMAL));
        return Ok(response);
    }
    let mut view = crate::view::service(published, state.data_plane().as_ref(), name)
        .ok_or_else(|| ApiError::NotFound(format!("no service {name:?}")))?;
    view.deployment = state
        .deployments()
        .active(name)
        .map(|r| crate::deploy::DeploymentSummary::of(&r));
    let etag =
        HeaderValue::from_str(&format!("\"{}\"", view.revision)).map_err(ApiError::internal)?;
    let mut response = (status, axum::Json(view)).into_response();
    response.headers_mut().insert(header::ETAG, etag);
    Ok(response)
}

/// `Preference-Applied` (RFC 7240).
const PREFERENCE_APPLIED: header::HeaderName =
    header::HeaderName::from_static("preference-applied");
/// The preference for a reply without the resource's representation.
const RETURN_MINIMAL: &str = "return=minimal";

/// Whether the caller sent `Prefer: return=minimal` (RFC 7240): a write then answers 204 with
/// the service's revision in `ETag` instead of the whole service view. Other preferences, and
/// their parameters, are ignored.
fn prefers_minimal(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::HeaderName::from_static("prefer"))
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            let p = p.split(';').next().unwrap_or("").trim();
            p.eq_ignore_ascii_case(RETURN_MINIMAL)
        })
}

#[cfg(test)]
mod tests;
