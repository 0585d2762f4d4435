//! The OpenAPI 3 document of the API, generated from the handlers' annotations and types.
//!
//! The request bodies for services and stacks are decoded as `switchyard_config::raw` types,
//! which do not depend on utoipa; `body` describes them (and their nested objects), and a test
//! keeps their field names equal to the raw types'. `rules` adds what the derive cannot say
//! (path and header patterns, bounds, which schemas refuse unknown fields), so the document
//! states what the server enforces; schemathesis checks the two agree (`tests/contract.rs`).
//! A second test checks that every route of the router is in the document.

use axum::Json;
use switchyard_config::Role;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{dashboard, deployment, history, instance, probe, service, stack};
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
        probe::metrics,
        document,
        crate::ui::index,
        crate::ui::script,
        crate::ui::style,
        dashboard::whoami,
        dashboard::events,
        service::list,
        service::create,
        service::show,
        service::remove,
        service::set_weights,
        stack::add,
        stack::set_endpoints,
        stack::remove,
        history::list,
        instance::list,
        deployment::start,
        deployment::list,
        deployment::show,
        deployment::events,
        deployment::promote,
        deployment::pause,
        deployment::resume,
        deployment::abort,
        deployment::rollback,
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
pub(crate) async fn document(caller: Caller) -> Result<Json<serde_json::Value>, ApiError> {
    caller.authorize(Role::Read, None)?;
    Ok(Json(document_json()))
}

/// The document as served: generated from the annotations, then completed by `rules`.
pub(crate) fn document_json() -> serde_json::Value {
    let mut doc =
        serde_json::to_value(ApiDoc::openapi()).expect("the generated document serializes to JSON");
    rules::apply(&mut doc);
    doc
}

pub(crate) mod body;
mod rules;

pub(crate) use body::{ServiceBody, StackBody};

#[cfg(test)]
mod tests;
