//! The server side of HTTP/2 towards clients: the `h2` crate's codec and stream state, with
//! Switchyard's own connection loop around it instead of hyper's.
//!
//! A connection's streams run inside the connection's own task ([`Streams`]), not one spawned
//! task each: a request costs no spawn, no scheduling of a second task and no cross-task wake
//! between the stream and the connection that writes its frames. After the streams are polled,
//! the connection is polled in the same turn, so a response queued by a stream is written at
//! once. The answer is the same [`Handler`] the HTTP/1.1 server calls.
//!
//! What hyper's server did and this one keeps: its flow-control settings, `Date` on answers
//! without one, `Content-Length` from a body of known size, hop-by-hop fields never sent (the
//! `h2` crate refuses them), a stream the client resets drops its answer (which cancels the
//! upstream exchange), a body that fails resets its stream, and keep-alive pings on an idle
//! connection, closed when the client does not answer one in time. Besides, the connection
//! watches the drain flag itself: a drain (shutdown or hand-over) sends `GOAWAY`, also to a
//! plain connection that became HTTP/2 (`h2c`) after it was accepted.

use super::{Handler, RawHead, RequestBody};
use crate::body::BodyError;
use bytes::Bytes;
use futures_util::task::AtomicWaker;
use h2::server::{Connection, SendResponse};
use h2::{Reason, RecvStream, SendStream};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::task::{Wake, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tracing::debug;

/// Flow control and frame sizes as hyper's server had them: windows of 1 MiB (the protocol's
/// 64 KiB starves a fast upload) and up to 400 KiB of response data queued per connection.
const CONN_WINDOW: u32 = 1024 * 1024;
const STREAM_WINDOW: u32 = 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 400 * 1024;

/// The HTTP/2 server's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Streams a client may have open at once.
    pub(crate) max_concurrent_streams: u32,
    /// Streams reset by the client before they were accepted, and streams reset for the
    /// client's errors, a connection may pile up before it is closed (rapid reset).
    pub(crate) max_pending_reset_streams: usize,
    /// The largest request head (`SETTINGS_MAX_HEADER_LIST_SIZE`).
    pub(crate) max_header_list_size: u32,
    /// Without a new stream for this long, the connection sends a ping.
    pub(crate) keep_alive_interval: Duration,
    /// A ping unanswered for this long closes the connection.
    pub(crate) keep_alive_timeout: Duration,
    /// The client's preface must have come within this long (`timeouts.request_header`).
    pub(crate) preface_timeout: Duration,
}

impl Settings {
    fn builder(&self) -> h2::server::Builder {
        let mut b = h2::server::Builder::new();
        b.initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .max_frame_size(MAX_FRAME)
            .max_send_buffer_size(MAX_SEND_BUFFER)
            .max_concurrent_streams(self.max_concurrent_streams)
            .max_pending_accept_reset_streams(self.max_pending_reset_streams)
            .max_local_error_reset_streams(Some(self.max_pending_reset_streams))
            .max_header_list_size(self.max_header_list_size);
        b
    }
}

/// Serves one HTTP/2 connection (its preface not yet read) until it closes. `draining`: once
/// set, the connection sends `GOAWAY`, finishes the streams it has and ends.
pub(crate) async fn serve<IO, H>(
    io: IO,
    handler: &H,
    settings: &Settings,
    draining: &AtomicBool,
) -> Result<(), h2::Error>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    H: Handler,
    <H::Body as Body>::Error: Into<BodyError>,
{
    // Before its preface a connection has no stream to finish: the drain ends it at once, and
    // a client that never sends the preface is closed after `preface_timeout`.
    // In a block of its own: its timer is dropped (and leaves the runtime's wheel) once the
    // preface came, rather than waking the task at its deadline.
    let shaken = {
        let mut handshake = pin!(tokio::time::timeout(
            settings.preface_timeout,
            settings.builder().handshake::<IO, Bytes>(io),
        ));
        poll_fn(|cx| {
            if draining.load(Ordering::Acquire) {
                return Poll::Ready(None);
            }
            // It waits for its client throughout: asked on its first poll (which always
            // comes here), the drain wakes it from then on.
            crate::drain::wake_me_on_drain();
            handshake.as_mut().poll(cx).map(Some)
        })
        .await
    };
    let mut conn: Connection<IO, Bytes> = match shaken {
        Some(Ok(conn)) => conn?,
        Some(Err(_)) => {
            debug!("no HTTP/2 preface in time: closing the connection");
            return Ok(());
        }
        None => return Ok(()),
    };
    let mut keep_alive = KeepAlive::new(
        conn.ping_pong(),
        settings.keep_alive_interval,
        settings.keep_alive_timeout,
    );
    let mut streams = Streams::default();
    let mut shut = false;
    let quiet = Arc::new(QuietWaker::default());
    let conn_waker = Waker::from(quiet.clone());
    poll_fn(|cx| {
        quiet.task.register(cx.waker());
        if !shut && draining.load(Ordering::Acquire) {
            shut = true;
            conn.graceful_shutdown();
        }
        loop {
            // The streams first: what they queue is written by the connection's poll below,
            // which also reads the client's next frames. A new stream is polled before the
            // connection is again, so its request goes upstream and the connection is polled
            // once per turn, not once more per stream.
            quiet.quiet.store(true, Ordering::Release);
            streams.poll(cx);
            quiet.quiet.store(false, Ordering::Release);
            match conn.poll_accept(&mut Context::from_waker(&conn_waker)) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    keep_alive.streams += 1;
                    streams.push(|| stream(handler, req, respond));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                // Closed: every stream has ended, or the connection failed (the streams left
                // are dropped with it, which cancels their upstream exchanges).
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => break,
            }
        }
        if keep_alive.poll(cx) {
            debug!("keep-alive ping unanswered: closing the connection");
            conn.abrupt_shutdown(Reason::NO_ERROR);
            // The shutdown is written by the connection's next poll.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    })
    .await
}

/// The waker the connection is polled with: the task's, except while the streams are polled.
/// A stream that queues a frame wakes the connection, and the connection is polled right after
/// the streams anyway; without this, each answer would cost the task one more turn. Whatever
/// else wakes it then (the socket's readiness, on another thread) is seen by that same poll.
#[derive(Default)]
struct QuietWaker {
    task: AtomicWaker,
    quiet: AtomicBool,
}

impl Wake for QuietWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.quiet.load(Ordering::Acquire) {
            self.task.wake();
        }
    }
}

/// A connection's streams, polled in its task: each is polled when its own waker was woken,
/// and only then. Unlike `futures`' `FuturesUnordered`, a turn that polled every stream does
/// not wake the task again to yield (which cost the connection one more poll per request).
struct Streams<F> {
    slots: Vec<Slot<F>>,
    free: Vec<usize>,
    ready: Arc<Ready>,
    /// The indices taken from `ready` in the current turn (kept for its allocation).
    turn: Vec<usize>,
}

struct Slot<F> {
    stream: Option<Pin<Box<F>>>,
    node: Arc<SlotWaker>,
    /// `node` as a waker, made once for every stream the slot holds.
    waker: Waker,
}

/// The streams woken since the last turn, and the connection's task to wake for them.
#[derive(Default)]
struct Ready {
    queue: Mutex<Vec<usize>>,
    task: AtomicWaker,
}

/// A stream's waker: queues its slot (once until polled) and wakes the connection's task. A
/// waker kept beyond its stream's end may wake the slot's next stream: one poll too many.
struct SlotWaker {
    ready: Arc<Ready>,
    index: usize,
    queued: AtomicBool,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue();
        self.ready.task.wake();
    }
}

impl SlotWaker {
    /// Queues the slot for the next turn, unless it is queued already.
    fn queue(&self) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            if let Ok(mut q) = self.ready.queue.lock() {
                q.push(self.index);
            }
        }
    }
}

impl<F> Default for Streams<F> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            ready: Arc::default(),
            turn: Vec::new(),
        }
    }
}

impl<F: Future<Output = ()>> Streams<F> {
    /// Adds the stream `make` makes, to be polled at the next turn. Made here, right into its
    /// box: a stream's future is made once and moved once (it is about 2.7 KiB).
    fn push(&mut self, make: impl FnOnce() -> F) {
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                let node = Arc::new(SlotWaker {
                    ready: self.ready.clone(),
                    index: self.slots.len(),
                    queued: AtomicBool::new(false),
                });
                self.slots.push(Slot {
                    stream: None,
                    waker: Waker::from(node.clone()),
                    node,
                });
                self.slots.len() - 1
            }
        };
        let slot = &mut self.slots[index];
        slot.stream = Some(Box::pin(make()));
        // Queued without waking the task: it is the one pushing, and polls the streams next.
        slot.node.queue();
    }

    /// Polls the streams woken since the last turn; those that end are dropped.
    fn poll(&mut self, cx: &mut Context<'_>) {
        self.ready.task.register(cx.waker());
        match self.ready.queue.lock() {
            Ok(mut q) => std::mem::swap(&mut *q, &mut self.turn),
            Err(_) => return,
        }
        for &i in &self.turn {
            let Some(slot) = self.slots.get_mut(i) else {
                continue;
            };
            slot.node.queued.store(false, Ordering::Release);
            let Some(stream) = &mut slot.stream else {
                continue;
            };
            if stream
                .as_mut()
                .poll(&mut Context::from_waker(&slot.waker))
                .is_ready()
            {
                slot.stream = None;
                self.free.push(i);
            }
        }
        self.turn.clear();
    }
}

/// Keep-alive pings: after `interval` without a new stream the connection sends a ping, and
/// one unanswered within `timeout` closes it. The timer is set again only when it fires, not
/// per stream: a connection busy with streams pings at most once per `interval`.
struct KeepAlive {
    ping: Option<h2::PingPong>,
    interval: Duration,
    timeout: Duration,
    timer: Pin<Box<Sleep>>,
    /// Streams accepted so far, and as many when the timer was last set.
    streams: u64,
    seen: u64,
    pinging: bool,
}

impl KeepAlive {
    fn new(ping: Option<h2::PingPong>, interval: Duration, timeout: Duration) -> Self {
        Self {
            ping,
            interval,
            timeout,
            timer: Box::pin(tokio::time::sleep(interval)),
            streams: 0,
            seen: 0,
            pinging: false,
        }
    }

    /// Drives the pings; true when one went unanswered.
    fn poll(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(ping) = &mut self.ping else {
            return false;
        };
        loop {
            if self.pinging {
                match ping.poll_pong(cx) {
                    Poll::Ready(Ok(_)) => {
                        self.pinging = false;
                        self.seen = self.streams;
                        self.timer.as_mut().reset(Instant::now() + self.interval);
                        continue;
                    }
                    // The connection failed; its poll says so.
                    Poll::Ready(Err(_)) => return false,
                    Poll::Pending => {}
                }
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            if self.pinging {
                return true;
            }
            if self.streams != self.seen {
                self.seen = self.streams;
                self.timer.as_mut().reset(Instant::now() + self.interval);
                continue;
            }
            if ping.send_ping(h2::Ping::opaque()).is_err() {
                return false;
            }
            self.pinging = true;
            self.timer.as_mut().reset(Instant::now() + self.timeout);
        }
    }
}

/// One stream: the request goes to the handler; its answer goes back unless the client resets
/// the stream first.
async fn stream<H>(handler: &H, req: Request<RecvStream>, mut respond: SendResponse<Bytes>)
where
    H: Handler,
    <H::Body as Body>::Error: Into<BodyError>,
{
    let (parts, recv) = req.into_parts();
    let length = content_length(&parts.headers);
    let mut req = Request::from_parts(parts, RequestBody::H2(H2Body::new(recv, length)));
    let resp = {
        let mut answer = pin!(handler.call(&mut req));
        let answered = poll_fn(|cx| {
            if let Poll::Ready(resp) = answer.as_mut().poll(cx) {
                return Poll::Ready(Some(resp));
            }
            // A reset (or the connection's end) drops the answer, and with it its exchange.
            match respond.poll_reset(cx) {
                Poll::Ready(_) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match answered {
            Some(resp) => resp,
            None => {
                debug!("stream reset by the client before its answer");
                return;
            }
        }
    };
    drop(req);
    let (mut head, body) = resp.into_parts();
    // What the endpoint's lines had is known from their parse: no lookup in the map for it.
    let (mut has_date, mut has_length) = (false, false);
    if let Some(raw) = body.raw_fields() {
        raw.append_to(&mut head.headers);
        (has_date, has_length) = (raw.has_date(), raw.has_length());
    }
    // Never sent on HTTP/2 (the `h2` crate refuses them); the request path removes them
    // already, and this finds none in one pass over the names.
    crate::headers::strip_hop_by_hop(&mut head.headers, false);
    if !has_date && !head.headers.contains_key(header::DATE) {
        head.headers.insert(header::DATE, date());
    }
    let end = body.is_end_stream();
    if !end && !has_length && !head.headers.contains_key(header::CONTENT_LENGTH) {
        if let Some(n) = body.size_hint().exact() {
            head.headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    let sender = match respond.send_response(Response::from_parts(head, ()), end) {
        Ok(s) => s,
        Err(e) => {
            debug!(error = %e, "response refused");
            respond.send_reset(Reason::INTERNAL_ERROR);
            return;
        }
    };
    if !end {
        if let Err(e) = pipe(body, sender).await {
            debug!(error = %e, "response body not sent");
        }
    }
}

/// Sends `body` on `tx`, as far as the client's flow control lets it: the body's next piece is
/// read only once the stream has window for the one before. A piece is handed to the `h2`
/// crate whole: it frames it within the window and holds the rest until the client opens the
/// window further.
async fn pipe<B>(body: B, mut tx: SendStream<Bytes>) -> Result<(), BodyError>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BodyError>,
{
    let mut body = pin!(body);
    let mut held: Option<(Bytes, bool)> = None;
    poll_fn(|cx| {
        loop {
            if let Poll::Ready(r) = tx.poll_reset(cx) {
                // The client reset the stream (or the connection ended): the body is dropped.
                return Poll::Ready(match r {
                    Ok(reason) => Err(BodyError::from(h2::Error::from(reason))),
                    Err(e) => Err(e.into()),
                });
            }
            if let Some((data, eos)) = held.take() {
                if tx.capacity() == 0 {
                    match tx.poll_capacity(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e.into())),
                        Poll::Ready(None) => {
                            return Poll::Ready(Err(
                                "stream closed before its body was sent".into()
                            ));
                        }
                        Poll::Pending => {
                            held = Some((data, eos));
                            return Poll::Pending;
                        }
                    }
                    if tx.capacity() == 0 {
                        held = Some((data, eos));
                        continue;
                    }
                }
                tx.send_data(data, eos)?;
                if eos {
                    return Poll::Ready(Ok(()));
                }
                continue;
            }
            match ready!(body.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let eos = body.is_end_stream();
                        if data.is_empty() || eos {
                            // The last piece (most answers are one) goes at once: it is all in
                            // memory already, so waiting for the client's window first would
                            // only cost the stream a wake and a poll; the crate holds what the
                            // window does not take yet.
                            tx.send_data(data, eos)?;
                            if eos {
                                return Poll::Ready(Ok(()));
                            }
                        } else {
                            tx.reserve_capacity(data.len());
                            held = Some((data, eos));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            tx.reserve_capacity(0);
                            tx.send_trailers(trailers)?;
                            return Poll::Ready(Ok(()));
                        }
                    }
                },
                Some(Err(e)) => {
                    tx.send_reset(Reason::INTERNAL_ERROR);
                    return Poll::Ready(Err(e.into()));
                }
                None => {
                    tx.send_data(Bytes::new(), true)?;
                    return Poll::Ready(Ok(()));
                }
            }
        }
    })
    .await
}

/// The request's `Content-Length`, when it has one (the `h2` crate has checked it, and checks
/// the data against it).
fn content_length(h: &HeaderMap) -> Option<u64> {
    let v = h.get(header::CONTENT_LENGTH)?;
    std::str::from_utf8(v.as_bytes()).ok()?.parse().ok()
}

/// A request's body on an HTTP/2 stream. What is read is given back to the client's window at
/// once: the request path forwards each piece before it asks for the next.
#[derive(Debug)]
pub(crate) struct H2Body {
    recv: RecvStream,
    /// Bytes still to come by `Content-Length`.
    left: Option<u64>,
    data_done: bool,
}

impl H2Body {
    fn new(recv: RecvStream, left: Option<u64>) -> Self {
        Self {
            recv,
            left,
            data_done: false,
        }
    }
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut this.left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // A stream closed with NO_ERROR ended without the rest of its body being
                // wanted (RFC 9113 §8.1): the body ends here.
                Some(Err(e)) if e.reason() == Some(Reason::NO_ERROR) => {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(t) => Poll::Ready(t.map(|t| Ok(Frame::trailers(t)))),
            Err(e) if e.reason() == Some(Reason::NO_ERROR) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// `Date` for now, made once a second per thread.
fn date() -> HeaderValue {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static DATE: RefCell<(u64, Option<HeaderValue>)> = const { RefCell::new((u64::MAX, None)) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        match &d.1 {
            Some(v) if d.0 == secs => v.clone(),
            _ => {
                let v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                    .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
                *d = (secs, Some(v.clone()));
                v
            }
        }
    })
}

#[cfg(test)]
mod tests;
