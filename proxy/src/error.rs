//! Every failure on the request path is classified once into a [`Cause`], which fixes the
//! status, the `x-switchyard-error` header, the log/metric label and whether a retry is allowed.
//! Nothing else decides a status.

use crate::body::ProxyBody;
use http::{HeaderValue, Response, StatusCode, header};

/// Why the proxy answered instead of an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// No service matches host and path.
    NoRoute,
    /// The service has no stack with weight and the request is not pinned.
    NoStack,
    /// The pinning header names a stack the service does not have.
    UnknownStack,
    /// No endpoint of any eligible stack is healthy.
    NoHealthyEndpoint,
    /// Connecting to the endpoint failed (retried once on another endpoint first).
    ConnectFailed,
    /// TLS towards the endpoint failed (e.g. its certificate did not verify).
    UpstreamTls,
    /// The endpoint did not answer in time.
    UpstreamTimeout,
    /// The endpoint closed or broke the connection.
    UpstreamError,
    /// The request was malformed.
    BadRequest,
    /// The request's header block is too large or has too many fields.
    HeadersTooLarge,
    /// The client paused its request body for longer than `timeouts.request_body`.
    RequestBodyTimeout,
    /// The endpoint switched protocols (101) without an upgrade the service allows having
    /// been asked for: nothing it sends after that is routed, so it is not passed on.
    UpstreamProtocol,
}

impl Cause {
    /// Every cause, in the order of [`Cause::index`].
    pub const ALL: [Cause; 12] = [
        Self::NoRoute,
        Self::NoStack,
        Self::UnknownStack,
        Self::NoHealthyEndpoint,
        Self::ConnectFailed,
        Self::UpstreamTls,
        Self::UpstreamTimeout,
        Self::UpstreamError,
        Self::BadRequest,
        Self::HeadersTooLarge,
        Self::RequestBodyTimeout,
        Self::UpstreamProtocol,
    ];

    /// Position in [`Cause::ALL`] (a per-cause counter array's index).
    #[inline]
    pub fn index(self) -> usize {
        match self {
            Self::NoRoute => 0,
            Self::NoStack => 1,
            Self::UnknownStack => 2,
            Self::NoHealthyEndpoint => 3,
            Self::ConnectFailed => 4,
            Self::UpstreamTls => 5,
            Self::UpstreamTimeout => 6,
            Self::UpstreamError => 7,
            Self::BadRequest => 8,
            Self::HeadersTooLarge => 9,
            Self::RequestBodyTimeout => 10,
            Self::UpstreamProtocol => 11,
        }
    }

    /// The status sent to the client.
    pub fn status(self) -> StatusCode {
        match self {
            Self::NoRoute => StatusCode::NOT_FOUND,
            Self::NoStack | Self::NoHealthyEndpoint => StatusCode::SERVICE_UNAVAILABLE,
            Self::ConnectFailed
            | Self::UpstreamTls
            | Self::UpstreamError
            | Self::UpstreamProtocol => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::BadRequest | Self::UnknownStack => StatusCode::BAD_REQUEST,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::RequestBodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// The label in `x-switchyard-error`, logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NoRoute => "no-route",
            Self::NoStack => "no-stack",
            Self::UnknownStack => "unknown-stack",
            Self::NoHealthyEndpoint => "no-healthy-endpoint",
            Self::ConnectFailed => "connect-failed",
            Self::UpstreamTls => "upstream-tls",
            Self::UpstreamTimeout => "upstream-timeout",
            Self::UpstreamError => "upstream-error",
            Self::BadRequest => "bad-request",
            Self::HeadersTooLarge => "headers-too-large",
            Self::RequestBodyTimeout => "request-body-timeout",
            Self::UpstreamProtocol => "upstream-protocol",
        }
    }

    /// Whether this counts against the endpoint for passive health.
    pub fn endpoint_failure(self) -> bool {
        matches!(
            self,
            Self::ConnectFailed
                | Self::UpstreamTimeout
                | Self::UpstreamError
                | Self::UpstreamTls
                | Self::UpstreamProtocol
        )
    }

    /// Whether the client connection is closed after the answer: its remaining bytes cannot be
    /// trusted to start a new request (bad framing, an unread body) or the exchange broke.
    pub fn closes_connection(self) -> bool {
        matches!(
            self,
            Self::BadRequest
                | Self::HeadersTooLarge
                | Self::RequestBodyTimeout
                | Self::UpstreamProtocol
        )
    }

    /// Whether the client, not the endpoint or the proxy, caused it (kept out of the stack's
    /// failure figures).
    pub fn client_fault(self) -> bool {
        matches!(
            self,
            Self::BadRequest | Self::HeadersTooLarge | Self::RequestBodyTimeout
        )
    }

    /// The response sent to the client.
    pub fn response(self) -> Response<ProxyBody> {
        let status = self.status();
        let body = format!(
            "{} {}: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.label()
        );
        let mut r = Response::new(ProxyBody::full(body));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert("x-switchyard-error", HeaderValue::from_static(self.label()));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if self.closes_connection() {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}
