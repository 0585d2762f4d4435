//! The instances route: who shares the store and whether they serve the same state.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use switchyard_config::Role;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::state::ControlState;
use crate::store::InstanceRecord;

/// `GET /v1/instances`
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    /// `local` (one instance, nothing to list) or `etcd`.
    pub store: String,
    /// Every registered instance, by id.
    pub instances: Vec<InstanceRecord>,
    /// Whether every instance serves the same desired state (same store revision).
    pub agree: bool,
}

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
    let Some(shared) = state.store().shared() else {
        return Ok(Json(InstanceList {
            store: "local".to_owned(),
            instances: Vec::new(),
            agree: true,
        }));
    };
    let instances = shared.instances().await.map_err(ApiError::from_store)?;
    let agree = instances.windows(2).all(|w| w[0].revision == w[1].revision);
    Ok(Json(InstanceList {
        store: "etcd".to_owned(),
        instances,
        agree,
    }))
}
