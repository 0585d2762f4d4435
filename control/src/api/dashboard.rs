//! The dashboard's data routes: the live feed (server-sent events, a snapshot every second)
//! and `whoami` (the caller's token name and role, so the page shows only the actions the
//! token may take). The page itself is static and served by `ui`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::Serialize;
use switchyard_config::Role;
use tokio::time::{Interval, MissedTickBehavior};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::dashboard::{DashboardSnapshot, snapshot};
use crate::error::{ApiError, ErrorBody};
use crate::state::ControlState;

/// How often the feed sends a snapshot; the proxy's figures advance once a second.
const FEED_PERIOD: Duration = Duration::from_secs(1);

/// `GET /v1/whoami`
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WhoAmI {
    /// The token's name (`anonymous` when the API has no token configured).
    name: String,
    /// `read`, `operate`, `deploy` or `admin`.
    role: String,
    /// Service globs the token is limited to; empty means every service.
    services: Vec<String>,
}

#[utoipa::path(
    get, path = "/v1/whoami", tag = "dashboard",
    operation_id = "whoami",
    description = "The calling token: its name, role and the services it is limited to. Role read.",
    responses(
        (status = 200, description = "The caller", body = WhoAmI),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn whoami(caller: Caller) -> Result<Json<WhoAmI>, ApiError> {
    caller.authorize(Role::Read, None)?;
    Ok(Json(WhoAmI {
        name: caller.name().to_owned(),
        role: caller.role().as_str().to_owned(),
        services: caller.services().to_vec(),
    }))
}

/// What the feed keeps between snapshots.
struct Feed {
    state: ControlState,
    caller: Caller,
    ticks: Interval,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

impl Feed {
    async fn next(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        tokio::select! {
            _ = self.ticks.tick() => {}
            _ = self.shutdown.wait_for(|s| *s) => return None,
        }
        let snap = snapshot(&self.state, &self.caller);
        let data = serde_json::to_string(&snap).unwrap_or_else(|_| "{}".to_owned());
        Some((Ok(Event::default().event("snapshot").data(data)), self))
    }
}

#[utoipa::path(
    get, path = "/v1/dashboard/events", tag = "dashboard",
    operation_id = "follow_dashboard",
    description = "Server-sent events for the dashboard (`/ui/`): a `snapshot` at once and then every second, until the client leaves or Switchyard stops. Role read; only the services the token may see.",
    responses(
        (status = 200, description = "The event stream (`text/event-stream`): `snapshot` events, each `data:` a DashboardSnapshot JSON: every service the token may see in full (stacks, weights, endpoint health), each stack's traffic figures over the last 10 s and 1 min (request rate, error rate, p50, p99), the deployment in progress (or the latest) with its checks and log tail, and the latest deployments. The stream does not end by itself.", content_type = "text/event-stream", body = DashboardSnapshot),
        (status = 401, description = "Missing or unknown token", body = ErrorBody),
    ),
    security(("bearer" = [])),
)]
pub(crate) async fn events(
    State(state): State<ControlState>,
    caller: Caller,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.authorize(Role::Read, None)?;
    let mut ticks = tokio::time::interval(FEED_PERIOD);
    // A slow client gets the next snapshot when it reads again, not a burst of stale ones.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let feed = Feed {
        shutdown: state.deployments().shutdown(),
        state,
        caller,
        ticks,
    };
    let stream = futures_util::stream::unfold(feed, Feed::next);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
