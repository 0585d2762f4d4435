//! Deployment routes: start, list, show, follow (server-sent events), and the operator's
//! promote, pause, resume and abort.

use std::convert::Infallible;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use switchyard_config::Role;
use tokio::sync::broadcast::error::RecvError;

mod idempotency;

pub(crate) use idempotency::PATTERN as IDEMPOTENCY_KEY_PATTERN;

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{ApiPath, ApiQuery, existing_service, if_match};
use crate::auth::Caller;
use crate::deploy::dry_run::dry_run;
use crate::deploy::{
    Command, DeploymentList, DeploymentRecord, DeploymentSpec, DeploymentSummary, DeploymentView,
    DryRunView, Feed,
};
use crate::error::{ApiError, ErrorBody, chain};
use crate::json;
use crate::state::ControlState;
use crate::store::{IdempotencyRecord, now};

fn not_found(service: &str, id: u64) -> ApiError {
    ApiError::NotFound(format!("no deployment {id} of service {service:?}"))
}

/// `POST /v1/services/{service}/deployments` options.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StartQuery {
    /// Validate the whole request (and look at the commands and DNS names it names) and
    /// answer 200 with the plan, changing nothing.
    dry_run: Option<bool>,
}

/// What a 200 answer to a start carries: the deployment an earlier request with the same
/// `Idempotency-Key` started, or a dry run's plan.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub(crate) enum StartAnswer {
    /// The deployment started by the first request with this key.
    Deployment(Box<DeploymentView>),
    /// `?dry_run=true`: the plan.
    DryRun(Box<DryRunView>),
}

#[utoipa::path(
    post, path = "/v1/services/{service}/deployments", tag = "deployments",
    operation_id = "start_deployment",
    description = "Starts a deployment (role deploy): provisions the new stack next to the live one, checks it directly, shifts traffic (blue-green or canary steps), checks it through the public listener, retires the previous stacks; any failure rolls back to exactly the state before. One deployment per service at a time. With `Idempotency-Key`, a retry with the same key and body answers 200 with the deployment the first request started (keys are remembered 24 h); the same key with another body is refused (422). With `?dry_run=true` the request is validated in full (also: the commands exist and are executable, DNS names resolve) and the plan is returned; nothing changes.",
    params(
        ("service" = String, Path, description = "Service name"),
        ("If-Match" = Option<String>, Header, description = "Expected revision of the service"),
        ("Idempotency-Key" = Option<String>, Header, description = "A key of the client's choosing (1 to 255 visible ASCII characters) that makes retries safe"),
        StartQuery,
    ),
    request_body = DeploymentSpec,
    responses(
        (status = 201, description = "Started", body = DeploymentView),
        (status = 200, description = "A retry with a known Idempotency-Key: the deployment it started (DeploymentView); or a dry run: the plan (DryRunView)", body = StartAnswer),
        (status = 400, description = "Malformed JSON, an invalid value or header; the message names the field", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "A deployment is in progress, or the stack exists", body = ErrorBody),
        (status = 412, description = "Revision mismatch", body = ErrorBody),
        (status = 413, description = "Body larger than 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON", body = ErrorBody),
        (status = 422, description = "Unknown field or wrong type, or an Idempotency-Key used before with another body", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn start(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath(service): ApiPath<String>,
    ApiQuery(query): ApiQuery<StartQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Deploy, Some(&service))?;
    existing_service(&state, &service)?;
    let if_match = if_match(request.headers())?;
    let key = idempotency::key(request.headers())?;
    let spec: DeploymentSpec = json::read(request).await?;
    if query.dry_run.unwrap_or(false) {
        let plan = dry_run(&state, &service, if_match, &spec).await?;
        return Ok(Json(StartAnswer::DryRun(Box::new(plan))).into_response());
    }
    let Some(key) = key else {
        let rec = state
            .deployments()
            .start(&state, caller.name(), &service, if_match, spec)
            .await?;
        return Ok((StatusCode::CREATED, Json(DeploymentView::of(&rec))).into_response());
    };
    let digest = idempotency::digest(&spec)?;
    let deployments = state.deployments().clone();
    let _one_at_a_time = deployments.idempotency_gate().lock().await;
    let known = state
        .store()
        .load_idempotency_key(&service, &key)
        .await
        .map_err(ApiError::internal)?;
    if let Some(found) = known {
        let id = idempotency::replay(&found, &digest)?;
        let rec = deployments
            .get(&service, id)
            .ok_or_else(|| not_found(&service, id))?;
        tracing::info!(service = %service, id, token = caller.name(), "deployment request repeated with its Idempotency-Key");
        return Ok(
            Json(StartAnswer::Deployment(Box::new(DeploymentView::of(&rec)))).into_response(),
        );
    }
    let rec = deployments
        .start(&state, caller.name(), &service, if_match, spec)
        .await?;
    let remembered = IdempotencyRecord {
        service: service.clone(),
        key,
        body_sha256: digest,
        deployment: rec.id,
        created_at: now(),
    };
    if let Err(e) = state.store().save_idempotency_key(&remembered).await {
        // The deployment runs either way; only a retry of this request would not find it.
        tracing::error!(service = %service, id = rec.id, error = %chain(&e), "cannot remember the Idempotency-Key");
    }
    Ok((StatusCode::CREATED, Json(DeploymentView::of(&rec))).into_response())
}

#[utoipa::path(
    post, path = "/v1/services/{service}/rollback", tag = "deployments",
    operation_id = "rollback_service",
    description = "Restores the service as before its latest successful deployment (role deploy): while the previous stacks are still kept at weight 0 (`retire_previous.after`, default 10m), one atomic switch back to their weights, then the newer stack removed (200, finished); once they were retired, a deployment of the previous stack's persisted spec (201, started). Recorded as a deployment with `undo_of`. Refused while a deployment runs.",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "Switched back; the rollback's record", body = DeploymentView),
        (status = 201, description = "Re-deploying the previous stack; the new deployment", body = DeploymentView),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
        (status = 409, description = "A deployment is in progress, or there is nothing to roll back", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn rollback(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath(service): ApiPath<String>,
) -> Result<Response, ApiError> {
    caller.authorize(Role::Deploy, Some(&service))?;
    existing_service(&state, &service)?;
    tracing::info!(service = %service, token = caller.name(), "rollback requested");
    let (rec, started) = state
        .deployments()
        .undo(&state, caller.name(), &service)
        .await?;
    let status = if started {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(DeploymentView::of(&rec))).into_response())
}

#[utoipa::path(
    get, path = "/v1/services/{service}/deployments", tag = "deployments",
    operation_id = "list_deployments",
    description = "The service's deployments, newest first: who started each, when, and how it ended.",
    params(("service" = String, Path, description = "Service name")),
    responses(
        (status = 200, description = "The deployments", body = DeploymentList),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn list(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath(service): ApiPath<String>,
) -> Result<Json<DeploymentList>, ApiError> {
    caller.authorize(Role::Read, Some(&service))?;
    existing_service(&state, &service)?;
    let deployments = state
        .deployments()
        .list(&service)
        .iter()
        .map(|r| DeploymentSummary::of(r))
        .collect();
    Ok(Json(DeploymentList { deployments }))
}

#[utoipa::path(
    get, path = "/v1/services/{service}/deployments/{id}", tag = "deployments",
    operation_id = "get_deployment",
    description = "One deployment: phase, step, weights, check results, replicas and the log tail.",
    params(
        ("service" = String, Path, description = "Service name"),
        ("id" = u64, Path, description = "Deployment id"),
    ),
    responses(
        (status = 200, description = "The deployment", body = DeploymentView),
        (status = 400, description = "Invalid name or id", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service or deployment", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn show(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath((service, id)): ApiPath<(String, u64)>,
) -> Result<Json<DeploymentView>, ApiError> {
    caller.authorize(Role::Read, Some(&service))?;
    existing_service(&state, &service)?;
    let rec = state
        .deployments()
        .get(&service, id)
        .ok_or_else(|| not_found(&service, id))?;
    Ok(Json(DeploymentView::of(&rec)))
}

fn view_event(name: &'static str, rec: &DeploymentRecord, with_log: bool) -> Event {
    let mut view = DeploymentView::of(rec);
    if !with_log {
        view.log.clear();
    }
    let data = serde_json::to_string(&view).unwrap_or_else(|_| "{}".to_owned());
    Event::default().event(name).data(data)
}

/// What a follower's stream keeps between events.
struct Follow {
    first: Option<Event>,
    done: bool,
    feed: tokio::sync::broadcast::Receiver<Feed>,
    state: ControlState,
    service: String,
    id: u64,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        if let Some(e) = self.first.take() {
            return Some((Ok(e), self));
        }
        if self.done {
            return None;
        }
        let mut shutdown = self.state.deployments().shutdown();
        let item = tokio::select! {
            item = self.feed.recv() => item,
            _ = shutdown.wait_for(|s| *s) => return None,
        };
        let event = match item {
            Ok(Feed::Transition(rec)) => {
                self.done = rec.phase.is_terminal();
                view_event("transition", &rec, false)
            }
            Ok(Feed::Log(line)) => {
                let data = serde_json::to_string(&line).unwrap_or_else(|_| "{}".to_owned());
                Event::default().event("log").data(data)
            }
            Err(RecvError::Lagged(_)) => {
                let rec = self.state.deployments().get(&self.service, self.id)?;
                self.done = rec.phase.is_terminal();
                view_event("deployment", &rec, true)
            }
            Err(RecvError::Closed) => return None,
        };
        Some((Ok(event), self))
    }
}

#[utoipa::path(
    get, path = "/v1/services/{service}/deployments/{id}/events", tag = "deployments",
    operation_id = "follow_deployment",
    description = "Server-sent events: first `deployment` (the full view with the log tail), then `transition` (the view after every transition) and `log` (each new log line); the stream ends after the transition to a terminal phase.",
    params(
        ("service" = String, Path, description = "Service name"),
        ("id" = u64, Path, description = "Deployment id"),
    ),
    responses(
        (status = 200, description = "The event stream (`text/event-stream`). Events: `deployment` once first, its `data:` the DeploymentView JSON with the log tail; `transition` after every transition, its `data:` the DeploymentView JSON without the log; `log` for each new log line, its `data:` a LogLine JSON (`time`, `source`, `line`). A slow follower that missed events gets a fresh `deployment`. The stream ends after the transition to a terminal phase; comments keep it alive meanwhile.", content_type = "text/event-stream", body = String),
        (status = 400, description = "Invalid name or id", body = ErrorBody),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
        (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
        (status = 404, description = "No such service or deployment", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn events(
    State(state): State<ControlState>,
    caller: Caller,
    ApiPath((service, id)): ApiPath<(String, u64)>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.authorize(Role::Read, Some(&service))?;
    existing_service(&state, &service)?;
    let (rec, feed) = state
        .deployments()
        .follow(&service, id)
        .ok_or_else(|| not_found(&service, id))?;
    let follow = Follow {
        first: Some(view_event("deployment", &rec, true)),
        done: rec.phase.is_terminal(),
        feed,
        state,
        service,
        id,
    };
    let stream = futures_util::stream::unfold(follow, Follow::next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

async fn command(
    state: ControlState,
    caller: Caller,
    service: String,
    id: u64,
    command: Command,
) -> Result<Json<DeploymentView>, ApiError> {
    caller.authorize(Role::Operate, Some(&service))?;
    existing_service(&state, &service)?;
    tracing::info!(service = %service, id, token = caller.name(), command = command.as_str(), "deployment command");
    let rec = state.deployments().command(&service, id, command).await?;
    Ok(Json(DeploymentView::of(&rec)))
}

macro_rules! command_route {
    ($name:ident, $path:literal, $op:literal, $desc:literal, $command:expr) => {
        #[utoipa::path(
            post, path = $path, tag = "deployments",
            operation_id = $op,
            description = $desc,
            params(
                ("service" = String, Path, description = "Service name"),
                ("id" = u64, Path, description = "Deployment id"),
            ),
            responses(
                (status = 200, description = "Done; the deployment after it", body = DeploymentView),
                (status = 400, description = "Invalid name or id", body = ErrorBody),
                (status = 401, description = "Missing or unknown token", body = ErrorBody),
                (status = 403, description = "Token lacks the role or the service", body = ErrorBody),
                (status = 404, description = "No such service or deployment", body = ErrorBody),
                (status = 409, description = "Not possible in the deployment's phase", body = ErrorBody),
            ),
            security(("bearer" = [])),
        )]
        pub(crate) async fn $name(
            State(state): State<ControlState>,
            caller: Caller,
            ApiPath((service, id)): ApiPath<(String, u64)>,
        ) -> Result<Json<DeploymentView>, ApiError> {
            let c = ($command)(&caller);
            command(state, caller, service, id, c).await
        }
    };
}

command_route!(
    promote,
    "/v1/services/{service}/deployments/{id}/promote",
    "promote_deployment",
    "Moves past the current pause (a manual step, or the rest of a timed one). Role operate.",
    |_: &Caller| Command::Promote
);
command_route!(
    pause,
    "/v1/services/{service}/deployments/{id}/pause",
    "pause_deployment",
    "Holds the deployment before its next advance; failures still roll back. Role operate.",
    |_: &Caller| Command::Pause
);
command_route!(
    resume,
    "/v1/services/{service}/deployments/{id}/resume",
    "resume_deployment",
    "Releases a pause; an advance held meanwhile is taken now. Role operate.",
    |_: &Caller| Command::Resume
);
command_route!(
    abort,
    "/v1/services/{service}/deployments/{id}/abort",
    "abort_deployment",
    "Rolls back to exactly the state before the deployment. Refused once the previous stacks are being retired. Role operate.",
    |c: &Caller| Command::Abort {
        by: c.name().to_owned()
    }
);
