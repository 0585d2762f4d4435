//! Liveness and readiness probes and the Prometheus scrape endpoint; no token needed (they
//! are read by orchestrators and scrapers that hold no API token, and reveal no secret).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::error::{ApiError, ErrorBody};
use crate::state::ControlState;
use crate::view::StatusView;

#[utoipa::path(
    get, path = "/healthz", tag = "probes",
    description = "The process is alive. No token needed.",
    responses((status = 200, description = "Alive", body = StatusView)),
)]
pub(crate) async fn healthz(State(state): State<ControlState>) -> Json<StatusView> {
    Json(StatusView {
        status: "ok".to_owned(),
        generation: state.generation(),
        store: store_status(&state),
    })
}

#[utoipa::path(
    get, path = "/readyz", tag = "probes",
    description = "The desired state is loaded and the listeners are bound. No token needed. With `[store] kind = \"etcd\"`, `store` says whether etcd answers; an unreachable etcd does not make the instance unready (it keeps routing on the last state).",
    responses(
        (status = 200, description = "Ready", body = StatusView),
        (status = 503, description = "Not ready", body = ErrorBody),
    ),
)]
pub(crate) async fn readyz(
    State(state): State<ControlState>,
) -> Result<Json<StatusView>, ApiError> {
    if !state.is_ready() {
        return Err(ApiError::NotReady);
    }
    Ok(Json(StatusView {
        status: "ready".to_owned(),
        generation: state.generation(),
        store: store_status(&state),
    }))
}

/// What the probes say about a shared store. An unreachable etcd does not make the instance
/// unready: it keeps routing on the last state, and failing every instance's probe at once
/// would take the whole fleet out of a load balancer.
fn store_status(state: &ControlState) -> Option<String> {
    state
        .store_available()
        .map(|up| if up { "available" } else { "unavailable" }.to_owned())
}

#[utoipa::path(
    get, path = "/metrics", tag = "probes",
    description = "Prometheus metrics in the text exposition format (version 0.0.4). No token needed, as Prometheus scrapers expect; 404 when `[metrics] enabled = false`.",
    responses(
        (status = 200, description = "Metrics", body = String, content_type = "text/plain; version=0.0.4"),
        (status = 404, description = "Metrics are turned off", body = ErrorBody),
    ),
)]
pub(crate) async fn metrics(
    State(state): State<ControlState>,
) -> Result<impl IntoResponse, ApiError> {
    let mut text = state
        .data_plane()
        .metrics()
        .ok_or_else(|| ApiError::NotFound("metrics are turned off".to_owned()))?;
    // The data plane's families, then control's own: the names differ, so one exposition.
    text.push_str(&state.metrics().encode());
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    ))
}
