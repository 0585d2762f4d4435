//! Liveness and readiness probes; no token needed.

use axum::Json;
use axum::extract::State;

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
    })
}

#[utoipa::path(
    get, path = "/readyz", tag = "probes",
    description = "The desired state is loaded and the listeners are bound. No token needed.",
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
    }))
}
