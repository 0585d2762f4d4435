//! Body types of the request path, as enums rather than boxes so no request allocates for them.
//!
//! [`UpstreamBody`] is what goes to an endpoint: nothing, or the client's streaming body with
//! its first frame already read (the proxy reads one frame before choosing an endpoint so
//! malformed framing never reaches an upstream) and a gap timer pinned in place, so the
//! request-body timeout allocates nothing either. A request mirrored to a shadow stack wraps that
//! body in a [`Tee`] (one allocation, only then), and the copy goes out as a `Full` body.
//! [`ProxyBody`] is what goes back to the client: a short error body, or the endpoint's streaming
//! body, which hands its connection back to the pool once it was read to its end
//! (`crate::upstream::body`).

use crate::access_log::Pending;
use crate::server::RequestBody;
use crate::traffic::{Done, StackStats};
use crate::upstream::body::ResponseBody;
use crate::upstream::decode::RawFields;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Error type of both bodies.
pub(crate) type BodyError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The body sent to an endpoint.
    #[project = UpstreamBodyProj]
    #[derive(Debug)]
    pub(crate) enum UpstreamBody {
        /// No body.
        Empty,
        /// The client's body; `first` was read ahead. `gap` fires when the client sends
        /// nothing for `gap_len` (`timeouts.request_body`): the body then fails with
        /// [`RequestBodyTimeout`], which aborts the upstream request and closes its connection.
        Client {
            first: Option<Frame<Bytes>>,
            rest: RequestBody,
            #[pin]
            gap: Sleep,
            gap_len: Duration,
            stats: Arc<StackStats>,
            // The request's own count, for the access log (only when it is on).
            counted: Option<Arc<AtomicU64>>,
        },
        /// A body read in full beforehand: a shadow copy's (`crate::shadow`).
        Full { data: Option<Bytes> },
        /// The client's body, also copied for a shadow request as it passes (see [`Tee`]).
        Teed {
            inner: Pin<Box<UpstreamBody>>,
            tee: Tee,
        },
    }
}

impl UpstreamBody {
    /// The client's body after its first frame, with the gap timer started now.
    pub(crate) fn client(
        first: Frame<Bytes>,
        rest: RequestBody,
        gap_len: Duration,
        stats: Arc<StackStats>,
        counted: Option<Arc<AtomicU64>>,
    ) -> Self {
        Self::Client {
            first: Some(first),
            rest,
            gap: tokio::time::sleep(gap_len),
            gap_len,
            stats,
            counted,
        }
    }
}

/// What a [`Tee`] hands over: the whole body, or `None` when it grew past the bound.
pub(crate) type Teed = Option<Bytes>;

/// The copy of a request body a shadow request is waiting for: every data frame the live
/// request passes on is also kept here (a reference-counted `Bytes`, no copy of the data) until
/// the body ends, then the whole body is handed to the shadow task. It never holds the live
/// body back. Past `max` bytes the copy is given up (`None` is handed over); on a body error,
/// or when dropped before the end, the shadow task sees its sender gone.
#[derive(Debug)]
pub(crate) struct Tee {
    parts: Vec<Bytes>,
    len: u64,
    max: u64,
    done: Option<tokio::sync::oneshot::Sender<Teed>>,
}

impl Tee {
    /// A tee of at most `max` bytes delivering to `done`.
    pub(crate) fn new(max: u64, done: tokio::sync::oneshot::Sender<Teed>) -> Self {
        Self {
            parts: Vec::new(),
            len: 0,
            max,
            done: Some(done),
        }
    }

    fn push(&mut self, data: &Bytes) {
        if self.done.is_none() {
            return;
        }
        self.len += data.len() as u64;
        if self.len > self.max {
            if let Some(done) = self.done.take() {
                // The shadow task may be gone; nothing to tell it then.
                let _ = done.send(None);
            }
            self.parts = Vec::new();
        } else if !data.is_empty() {
            self.parts.push(data.clone());
        }
    }

    fn give_up(&mut self) {
        self.done = None;
        self.parts = Vec::new();
    }

    fn finish(&mut self) {
        let Some(done) = self.done.take() else { return };
        let body = match self.parts.len() {
            0 => Bytes::new(),
            1 => self.parts.pop().unwrap_or_default(),
            _ => {
                let mut b = bytes::BytesMut::with_capacity(self.len as usize);
                for p in self.parts.drain(..) {
                    b.extend_from_slice(&p);
                }
                b.freeze()
            }
        };
        // The shadow task may be gone (dropped with its runtime); nothing to do then.
        let _ = done.send(Some(body));
    }
}

/// The client sent no request-body bytes for longer than `timeouts.request_body`.
#[derive(Debug, thiserror::Error)]
#[error("request body idle for longer than the request-body timeout")]
pub(crate) struct RequestBodyTimeout;

impl RequestBodyTimeout {
    /// Whether `e` (or one of its sources) is this timeout.
    pub(crate) fn is_cause_of(e: &(dyn std::error::Error + 'static)) -> bool {
        let mut cur = Some(e);
        while let Some(e) = cur {
            if e.is::<Self>() {
                return true;
            }
            cur = e.source();
        }
        false
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.project() {
            UpstreamBodyProj::Empty => Poll::Ready(None),
            UpstreamBodyProj::Client {
                first,
                rest,
                mut gap,
                gap_len,
                stats,
                counted,
            } => {
                let count = |f: &Frame<Bytes>| {
                    let n = f.data_ref().map_or(0, |d| d.len() as u64);
                    stats.record_bytes_in(n);
                    if let Some(c) = counted.as_ref() {
                        c.fetch_add(n, Ordering::Relaxed);
                    }
                };
                if let Some(f) = first.take() {
                    count(&f);
                    return Poll::Ready(Some(Ok(f)));
                }
                if let Poll::Ready(r) = Pin::new(rest).poll_frame(cx) {
                    gap.as_mut().reset(Instant::now() + *gap_len);
                    if let Some(Ok(f)) = &r {
                        count(f);
                    }
                    return Poll::Ready(r);
                }
                ready!(gap.poll(cx));
                Poll::Ready(Some(Err(RequestBodyTimeout.into())))
            }
            UpstreamBodyProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            UpstreamBodyProj::Teed { inner, tee } => {
                let r = ready!(inner.as_mut().poll_frame(cx));
                match &r {
                    Some(Ok(f)) => {
                        if let Some(d) = f.data_ref() {
                            tee.push(d);
                        }
                        if inner.is_end_stream() {
                            tee.finish();
                        }
                    }
                    None => tee.finish(),
                    Some(Err(_)) => tee.give_up(),
                }
                Poll::Ready(r)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Client { first, rest, .. } => first.is_none() && rest.is_end_stream(),
            Self::Full { data } => data.is_none(),
            Self::Teed { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Client { first, rest, .. } => {
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
            Self::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Self::Teed { inner, .. } => inner.size_hint(),
        }
    }
}

/// The body sent back to the client.
pub struct ProxyBody(Kind);

enum Kind {
    Full(Option<Bytes>),
    Upstream {
        /// The endpoint's body; it hands its connection back to the pool itself.
        inner: ResponseBody,
        /// Records the total latency and bytes when the body ends or is dropped.
        done: Option<Done>,
        /// The request's access-log entry, queued when the body ends or is dropped.
        log: Option<Pending>,
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

    /// An endpoint's body.
    pub(crate) fn upstream(inner: ResponseBody, done: Option<Done>) -> Self {
        Self(Kind::Upstream {
            inner,
            done,
            log: None,
        })
    }

    /// The response's fields kept as bytes (an endpoint's; see `ResponseBody::raw_fields`).
    pub(crate) fn raw_fields(&self) -> Option<&RawFields> {
        match &self.0 {
            Kind::Upstream { inner, .. } => inner.raw_fields(),
            Kind::Full(_) => None,
        }
    }

    /// Hands the request's access-log entry to the body: an endpoint's body queues it when it
    /// ends (with the bytes it carried); any other body queues it now.
    pub(crate) fn log(&mut self, pending: Pending) {
        match &mut self.0 {
            Kind::Upstream { log, .. } => *log = Some(pending),
            Kind::Full(b) => {
                let mut pending = pending;
                pending.add(b.as_ref().map_or(0, Bytes::len));
            }
        }
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
            Kind::Upstream { inner, done, log } => {
                let r = ready!(Pin::new(&mut *inner).poll_frame(cx));
                if let Some(Ok(f)) = &r {
                    let n = f.data_ref().map_or(0, |b| b.len());
                    if let Some(d) = done.as_mut() {
                        d.add(n);
                    }
                    if let Some(l) = log.as_mut() {
                        l.add(n);
                    }
                }
                if r.is_none() || inner.is_end_stream() {
                    drop(done.take());
                    drop(log.take());
                }
                Poll::Ready(r)
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

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::oneshot;

    fn teed(data: &'static [u8], max: u64) -> (UpstreamBody, oneshot::Receiver<Teed>) {
        let (tx, rx) = oneshot::channel();
        let body = UpstreamBody::Teed {
            inner: Box::pin(UpstreamBody::Full {
                data: Some(Bytes::from_static(data)),
            }),
            tee: Tee::new(max, tx),
        };
        (body, rx)
    }

    #[tokio::test]
    async fn a_tee_passes_the_body_on_and_hands_over_a_copy_at_its_end() {
        let (body, rx) = teed(b"hello", 5);
        let passed = body.collect().await.expect("body").to_bytes();
        assert_eq!(&passed[..], b"hello");
        assert_eq!(
            rx.await.expect("handed over"),
            Some(Bytes::from_static(b"hello"))
        );
    }

    #[tokio::test]
    async fn a_tee_past_its_bound_gives_up_the_copy_but_not_the_body() {
        let (body, rx) = teed(b"hello!", 5);
        let passed = body.collect().await.expect("body").to_bytes();
        assert_eq!(&passed[..], b"hello!");
        assert_eq!(rx.await.expect("told"), None);
    }

    #[tokio::test]
    async fn a_tee_dropped_before_the_end_hands_over_nothing() {
        let (body, rx) = teed(b"hello", 5);
        drop(body);
        assert!(rx.await.is_err());
    }
}
