//! Switchyard's control plane: the HTTP/JSON API that changes the running proxy, the durable
//! desired state behind it, tokens and roles, and the audit history.
//!
//! The pieces: [`ControlBuilder`] loads the saved state and merges it with the configuration
//! file (runtime changes win, the file seeds the rest: see [`SeedError`] and the `seed`
//! module), [`LoadedState::spawn`] starts the one writer task that owns the desired state,
//! [`router`] / [`spawn_control`] serve the API, and [`reseed`] re-merges on a reload. Control
//! never depends on the proxy: it drives it through the [`DataPlane`] trait, and it keeps its
//! state behind the [`Store`] trait ([`FileStore`] by default, [`EtcdStore`] for several
//! instances).
//!
//! Deployments (the `deploy` module) start a new stack next to the live one, check it, shift
//! traffic, and retire the previous stack or roll back exactly; they change the desired state
//! only through the writer.
//!
//! Every write runs the same steps, in the writer task: authorize → validate fully (no effect
//! on error) → `If-Match` → build the next state → persist it durably with its history entry
//! (one compare-and-swap transaction on etcd) → apply to the data plane → reply.

mod api;
mod auth;
mod body;
mod change;
mod dashboard;
mod data_plane;
mod deploy;
mod error;
#[cfg(test)]
mod fake;
mod json;
pub mod launcher;
mod metrics;
mod openapi;
mod seed;
mod server;
mod state;
mod store;
mod tls;
mod ui;
mod view;
mod writer;

pub use api::router;
pub use auth::{ANONYMOUS, Caller, generate_token};
#[doc(hidden)]
pub use body::{BodyKind, check_body};
pub use dashboard::{DashboardService, DashboardSnapshot, FiguresView, StackFigures};
pub use data_plane::{BoxFuture, DataPlane, EndpointState, EndpointStatus, PublicListener};
pub use deploy::{
    AnalysisRecord, AnalysisSpec, AnalysisWindow, BaselineSpec, Standby, WindowFigures,
};
pub use deploy::{
    Before, CheckResult, CheckSpec, ContainerError, ContainerSpec, DeploymentList,
    DeploymentRecord, DeploymentSpec, DeploymentSummary, DeploymentView, DryRunView, GateSpec,
    GateView, HealthSource, HttpCheckSpec, JsonExpectation, LogLine, Phase, PlannedPhase,
    ProcessSpec, ProcessStackRecord, PullPolicy, ResourcesSpec, RetireSpec, RollingSpec,
    SourceError, SourceSpec, StepSpec, StepView, StrategySpec, Unit, UnitView, Waiting,
    WebhookStatus,
};
pub use error::{ApiError, ErrorBody, ErrorDetail};
pub use json::BODY_LIMIT;
pub use seed::SeedError;
pub use server::{ControlHandle, spawn_control, spawn_control_tls};
pub use state::{
    BuildError, ControlBuilder, ControlState, LoadedState, ReseedError, WriterHandle, reseed,
};
pub use store::{
    DriverLock, EtcdStore, FileStore, HistoryEntry, IDEMPOTENCY_TTL, IdempotencyRecord,
    InstanceRecord, MigrateError, MigrateReport, Observed, Origin, Promotion, STATE_FORMAT,
    SavedState, ServiceRecord, SharedStore, SpecJson, Store, StoreError, migrate,
};
pub use view::{
    DeletedView, DnsView, EndpointView, HealthSummary, HistoryList, InstanceList, RoutingView,
    ServiceList, ServiceSummary, ServiceView, StackSummary, StackView, StatusView, StickyView,
};
