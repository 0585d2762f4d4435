//! One request/response exchange on a connection, driven inside the request's own future: the
//! head is encoded and written (with the body's first frame in the same write when it is at
//! hand), the rest of the body is sent while the response head is awaited, informational
//! answers (100, 102, 103) are skipped, and the final head becomes a `Response` whose body owns
//! the connection. No task, no channel, and no timer per request: the response timeout is the
//! connection's own re-armed timer (`Conn::arm_deadline`).

use super::body::{Decoder, Reading, ResponseBody};
use super::chunked::ChunkedDecoder;
use super::conn::Conn;
use super::decode::{self, DecodeError, Framing, ResponseHead};
use super::encode::{self, BodyShape};
use super::pump::{Pump, PumpError};
use crate::body::{RequestBodyTimeout, UpstreamBody};
use crate::endpoint::EndpointState;
use crate::error::Cause;
use crate::headers::SetField;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::Body;
use std::future::poll_fn;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tracing::debug;

/// An exchange that failed: the cause, and whether the request may be sent again.
#[derive(Debug)]
pub(crate) struct Failed {
    pub(crate) cause: Cause,
    /// Whether, and where, the request may be sent again. The request is then as it was (its
    /// body, empty, taken).
    pub(crate) resend: Resend,
}

/// Whether a failed attempt's request may be sent again: only a bodiless request of a safe
/// method whose connection failed (write or read error, or a close) before one byte of an
/// answer, or one that never had a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Resend {
    /// No: the endpoint may have acted on it.
    No,
    /// A connection reused from the pool that the endpoint had closed while idle: the close
    /// raced the request. Not the endpoint's failure; it may go to the same endpoint.
    Stale,
    /// The endpoint refused it: the connect failed, or a new connection was reset or closed
    /// before any answer (a container's port proxy accepts while nothing listens behind it,
    /// an endpoint that died with the request). An endpoint failure; it may go to another.
    Refused,
}

/// Why no response head arrived.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("writing the request failed")]
    Write(#[source] std::io::Error),
    #[error("reading the response failed")]
    Read(#[source] std::io::Error),
    #[error("the endpoint closed the connection before answering")]
    Closed,
    #[error("malformed response head")]
    Decode(#[source] DecodeError),
    #[error("sending the request body failed")]
    Pump(PumpError),
    #[error("no response head within the response timeout")]
    Timeout,
}

/// Sends `req` over `conn`, with the fields in `set` in place of the client's, and reads the
/// response head within `timeout` (else fails with `Cause::UpstreamTimeout`, and the connection
/// is closed); the response's body reads the rest and hands the connection back to `home`'s
/// pool when it may carry another request.
///
/// The request is borrowed, not moved (a request's head is large, and moving it through each
/// layer of futures costs a copy per layer): `req` is its head (its own body, if any, is not
/// looked at), and `body` is taken; once an answer arrived the head's header map becomes the
/// response's (see `decode::parse_response_head_raw`). The caller keeps what it needs to send
/// it again when [`Failed::resend`] says it may.
pub(crate) async fn send<B>(
    mut conn: Box<Conn>,
    req: &mut Request<B>,
    body: &mut UpstreamBody,
    set: &[SetField<'_>],
    home: &Arc<EndpointState>,
    timeout: Duration,
) -> Result<Response<ResponseBody>, Failed> {
    let body = std::mem::replace(body, UpstreamBody::Empty);
    let shape = if body.is_end_stream() {
        BodyShape::Empty
    } else {
        match body.size_hint().exact() {
            Some(n) => BodyShape::Exact(n),
            None => BodyShape::Streaming,
        }
    };
    let framing = encode::encode_request_head(
        req.method(),
        req.uri(),
        req.headers(),
        set,
        shape,
        &mut conn.out.head,
    );
    let bodiless = shape == BodyShape::Empty;
    let mut pump = (!bodiless).then(|| Pump::new(Box::pin(body), framing));
    let mut received = false;
    conn.arm_deadline(timeout);
    let head = poll_fn(|cx| {
        if let Some(p) = pump.as_mut() {
            if let Poll::Ready(r) = p.poll(cx, &mut conn) {
                r.map_err(Failure::Pump)?;
                pump = None;
            }
        } else if !conn.out.is_empty() {
            if let Poll::Ready(r) = conn.poll_write_out(cx) {
                r.map_err(Failure::Write)?;
            }
        }
        let head = poll_head(cx, &mut conn, &mut received, req.headers_mut());
        // As `tokio::time::timeout`: the exchange first, the deadline only while it waits.
        if head.is_pending() && conn.poll_deadline(cx).is_ready() {
            return Poll::Ready(Err(Failure::Timeout));
        }
        head
    })
    .await;
    let head = match head {
        Ok(h) => h,
        Err(f) => {
            debug!(
                endpoint = %home.addr(),
                error = %f,
                cause = std::error::Error::source(&f).map(tracing::field::display),
                "upstream request failed"
            );
            let resend = if bodiless
                && !received
                && req.method().is_safe()
                && matches!(f, Failure::Write(_) | Failure::Read(_) | Failure::Closed)
            {
                if conn.reused {
                    Resend::Stale
                } else {
                    Resend::Refused
                }
            } else {
                Resend::No
            };
            let cause = match &f {
                // The connection is dropped with this future: closed, never pooled.
                Failure::Timeout => Cause::UpstreamTimeout,
                Failure::Pump(PumpError::Body(e)) if RequestBodyTimeout::is_cause_of(&**e) => {
                    Cause::RequestBodyTimeout
                }
                _ => Cause::UpstreamError,
            };
            return Err(Failed { cause, resend });
        }
    };
    respond(conn, head, pump, req.method() == Method::HEAD, home)
}

/// Reads until a final response head (or a switch) has arrived. The head's fields are built
/// in `spare`'s allocation: the request's map, no longer needed once any answer arrived (a
/// request is sent again only when nothing was received).
fn poll_head(
    cx: &mut Context<'_>,
    conn: &mut Conn,
    received: &mut bool,
    spare: &mut HeaderMap,
) -> Poll<Result<ResponseHead, Failure>> {
    loop {
        if !conn.read.is_empty() {
            if let Some(head) =
                decode::parse_response_head_raw(&mut conn.read, spare).map_err(Failure::Decode)?
            {
                if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    // An interim answer; the client's own `100 Continue` came from the proxy.
                    continue;
                }
                return Poll::Ready(Ok(head));
            }
        }
        let n = ready!(conn.poll_fill(cx)).map_err(Failure::Read)?;
        if n == 0 {
            return Poll::Ready(Err(Failure::Closed));
        }
        *received = true;
    }
}

/// The response for a final head: its body decided by the framing, or the switched connection.
fn respond(
    conn: Box<Conn>,
    head: ResponseHead,
    pump: Option<Pump>,
    head_request: bool,
    home: &Arc<EndpointState>,
) -> Result<Response<ResponseBody>, Failed> {
    let failed = |e: DecodeError| {
        debug!(endpoint = %home.addr(), error = %e, "upstream response refused");
        Failed {
            cause: Cause::UpstreamError,
            resend: Resend::No,
        }
    };
    let (decoder, keep_alive) = if head.status == StatusCode::SWITCHING_PROTOCOLS {
        (Decoder::Switched, false)
    } else {
        let (framing, keep_alive) =
            decode::response_framing(&head, head_request).map_err(failed)?;
        let decoder = match framing {
            Framing::Empty => Decoder::Length(0),
            Framing::Length(n) => Decoder::Length(n),
            Framing::Chunked => Decoder::Chunked(ChunkedDecoder::new()),
            Framing::Close => Decoder::Close,
        };
        (decoder, keep_alive)
    };
    let reading = Reading {
        conn,
        decoder,
        pump,
        keep_alive,
        home: home.clone(),
    };
    let body = if matches!(reading.decoder, Decoder::Switched) {
        ResponseBody::switched(reading)
    } else {
        ResponseBody::new(reading)
            .map_err(failed)?
            .with_raw(head.raw)
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.version_mut() = head.version;
    *resp.headers_mut() = head.headers;
    Ok(resp)
}
