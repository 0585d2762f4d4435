//! What the live dashboard shows, as one snapshot: every service the caller may see with its
//! stacks (the service view), each stack's traffic figures as the data plane measures them,
//! the latest deployment in full and the deployment history.
//!
//! A snapshot is built from the published desired state, the data plane (through
//! [`DataPlane`](crate::DataPlane), never by scraping `/metrics`) and the deployment registry;
//! it reuses the API's views ([`ServiceView`], [`DeploymentView`], [`DeploymentSummary`]) so the
//! page and the API speak one shape. Building one takes no lock longer than a registry read.

use serde::Serialize;
use switchyard_config::{Figures, Window};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::deploy::{DeploymentSummary, DeploymentView};
use crate::state::ControlState;
use crate::view::ServiceView;

/// Deployments listed per service in a snapshot's history (newest first).
pub(crate) const HISTORY_LIMIT: usize = 10;

/// One event of `GET /v1/dashboard/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardSnapshot {
    /// When the snapshot was taken (RFC 3339, UTC).
    pub time: String,
    /// The data plane generation control last applied, if any.
    pub generation: Option<u64>,
    /// The services the token may see, in configuration order.
    pub services: Vec<DashboardService>,
}

/// A service on the dashboard.
#[derive(Debug, Serialize, ToSchema)]
pub struct DashboardService {
    /// The service in full, as `GET /v1/services/{service}` answers it.
    pub service: ServiceView,
    /// Live traffic figures of each stack, in the order of `service.stacks`.
    pub figures: Vec<StackFigures>,
    /// The deployment in progress or, when none is, the latest one; `null` before the first.
    pub deployment: Option<DeploymentView>,
    /// The latest deployments, newest first (at most 10).
    pub history: Vec<DeploymentSummary>,
}

/// Traffic figures of one stack.
#[derive(Debug, Serialize, ToSchema)]
pub struct StackFigures {
    /// Stack name.
    pub stack: String,
    /// Over the last 10 seconds (`null` while the proxy does not know the stack yet).
    pub last_10s: Option<FiguresView>,
    /// Over the last minute.
    pub last_1m: Option<FiguresView>,
}

/// Traffic of a stack over a window.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiguresView {
    /// Seconds the figures cover (the window, or less while the stack is younger).
    pub seconds: f64,
    /// Requests routed to the stack.
    pub requests: u64,
    /// Requests that ended with an endpoint response or a proxy error.
    pub completed: u64,
    /// Completed requests that failed: 5xx responses and proxy errors.
    pub errors: u64,
    /// Requests per second.
    pub request_rate: f64,
    /// `errors / completed`; 0 when none completed.
    pub error_rate: f64,
    /// Median time until the response ended, in seconds; `null` when none completed.
    pub p50: Option<f64>,
    /// 99th percentile of the time until the response ended, in seconds.
    pub p99: Option<f64>,
}

impl FiguresView {
    fn of(f: &Figures) -> Self {
        Self {
            seconds: f.seconds,
            requests: f.requests,
            completed: f.completed(),
            errors: f.responses[3] + f.proxy_error_total(),
            request_rate: f.request_rate,
            error_rate: f.error_rate,
            p50: f.latency.p50,
            p99: f.latency.p99,
        }
    }
}

/// The snapshot `caller` may see now.
pub(crate) fn snapshot(state: &ControlState, caller: &Caller) -> DashboardSnapshot {
    let published = state.published();
    let dp = state.data_plane().as_ref();
    let services = published
        .config
        .services()
        .iter()
        .map(|s| s.name().as_str())
        .filter(|name| caller.may_see(name))
        .filter_map(|name| {
            let mut service = crate::view::service(&published, dp, name)?;
            let deployments = state.deployments().list(name);
            let running = deployments.iter().find(|r| !r.phase.is_terminal());
            service.deployment = running.map(|r| DeploymentSummary::of(r));
            let figures = service
                .stacks
                .iter()
                .map(|stack| {
                    let window = |w| {
                        dp.stack_figures(name, &stack.name, w)
                            .map(|f| FiguresView::of(&f))
                    };
                    StackFigures {
                        stack: stack.name.clone(),
                        last_10s: window(Window::Last10s),
                        last_1m: window(Window::Last1m),
                    }
                })
                .collect();
            Some(DashboardService {
                service,
                figures,
                deployment: running
                    .or(deployments.first())
                    .map(|r| DeploymentView::of(r)),
                history: deployments
                    .iter()
                    .take(HISTORY_LIMIT)
                    .map(|r| DeploymentSummary::of(r))
                    .collect(),
            })
        })
        .collect();
    DashboardSnapshot {
        time: crate::store::now(),
        generation: state.generation(),
        services,
    }
}
