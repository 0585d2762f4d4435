//! The instances route: who shares the store and whether they serve the same state.

use axum::Json;
use axum::extract::State;
use switchyard_config::Role;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::ControlState;
use crate::view::InstanceList;

#[utoipa::path(
    get, path = "/v1/instances", tag = "instances",
    operation_id = "list_instances",
    description = "The Switchyard instances sharing the store (`[store] kind = \"etcd\"`), each with its control address, version, data plane generation and the store revision it serves; `agree` is true when all serve the same revision. Empty for the local store.",
    responses(
        (status = 200, description = "Instances", body = InstanceList),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role", body = ErrorBody),
        (status = 503, description = "The store is unavailable", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<ControlState>,
    caller: Caller,
) -> Result<Json<InstanceList>, ApiError> {
    caller.authorize(Role::Read, None)?;
    Ok(Json(current(&state).await?))
}

/// The instances sharing the store, or an empty local list.
pub(crate) async fn current(state: &ControlState) -> Result<InstanceList, ApiError> {
    let Some(shared) = state.store().shared() else {
        return Ok(InstanceList {
            store: "local".to_owned(),
            instances: Vec::new(),
            agree: true,
        });
    };
    let instances = shared.instances().await.map_err(ApiError::from_store)?;
    let agree = instances.windows(2).all(|w| w[0].revision == w[1].revision);
    Ok(InstanceList {
        store: "etcd".to_owned(),
        instances,
        agree,
    })
}
