//! The one error type of the control API and its JSON shape.
//!
//! Every failure a client can see is an [`ApiError`], answered as
//! `{"error": {"code": "...", "message": "..."}}` with the matching 4xx/5xx status. Internal
//! causes are logged once here, with their source chain, and never sent to the client.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// A control API error; its `Display` is the message sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (syntax error, empty, truncated).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON of the wrong shape (unknown field, wrong type, missing field).
    #[error("{0}")]
    InvalidBody(String),
    /// A value is well-formed but not acceptable; the message names the field.
    #[error("{0}")]
    Invalid(String),
    /// No token, or a token that matches none configured.
    #[error("missing or unknown token: send Authorization: Bearer <secret>")]
    Unauthorized,
    /// The token lacks the role or is limited to other services.
    #[error("{0}")]
    Forbidden(String),
    /// The service or stack named in the path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// No route has this path.
    #[error("no route for {0}")]
    NoRoute(String),
    /// The route exists but not with this method.
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed {
        /// The method used.
        method: String,
        /// The path asked for.
        path: String,
    },
    /// The change conflicts with the current state (exists already, stack still has weight).
    #[error("{0}")]
    Conflict(String),
    /// The write would leave every stack of the service at weight 0; the message says how to
    /// force it.
    #[error("{0}")]
    NoTraffic(String),
    /// A stack would have nothing to route to: no endpoint and no DNS source.
    #[error("{0}")]
    NoEndpoints(String),
    /// An `Idempotency-Key` came back with another body than the request that used it first.
    #[error("{0}")]
    IdempotencyKeyReused(String),
    /// `If-Match` named another revision than the current one.
    #[error("service {service:?} is at revision {current}, not {expected}")]
    RevisionMismatch {
        /// The service.
        service: String,
        /// The revision the client sent.
        expected: u64,
        /// The service's current revision.
        current: u64,
    },
    /// The body is larger than the limit.
    #[error("request body larger than {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body is not declared as JSON.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The data plane refused the new desired state; nothing changed.
    #[error("the proxy refused the change: {0}")]
    ApplyFailed(String),
    /// The control plane is shutting down or its writer stopped.
    #[error("control plane unavailable")]
    Unavailable,
    /// The shared store (etcd) cannot be reached: the write was not made. Routing goes on
    /// with the last state.
    #[error(
        "the desired state store is unavailable; the write was not made (the proxy keeps routing on the last state)"
    )]
    StoreUnavailable,
    /// The process is not ready to serve (readiness probe).
    #[error("not ready")]
    NotReady,
    /// Something failed inside; logged, never detailed to the client.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `revision_mismatch`.
    pub code: String,
    /// Human-readable explanation naming the field or resource concerned.
    pub message: String,
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedJson(_) | Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::InvalidBody(_)
            | Self::NoEndpoints(_)
            | Self::IdempotencyKeyReused(_)
            | Self::ApplyFailed(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) | Self::NoRoute(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict(_) | Self::NoTraffic(_) => StatusCode::CONFLICT,
            Self::RevisionMismatch { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unavailable | Self::NotReady | Self::StoreUnavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable code sent in the body.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedJson(_) => "malformed_json",
            Self::InvalidBody(_) => "invalid_body",
            Self::Invalid(_) => "invalid_value",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::NoRoute(_) => "no_route",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::NoTraffic(_) => "no_traffic",
            Self::NoEndpoints(_) => "no_endpoints",
            Self::IdempotencyKeyReused(_) => "idempotency_key_reused",
            Self::RevisionMismatch { .. } => "revision_mismatch",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::ApplyFailed(_) => "apply_failed",
            Self::Unavailable => "unavailable",
            Self::StoreUnavailable => "store_unavailable",
            Self::NotReady => "not_ready",
            Self::Internal(_) => "internal",
        }
    }

    /// Wraps an internal cause.
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Internal(Box::new(e))
    }

    /// A store failure as the client sees it: an unreachable shared store is 503
    /// `store_unavailable` (logged here, once), anything else internal.
    pub(crate) fn from_store(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(_) => {
                tracing::warn!(error = %chain(&e), "write refused: the store is unavailable");
                Self::StoreUnavailable
            }
            other => Self::internal(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(source) = &self {
            tracing::error!(error = %chain(source.as_ref()), "control request failed");
        }
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        Self::Invalid(format!("path: {}", rejection.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        Self::Invalid(format!("query: {}", rejection.body_text()))
    }
}

/// An error and its sources on one line, for logs.
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        next = cause.source();
    }
    out
}
