//! The body of a client's request as the request path sees it, and the hand-over of a client
//! connection that switched protocols.
//!
//! An HTTP/1 body is read by the connection (`super::conn`), not by the body: the body asks for
//! its next piece through a [`Pipe`] (one slot, lock-free) and the connection, which owns the
//! socket, decodes that piece from its read buffer or reads for it, then puts it in the slot.
//! Nothing is read before it is asked for, so a `100 Continue` goes out only when the request
//! path wants the body, and a client's body is never buffered beyond one read. A body already
//! whole in the buffer with its head (most small requests) is handed over as one frame and needs
//! no pipe. The body must be polled by the task that serves its connection (the request path
//! does: its upstream exchange runs in the request's own future); another task is woken through
//! the pipe's wakers, but only the connection's task reads.

use bytes::Bytes;
use crossbeam_queue::ArrayQueue;
use futures_util::task::AtomicWaker;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

use crate::body::BodyError;

/// The body of a request from a client.
#[derive(Debug)]
pub(crate) enum RequestBody {
    /// No body.
    Empty,
    /// A body read whole with its head.
    Full(Option<Bytes>),
    /// An HTTP/1 body still arriving.
    Piped(PipedBody),
    /// An HTTP/2 stream's body.
    H2(super::http2::H2Body),
}

/// A piece the connection hands to the body.
#[derive(Debug)]
pub(crate) enum Piece {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields; the body has ended.
    Trailers(HeaderMap),
    /// The body cannot be read to its end.
    Fault(BodyFault),
}

/// Why a client's body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BodyFault {
    /// The chunked coding was malformed.
    #[error("malformed chunked request body")]
    Malformed,
    /// The client closed the connection (or it failed) before the body's end.
    #[error("request body ended early")]
    Incomplete,
}

/// The body asked for its next piece.
const WANT: u8 = 1;
/// The connection put the body's last piece in the slot (or a fault).
const ENDED: u8 = 2;
/// The body was dropped.
const GONE: u8 = 4;

/// The slot between a connection and its request's body.
#[derive(Debug)]
pub(crate) struct Pipe {
    slot: ArrayQueue<Piece>,
    state: AtomicU8,
    /// The body's task, woken when a piece arrives.
    reader: AtomicWaker,
    /// The connection's task, woken when the body asks (only needed when another task polls
    /// the body).
    feeder: AtomicWaker,
}

impl Pipe {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            slot: ArrayQueue::new(1),
            state: AtomicU8::new(0),
            reader: AtomicWaker::new(),
            feeder: AtomicWaker::new(),
        })
    }

    /// Whether the body asked for a piece and has none waiting; registers the connection's
    /// task to be woken when it does.
    pub(crate) fn wanted(&self, cx: &mut Context<'_>) -> bool {
        self.feeder.register(cx.waker());
        self.state.load(Ordering::Acquire) & WANT != 0 && self.slot.is_empty()
    }

    /// Whether the body was dropped.
    pub(crate) fn is_gone(&self) -> bool {
        self.state.load(Ordering::Acquire) & GONE != 0
    }

    /// Puts `piece` in the slot; `last` if nothing follows it. Wakes the body's task unless it
    /// is `cx`'s (the connection polls the request right after this anyway).
    pub(crate) fn put(&self, piece: Piece, last: bool, cx: &Context<'_>) {
        self.state.fetch_and(!WANT, Ordering::AcqRel);
        // The body asks only with an empty slot and only the connection puts: it is free.
        let _ = self.slot.force_push(piece);
        if last {
            self.state.fetch_or(ENDED, Ordering::AcqRel);
        }
        if let Some(w) = self.reader.take() {
            if !w.will_wake(cx.waker()) {
                w.wake();
            }
        }
    }
}

impl Pipe {
    /// Ends the body without a further piece.
    pub(crate) fn end(&self, cx: &Context<'_>) {
        self.state.fetch_and(!WANT, Ordering::AcqRel);
        self.state.fetch_or(ENDED, Ordering::AcqRel);
        if let Some(w) = self.reader.take() {
            if !w.will_wake(cx.waker()) {
                w.wake();
            }
        }
    }
}

/// An HTTP/1 body fed by its connection through a [`Pipe`].
#[derive(Debug)]
pub(crate) struct PipedBody {
    pipe: Arc<Pipe>,
    /// Bytes still to come, when the length was declared.
    left: Option<u64>,
    done: bool,
}

impl PipedBody {
    pub(crate) fn new(pipe: Arc<Pipe>, length: Option<u64>) -> Self {
        Self {
            pipe,
            left: length,
            done: false,
        }
    }

    fn take(&mut self) -> Option<Result<Frame<Bytes>, BodyError>> {
        let piece = self.pipe.slot.pop()?;
        Some(match piece {
            Piece::Data(d) => {
                if let Some(left) = &mut self.left {
                    *left = left.saturating_sub(d.len() as u64);
                }
                Ok(Frame::data(d))
            }
            Piece::Trailers(t) => {
                self.done = true;
                Ok(Frame::trailers(t))
            }
            Piece::Fault(f) => {
                self.done = true;
                Err(f.into())
            }
        })
    }
}

impl PipedBody {
    /// The next frame, or the end, if either is there.
    #[allow(clippy::type_complexity)] // Body::poll_frame's own item type
    fn ready(&mut self) -> Option<Option<Result<Frame<Bytes>, BodyError>>> {
        // The state first: a piece put before ENDED was set is in the slot when ENDED is seen.
        let ended = self.pipe.state.load(Ordering::Acquire) & ENDED != 0;
        if let Some(f) = self.take() {
            return Some(Some(f));
        }
        if ended {
            self.done = true;
            return Some(None);
        }
        None
    }
}

impl Drop for PipedBody {
    fn drop(&mut self) {
        self.pipe.state.fetch_or(GONE, Ordering::AcqRel);
        self.pipe.feeder.wake();
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::H2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            Self::Piped(b) => {
                if b.done {
                    return Poll::Ready(None);
                }
                if let Some(ready) = b.ready() {
                    return Poll::Ready(ready);
                }
                b.pipe.reader.register(cx.waker());
                let before = b.pipe.state.fetch_or(WANT, Ordering::AcqRel);
                if before & WANT == 0 {
                    b.pipe.feeder.wake();
                }
                // Again: the piece may have come between the first look and the registration.
                b.ready().map_or(Poll::Pending, Poll::Ready)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(data) => data.is_none(),
            Self::H2(b) => b.is_end_stream(),
            Self::Piped(b) => {
                b.done
                    || (b.left == Some(0)
                        && b.pipe.slot.is_empty()
                        && b.pipe.state.load(Ordering::Acquire) & ENDED != 0)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Self::H2(b) => b.size_hint(),
            Self::Piped(b) => match b.left {
                Some(n) => SizeHint::with_exact(n),
                None => SizeHint::default(),
            },
        }
    }
}

/// A byte stream a client connection can be handed over as.
pub(crate) trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ClientIo for T {}

/// A client connection after a `101 Switching Protocols`: its stream, and the bytes the client
/// sent after its request head that were already read.
pub(crate) struct Upgraded {
    /// The stream.
    pub(crate) io: Box<dyn ClientIo>,
    /// Bytes read past the request head.
    pub(crate) read: Bytes,
}

impl std::fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgraded")
            .field("read", &self.read.len())
            .finish_non_exhaustive()
    }
}

/// The client connection of an upgrade request: resolves once its 101 was sent (an error if
/// the connection ended otherwise).
#[derive(Debug)]
pub(crate) struct OnUpgrade(pub(crate) oneshot::Receiver<Upgraded>);

/// What an upgrade request carries in its extensions (which must be `Clone`; only upgrade
/// requests pay for the lock, once).
#[derive(Debug, Clone)]
pub(crate) struct Switch(Arc<std::sync::Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl Switch {
    pub(crate) fn new(rx: oneshot::Receiver<Upgraded>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(rx))))
    }
}

/// The client connection of an upgrade request, once switched; `None` when `req` is not one.
pub(crate) fn on_upgrade<B>(req: &mut http::Request<B>) -> Option<OnUpgrade> {
    let switch = req.extensions_mut().remove::<Switch>()?;
    let rx = switch.0.lock().ok()?.take()?;
    Some(OnUpgrade(rx))
}
