//! The audit history route.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use switchyard_config::Role;
use utoipa::IntoParams;

use super::{ApiQuery, check_name};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::ControlState;
use crate::view::HistoryList;

/// Entries returned when no limit is given.
const DEFAULT_LIMIT: usize = 50;
/// The largest limit accepted.
const MAX_LIMIT: usize = 1000;

/// `GET /v1/history` options.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct HistoryQuery {
    /// Only entries about this service.
    service: Option<String>,
    /// How many of the latest entries (default 50, at most 1000).
    limit: Option<usize>,
}

#[utoipa::path(
    get, path = "/v1/history", tag = "history",
    operation_id = "list_history",
    description = "The latest audit entries, oldest first: time, token name, action, service, before and after, outcome.",
    params(HistoryQuery),
    responses(
        (status = 200, description = "Entries", body = HistoryList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<ControlState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<HistoryList>, ApiError> {
    caller.authorize(Role::Read, query.service.as_deref())?;
    if let Some(s) = &query.service {
        check_name("service", s)?;
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::Invalid(format!(
            "limit: {limit} out of range: expected 1 to {MAX_LIMIT}"
        )));
    }
    // A token limited to some services reads everything and keeps what it may see.
    let all = query.service.is_some() || caller.may_see_all();
    let fetch = if all { limit } else { usize::MAX };
    let mut entries = state
        .store()
        .read_history(query.service.as_deref(), fetch)
        .await
        .map_err(ApiError::from_store)?;
    if !all {
        entries.retain(|e| caller.may_see(&e.service));
        let skip = entries.len().saturating_sub(limit);
        entries.drain(..skip);
    }
    Ok(Json(HistoryList { entries }))
}
