//! One client connection over HTTP/1.1, driven inside its own task without further tasks or
//! channels: read a head, run the request's future while feeding its body on demand, write the
//! response, and start over on the same buffers.
//!
//! Invariants:
//! - Requests are answered in order, one at a time; bytes of a pipelined next request wait in
//!   the read buffer. Reads ahead during a request only fill the buffer's free space (growing it
//!   would copy the bytes the request's fields still share) and only notice a client that went
//!   away, which cancels the request (as hyper's server does by default).
//! - The connection closes after a response when the client or the response asked, when the
//!   request's body was not read to its end (its rest cannot be told from a next request), when
//!   the listener drains, and when the response's length is the close.
//! - Timers: one per connection, made when the connection first waits for the client (a
//!   request there at once and answered with a close needs none), and moved only later on
//!   the fast path (see `crate::deadline`). A fresh connection has `timeouts.request_header`
//!   for its first head; a kept-alive one `timeouts.idle` for the next, and a head that
//!   starts arriving has `timeouts.request_header` from its first bytes.
//! - The drain: a connection about to wait for its client asks to be woken by it
//!   (`crate::drain::wake_me_on_drain`); otherwise it sees the flag at its next check.
//! - Buffers follow requests, not connections: a connection with nothing to read gives its
//!   buffers to the thread's stock (`spare`) and takes a set back when bytes arrive.
//! - With `settings.dormant_after`, a kept-alive connection idle that long returns as
//!   [`Served::Dormant`] with its timer: the caller drops this future (its room is its largest
//!   state, a request's future included) and holds only the stream until bytes arrive, then
//!   takes it up where it was ([`serve`] with its [`Wake`]). Memory then follows busy
//!   connections, not open ones.

use super::body::{BodyFault, Piece, Pipe, PipedBody, RequestBody, Switch, Upgraded};
use super::head::{BodyFraming, HeadError, HeadLimits, RequestHead, parse_request_head};
use super::spare::{self, Kit};
use super::write::{Asked, Plan, encode_head};
use super::{Handler, RawHead, Stream};
use crate::deadline::Deadline;
use crate::error::Cause;
use crate::upstream::conn::{Out, poll_fill, poll_write_out};
use crate::upstream::encode::{encode_chunk_size, encode_last_chunk};
use crate::upstream::{ChunkedDecoder, Decoded};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Request, Response};
use http_body::Body;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::oneshot;
use tokio::time::{Instant, Sleep};

/// Free space made in the read buffer before a read, at first.
const READ_SPACE: usize = spare::READ_ROOM;
/// The client preface of HTTP/2 with prior knowledge (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// How long and how much a closing connection still reads (and drops) so that the client
/// receives the last response before the close (a close with unread bytes resets the
/// connection, and a reset can destroy a response still in flight).
const LINGER: Duration = Duration::from_millis(500);
const LINGER_BYTES: usize = 256 * 1024;

/// The connection's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings {
    /// Limits of a request head.
    pub(crate) limits: HeadLimits,
    /// Time for a head from its first byte (and for a fresh connection's first head).
    pub(crate) request_header: Duration,
    /// Time a kept-alive connection waits for its next request.
    pub(crate) idle: Duration,
    /// Idle time after which a kept-alive connection is handed back dormant
    /// ([`Served::Dormant`]); `None` keeps it in its task.
    pub(crate) dormant_after: Option<Duration>,
}

/// How a connection ended.
#[derive(Debug)]
pub(crate) enum Served<IO> {
    /// It closed (or switched protocols and was handed over).
    Done,
    /// It opened with the HTTP/2 preface: the stream and the bytes read so far, for an HTTP/2
    /// server.
    H2 {
        /// The stream.
        io: IO,
        /// What was read (the preface, perhaps more).
        read: Bytes,
    },
    /// Kept alive and idle for `settings.dormant_after`, with nothing read: the stream and
    /// its timer, to wait with ([`Wake::idle_over`]) and to serve again ([`serve`]) when it
    /// becomes readable.
    Dormant {
        /// The stream.
        io: IO,
        /// The idle time left.
        wake: Wake,
    },
}

/// A dormant connection's idle deadline and the timer that keeps it.
#[derive(Debug)]
pub(crate) struct Wake {
    timer: Pin<Box<Sleep>>,
    idle_until: Instant,
}

impl Wake {
    /// The idle deadline `at`, with a timer of its own: for a dormant connection whose timer
    /// was dropped while it waited elsewhere (`crate::listener`'s lot).
    pub(crate) fn until(at: Instant) -> Self {
        Self {
            timer: Box::pin(tokio::time::sleep_until(at)),
            idle_until: at,
        }
    }

    /// When the connection's idle time is over.
    pub(crate) fn deadline(&self) -> Instant {
        self.idle_until
    }

    /// Ready when the connection's idle time is over (it then closes).
    pub(crate) fn idle_over(&mut self) -> &mut Pin<Box<Sleep>> {
        // Later than the deadline it had: one atomic operation.
        self.timer.as_mut().reset(self.idle_until);
        &mut self.timer
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// A head is due by the timer.
    Head,
    /// Kept alive and idle until the timer.
    Idle,
}

/// What waiting for a head gave.
#[allow(clippy::large_enum_variant)] // once per request, moved once; a box would allocate
enum Next {
    Head(RequestHead),
    Close,
    H2,
    Refuse(Cause),
    Dormant,
}

/// A request body being read for the request path.
struct Feed {
    pipe: Arc<Pipe>,
    decode: Decode,
    /// A `100 Continue` is owed when the body is first asked for.
    continue_due: bool,
    /// The last piece (or a fault) was handed over.
    finished: bool,
    /// The body could not be read to its end.
    broken: bool,
}

enum Decode {
    Length(u64),
    Chunked(ChunkedDecoder),
}

struct Conn<IO> {
    io: IO,
    read: BytesMut,
    read_space: usize,
    out: Out,
    /// The map the next request's fields are parsed into (the last response's, cleared).
    spare: HeaderMap,
    /// When the current stage's wait is over.
    timer: Deadline,
    stage: Stage,
    /// While idle: when the idle time is over (the timer may fire first, to go dormant).
    idle_until: Instant,
    settings: Settings,
}

/// Serves HTTP/1.1 on `io` until it closes, answering each request with `service`'s response.
/// `h2c`: a connection opening with the HTTP/2 preface is returned as [`Served::H2`].
/// `draining`: once set, the connection takes no new request and closes when idle. `wake`: a
/// dormant connection taken up again (see the module's doc), else a fresh one.
pub(crate) async fn serve<IO, H>(
    io: IO,
    service: &H,
    settings: Settings,
    draining: &AtomicBool,
    h2c: bool,
    wake: Option<Wake>,
) -> io::Result<Served<IO>>
where
    IO: Stream,
    H: Handler,
{
    let (timer, stage, idle_until) = match wake {
        Some(Wake {
            mut timer,
            idle_until,
        }) => {
            // Woken, but the bytes may not come (a wake for nothing): dormant again after
            // `dormant_after` rather than kept whole until the idle deadline.
            if let Some(d) = settings.dormant_after {
                timer
                    .as_mut()
                    .reset(later(Instant::now(), d).min(idle_until));
            }
            (Deadline::from_timer(timer), Stage::Idle, idle_until)
        }
        None => {
            let now = Instant::now();
            let at = later(now, settings.request_header);
            // Its timer is made only if the head has to be waited for.
            (Deadline::at(at), Stage::Head, at)
        }
    };
    let mut c = Conn {
        io,
        read: BytesMut::new(),
        read_space: READ_SPACE,
        out: Out::default(),
        spare: HeaderMap::new(),
        timer,
        stage,
        idle_until,
        settings,
    };
    // Only a fresh connection may open with the HTTP/2 preface.
    let mut first = stage == Stage::Head;
    loop {
        // Scoped blocks: a value moved away still holds its room in the connection's future
        // until its scope ends, and room held across several waits is kept apart from every
        // other wait's (about 1 KiB more to copy when a connection starts).
        let (asked, mut feed, upgrade, switching, parts, body) = {
            let (asked, mut req, mut feed, upgrade) = {
                let got = match poll_fn(|cx| c.poll_head(cx, first && h2c, draining)).await {
                    Next::Head(h) => Ok(h),
                    Next::Close => Err(None),
                    Next::Refuse(cause) => Err(Some(cause)),
                    Next::Dormant => {
                        return Ok(Served::Dormant {
                            io: c.io,
                            wake: Wake {
                                timer: c.timer.into_timer(),
                                idle_until: c.idle_until,
                            },
                        });
                    }
                    Next::H2 => {
                        return Ok(Served::H2 {
                            io: c.io,
                            read: c.read.freeze(),
                        });
                    }
                };
                let head = match got {
                    Ok(h) => h,
                    Err(refused) => {
                        c.end(refused).await;
                        return Ok(Served::Done);
                    }
                };
                first = false;
                let asked = Asked {
                    head: head.method == http::Method::HEAD,
                    version: head.version,
                    keep_alive: head.keep_alive,
                };
                let (req, feed, upgrade) = c.request(head);
                (asked, req, feed, upgrade)
            };
            let answered = {
                // In the connection's task, not boxed: boxing it per request (the task would
                // then not keep room for it while idle) measured 0.5k more instructions a
                // request, for 1.4 KiB less per idle connection (`benches/idle.sh`).
                let mut fut = pin!(service.call(&mut req));
                poll_fn(|cx| {
                    loop {
                        if let Poll::Ready(resp) = fut.as_mut().poll(cx) {
                            return Poll::Ready(Some(resp));
                        }
                        if c.poll_feed(&mut feed, false, cx) {
                            continue;
                        }
                        let reading = feed.as_ref().is_some_and(|f| !f.finished);
                        if !reading && c.poll_gone(cx) {
                            return Poll::Ready(None);
                        }
                        return Poll::Pending;
                    }
                })
                .await
            };
            // What the answer left of the request (an unread body among it) goes before the
            // response is written: a body dropped unread means the connection must close.
            drop(req);
            let Some(resp) = answered else {
                // The client went away: the request was cancelled by dropping it.
                return Ok(Served::Done);
            };
            let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
            // The head is encoded here and the body written in place (not moved into a future
            // of its own: a response is about 280 bytes, and each move is a copy).
            let (parts, body) = resp.into_parts();
            (asked, feed, upgrade, switching, parts, body)
        };
        let closing = draining.load(Ordering::Relaxed) || service.closing();
        let plan = c.start(parts, &body, asked, &feed, closing);
        let plan = c.write_body(pin!(body), plan, &mut feed).await?;
        if switching {
            if let Some(tx) = upgrade {
                let _ = tx.send(Upgraded {
                    io: Box::new(c.io),
                    read: c.read.freeze(),
                });
            }
            return Ok(Served::Done);
        }
        let unread = feed.as_ref().is_some_and(|f| !f.finished || f.broken);
        if plan.close || unread {
            if unread {
                c.linger().await;
            } else {
                c.close().await;
            }
            // Its buffers serve the thread's next connection (with a connection per request,
            // three allocations fewer each, and memory still in the cache).
            c.park();
            return Ok(Served::Done);
        }
        c.rest();
    }
}

/// `now + d`, or far ahead when that overflows (as `tokio::time::timeout` does).
fn later(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(86400 * 365 * 30))
}

impl<IO: Stream> Conn<IO> {
    /// Sets the current stage's deadline (after each response: the next idle deadline, which
    /// costs the runtime's timer nothing; see [`Deadline`]).
    fn arm(&mut self, at: Instant) {
        self.timer.set(at);
    }

    /// After a response: idle until the next head (the timer fires earlier to go dormant).
    fn rest(&mut self) {
        let now = Instant::now();
        self.stage = Stage::Idle;
        self.idle_until = later(now, self.settings.idle);
        let at = match self.settings.dormant_after {
            Some(d) if d < self.settings.idle => later(now, d),
            _ => self.idle_until,
        };
        self.arm(at);
    }

    /// Gives the buffers to this thread's stock while nothing is to be read, or once the
    /// connection has ended (see `spare`).
    fn park(&mut self) {
        if self.read.capacity() == 0 {
            return;
        }
        self.read_space = READ_SPACE;
        self.read.clear();
        self.out.head.clear();
        // Empty but for a head cut short (clearing walks the whole table: only when needed).
        if !self.spare.is_empty() {
            self.spare.clear();
        }
        spare::give(Kit {
            read: std::mem::take(&mut self.read),
            write: std::mem::take(&mut self.out.head),
            map: std::mem::take(&mut self.spare),
        });
    }

    /// Takes buffers from this thread's stock when bytes arrive.
    fn unpark(&mut self) {
        let kit = spare::take();
        self.read = kit.read;
        self.out.head = kit.write;
        self.spare = kit.map;
    }

    fn poll_head(&mut self, cx: &mut Context<'_>, h2c: bool, draining: &AtomicBool) -> Poll<Next> {
        loop {
            if !self.read.is_empty() {
                let preface = h2c && {
                    let n = self.read.len().min(H2_PREFACE.len());
                    self.read[..n] == H2_PREFACE[..n]
                };
                if preface {
                    if self.read.len() >= H2_PREFACE.len() {
                        return Poll::Ready(Next::H2);
                    }
                } else {
                    match parse_request_head(&mut self.read, self.settings.limits, &mut self.spare)
                    {
                        Ok(Some(h)) => return Poll::Ready(Next::Head(h)),
                        Ok(None) => {}
                        Err(HeadError::Malformed) => {
                            return Poll::Ready(Next::Refuse(Cause::BadRequest));
                        }
                        Err(HeadError::TooLarge) => {
                            return Poll::Ready(Next::Refuse(Cause::HeadersTooLarge));
                        }
                    }
                }
                if self.stage != Stage::Head {
                    self.stage = Stage::Head;
                    let at = later(Instant::now(), self.settings.request_header);
                    self.arm(at);
                }
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Next::Close),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => {}
            }
            if self.read.is_empty() {
                // Idle when the drain starts (a request already sent is read and answered
                // first).
                if draining.load(Ordering::Acquire) {
                    return Poll::Ready(Next::Close);
                }
                // Waiting for the client: the drain must wake this connection.
                crate::drain::wake_me_on_drain();
                self.park();
            }
            ready!(self.timer.poll(cx));
            if self.stage == Stage::Idle
                && self.read.capacity() == 0
                && Instant::now() < self.idle_until
            {
                // Idle for `dormant_after`, nothing read, its buffers given back.
                return Poll::Ready(Next::Dormant);
            }
            // No head in time, or the idle time is over.
            return Poll::Ready(Next::Close);
        }
    }

    /// The request for `head`, the reading of its body, and the sender of its upgrade.
    fn request(
        &mut self,
        head: RequestHead,
    ) -> (
        Request<RequestBody>,
        Option<Feed>,
        Option<oneshot::Sender<Upgraded>>,
    ) {
        let RequestHead {
            method,
            uri,
            version,
            headers,
            framing,
            expect_continue,
            upgrade,
            ..
        } = head;
        let (body, feed) = match framing {
            BodyFraming::None => (RequestBody::Empty, None),
            BodyFraming::Length(n) if self.read.len() as u64 >= n => {
                let whole = self.read.split_to(n as usize).freeze();
                (RequestBody::Full(Some(whole)), None)
            }
            framing => {
                let pipe = Pipe::new();
                let (length, decode) = match framing {
                    BodyFraming::Length(n) => (Some(n), Decode::Length(n)),
                    _ => (None, Decode::Chunked(ChunkedDecoder::new())),
                };
                let feed = Feed {
                    pipe: pipe.clone(),
                    decode,
                    continue_due: expect_continue,
                    finished: false,
                    broken: false,
                };
                (RequestBody::Piped(PipedBody::new(pipe, length)), Some(feed))
            }
        };
        let mut req = Request::new(body);
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        *req.version_mut() = version;
        *req.headers_mut() = headers;
        let upgrade = upgrade.then(|| {
            let (tx, rx) = oneshot::channel();
            req.extensions_mut().insert(Switch::new(rx));
            tx
        });
        (req, feed, upgrade)
    }

    /// Hands the request body its next piece if it asked for one; whether anything was handed
    /// (the request should be polled again). `responding`: the response has started, so no
    /// `100 Continue` may go out any more.
    fn poll_feed(
        &mut self,
        feed: &mut Option<Feed>,
        responding: bool,
        cx: &mut Context<'_>,
    ) -> bool {
        let Some(f) = feed.as_mut() else {
            return false;
        };
        loop {
            if f.finished || f.pipe.is_gone() || !f.pipe.wanted(cx) {
                return false;
            }
            if f.continue_due {
                f.continue_due = false;
                if !responding {
                    self.out
                        .head
                        .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                }
            }
            if !responding && !self.out.is_empty() {
                match self.poll_write_out(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(_)) => {
                        f.fault(BodyFault::Incomplete, cx);
                        return true;
                    }
                    Poll::Pending => return false,
                }
            }
            let piece = match &mut f.decode {
                Decode::Length(left) => {
                    if self.read.is_empty() {
                        None
                    } else {
                        let n = (*left).min(self.read.len() as u64);
                        *left -= n;
                        Some((
                            Piece::Data(self.read.split_to(n as usize).freeze()),
                            *left == 0,
                        ))
                    }
                }
                Decode::Chunked(d) => match d.decode(&mut self.read) {
                    Ok(Decoded::Data(b)) => {
                        let last = d.finish_if_last(&mut self.read);
                        Some((Piece::Data(b), last))
                    }
                    Ok(Decoded::Trailers(t)) => Some((Piece::Trailers(t), true)),
                    Ok(Decoded::End) => {
                        f.finished = true;
                        f.pipe.end(cx);
                        return true;
                    }
                    Ok(Decoded::NeedMore) => None,
                    Err(_) => {
                        f.fault(BodyFault::Malformed, cx);
                        return true;
                    }
                },
            };
            if let Some((piece, last)) = piece {
                f.finished = last;
                f.pipe.put(piece, last, cx);
                return true;
            }
            match self.poll_fill(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                    f.fault(BodyFault::Incomplete, cx);
                    return true;
                }
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => return false,
            }
        }
    }

    /// While a request runs without a body to read: whether the client closed the
    /// connection. Reads only into the read buffer's free space (see the module's invariants).
    fn poll_gone(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let free = self.read.capacity() - self.read.len();
            if free == 0 || self.read.len() >= self.settings.limits.max_bytes {
                return false;
            }
            match pin!(self.io.read_buf(&mut self.read)).poll(cx) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return true,
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => return false,
            }
        }
    }

    /// Writes `resp` to the client: its head, then its body.
    async fn respond<B: Body<Data = Bytes> + RawHead>(
        &mut self,
        resp: Response<B>,
        asked: Asked,
        feed: &mut Option<Feed>,
        closing: bool,
    ) -> io::Result<Plan> {
        let (parts, body) = resp.into_parts();
        let plan = self.start(parts, &body, asked, feed, closing);
        self.write_body(pin!(body), plan, feed).await
    }

    /// Queues the head of a response whose body is `body`, and keeps its header map for the
    /// next request.
    fn start<B: Body<Data = Bytes> + RawHead>(
        &mut self,
        parts: http::response::Parts,
        body: &B,
        asked: Asked,
        feed: &Option<Feed>,
        closing: bool,
    ) -> Plan {
        // A body the request path dropped unread: its rest cannot be told from a next request.
        let closing = closing
            || feed
                .as_ref()
                .is_some_and(|f| !f.finished && f.pipe.is_gone());
        let plan = encode_head(
            &mut self.out.head,
            &parts,
            body.raw_fields(),
            &body.size_hint(),
            asked,
            closing,
        );
        let mut map = parts.headers;
        map.clear();
        self.spare = map;
        plan
    }

    /// Writes the queued head and then `body` by `plan`, while still feeding the request body
    /// if the response's producer asks for it.
    async fn write_body<B: Body<Data = Bytes>>(
        &mut self,
        mut body: Pin<&mut B>,
        plan: Plan,
        feed: &mut Option<Feed>,
    ) -> io::Result<Plan> {
        let mut ended = plan.bodiless && body.is_end_stream();
        poll_fn(|cx| {
            loop {
                if !ended && self.out.data.is_empty() && self.out.tail.is_empty() {
                    match body.as_mut().poll_frame(cx) {
                        Poll::Ready(None) => {
                            ended = true;
                            if plan.chunked && !plan.bodiless {
                                self.out.tail = b"0\r\n\r\n";
                            }
                        }
                        Poll::Ready(Some(Ok(frame))) => {
                            // Trailers end the body.
                            let last = body.is_end_stream() || frame.is_trailers();
                            ended = last;
                            self.queue(frame, plan, last);
                        }
                        Poll::Ready(Some(Err(_))) => {
                            // The body broke mid-way: the client must not take what was sent
                            // for a whole response, so the connection is cut.
                            return Poll::Ready(Err(io::ErrorKind::ConnectionAborted.into()));
                        }
                        Poll::Pending => {
                            if self.poll_feed(feed, true, cx) {
                                continue;
                            }
                            if self.out.is_empty() {
                                return Poll::Pending;
                            }
                        }
                    }
                }
                if !self.out.is_empty() {
                    ready!(self.poll_write_out(cx))?;
                    continue;
                }
                if ended {
                    return Poll::Ready(Ok(plan));
                }
            }
        })
        .await
    }

    /// Queues a frame of the response body according to `plan`.
    fn queue(&mut self, frame: http_body::Frame<Bytes>, plan: Plan, last: bool) {
        if plan.bodiless {
            return;
        }
        match frame.into_data() {
            Ok(data) => {
                if plan.chunked {
                    if !data.is_empty() {
                        encode_chunk_size(data.len(), &mut self.out.head);
                        self.out.data = data;
                        self.out.tail = if last { b"\r\n0\r\n\r\n" } else { b"\r\n" };
                    } else if last {
                        self.out.tail = b"0\r\n\r\n";
                    }
                } else {
                    self.out.data = data;
                }
            }
            Err(frame) => {
                if let (Ok(trailers), true) = (frame.into_trailers(), plan.chunked) {
                    encode_last_chunk(&trailers, &mut self.out.head);
                }
            }
        }
    }

    /// Reads into the read buffer; `Ok(0)` is the end of the stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() == 0 {
            self.unpark();
        }
        poll_fill(&mut self.io, &mut self.read, &mut self.read_space, cx)
    }

    /// Writes everything queued, then flushes.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_write_out(&mut self.io, &mut self.out, cx)
    }

    /// Ends the stream: a TLS close_notify first (the FIN goes with the close, when the
    /// connection's task drops the stream).
    async fn close(&mut self) {
        if IO::CLOSE_NOTIFY {
            self.shutdown().await;
        }
    }

    /// Ends a connection that gave no request to answer: closed (`None`), or refused with
    /// `cause`'s answer; its buffers go to the thread's stock.
    async fn end(&mut self, refused: Option<Cause>) {
        match refused {
            None => self.close().await,
            Some(cause) => {
                let asked = Asked {
                    head: false,
                    version: http::Version::HTTP_11,
                    keep_alive: false,
                };
                let _ = self.respond(cause.response(), asked, &mut None, true).await;
                self.linger().await;
            }
        }
        self.park();
    }

    /// Shuts the stream's sending side down (a TLS close_notify, then the FIN).
    async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(
            LINGER,
            poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)),
        )
        .await;
    }

    /// Closes after reading and dropping what the client still sends, for a short while.
    async fn linger(&mut self) {
        self.shutdown().await;
        let mut left = LINGER_BYTES;
        let _ = tokio::time::timeout(LINGER, async {
            while left > 0 {
                // The read buffer is the sink (a buffer of its own would sit in every
                // connection's task, which holds this future's state).
                self.read.clear();
                self.read.reserve(READ_SPACE);
                match self.io.read_buf(&mut self.read).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left = left.saturating_sub(n),
                }
            }
        })
        .await;
    }
}

impl Feed {
    fn fault(&mut self, fault: BodyFault, cx: &Context<'_>) {
        self.finished = true;
        self.broken = true;
        self.pipe.put(Piece::Fault(fault), true, cx);
    }
}
