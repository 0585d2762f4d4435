//! Body types of the request path, as enums rather than boxes so no request allocates for them.
//!
//! [`UpstreamBody`] is what goes to an endpoint: nothing, or the client's streaming body with its first frame already read (the proxy reads one frame
//! before choosing an endpoint so malformed framing never reaches an upstream). [`ProxyBody`] is
//! what goes back to the client: a short error body, or the endpoint's streaming body, which
//! hands its connection back to the pool once the body has ended.

use crate::endpoint::EndpointState;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// Error type of both bodies.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// The body sent to an endpoint.
#[derive(Debug)]
pub(crate) enum UpstreamBody {
    /// No body.
    Empty,
    /// The client's body; `first` was read ahead.
    Client {
        /// The frame read ahead, if any.
        first: Option<Frame<Bytes>>,
        /// The rest of the stream.
        rest: Incoming,
    },
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Client { first, rest } => {
                if let Some(f) = first.take() {
                    return Poll::Ready(Some(Ok(f)));
                }
                let r = ready!(Pin::new(rest).poll_frame(cx));
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Client { first, rest } => first.is_none() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Client { first, rest } => {
                let extra = first
                    .as_ref()
                    .and_then(|f| f.data_ref())
                    .map_or(0, |d| d.len() as u64);
                let h = rest.size_hint();
                let mut out = SizeHint::new();
                out.set_lower(h.lower() + extra);
                if let Some(u) = h.upper() {
                    out.set_upper(u + extra);
                }
                out
            }
        }
    }
}

/// A pooled connection waiting for the end of its response body.
pub(crate) struct Lease {
    pub(crate) sender: hyper::client::conn::http1::SendRequest<UpstreamBody>,
    pub(crate) endpoint: Arc<EndpointState>,
}

impl Lease {
    fn release(self) {
        self.endpoint.pool().put(self.sender);
    }
}

/// The body sent back to the client.
pub struct ProxyBody(Kind);

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        inner: Incoming,
        lease: Option<Lease>,
    },
}

impl ProxyBody {
    /// A complete body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        Self(Kind::Full(Some(b.into())))
    }

    /// No body.
    pub fn empty() -> Self {
        Self(Kind::Full(None))
    }

    /// An endpoint's body; `lease` returns its connection to the pool at the end.
    pub(crate) fn upstream(inner: Incoming, lease: Option<Lease>) -> Self {
        if inner.is_end_stream() {
            if let Some(l) = lease {
                l.release();
            }
            return Self(Kind::Upstream { inner, lease: None });
        }
        Self(Kind::Upstream { inner, lease })
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().0 {
            Kind::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Kind::Upstream { inner, lease } => {
                let r = ready!(Pin::new(&mut *inner).poll_frame(cx));
                match &r {
                    None => {
                        if let Some(l) = lease.take() {
                            l.release();
                        }
                    }
                    Some(Ok(_)) if inner.is_end_stream() => {
                        if let Some(l) = lease.take() {
                            l.release();
                        }
                    }
                    Some(Err(_)) => drop(lease.take()),
                    Some(Ok(_)) => {}
                }
                Poll::Ready(r.map(|r| r.map_err(Into::into)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Full(b) => b.is_none(),
            Kind::Upstream { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Upstream { inner, .. } => inner.size_hint(),
        }
    }
}
