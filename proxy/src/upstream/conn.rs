//! One upstream connection as the inline client drives it: the byte stream (plain TCP or TLS),
//! the bytes read and not yet consumed, and the bytes queued to write. It has no task of its
//! own: whoever holds it (a request's future, a response body, the pool) polls it.
//!
//! Writes go out as one vectored write of up to three parts — a head or chunk-size line, a
//! body frame's bytes (never copied) and a short tail — so a request head and its first body
//! frame usually leave in one `writev`.

use crate::deadline::Deadline;
use bytes::{Buf, Bytes, BytesMut};
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Free space made in the read buffer before a read, at first.
const READ_SPACE: usize = 8 * 1024;
/// The most the read space grows to when reads keep filling it (larger responses).
const MAX_READ_SPACE: usize = 64 * 1024;

/// The byte stream to an endpoint.
#[derive(Debug)]
pub(crate) enum Io {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: a TLS session is large and moves with the connection).
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Bytes queued for the peer, written in this order.
#[derive(Debug, Default)]
pub(crate) struct Out {
    /// A head, chunk-size line or last chunk (encoded here; the buffer is reused).
    pub(crate) head: BytesMut,
    /// A body frame's bytes.
    pub(crate) data: Bytes,
    /// A chunk's CRLF, possibly followed by the last chunk.
    pub(crate) tail: &'static [u8],
}

impl Out {
    /// Whether nothing waits to be written.
    pub(crate) fn is_empty(&self) -> bool {
        self.head.is_empty() && self.data.is_empty() && self.tail.is_empty()
    }
}

/// An upstream HTTP/1.1 connection.
#[derive(Debug)]
pub(crate) struct Conn {
    io: Io,
    /// Bytes read from the endpoint and not consumed yet.
    pub(crate) read: BytesMut,
    /// Bytes waiting to be written.
    pub(crate) out: Out,
    /// Whether a request went over this connection before the current one.
    pub(crate) reused: bool,
    /// Free space to make before a read: doubles (to `MAX_READ_SPACE`) each time a read fills
    /// it, so large bodies take few reads and small ones little memory.
    read_space: usize,
    /// The response-head deadline, made with the connection's first request and set again for
    /// each later one (which leaves the runtime's timer as it is: [`Deadline`]). A timer per
    /// request would be registered with and removed from the runtime's timer wheel each time.
    /// Between requests its timer may stay registered: firing then wakes the task that used
    /// the connection last, once (a spurious wake-up, harmless).
    deadline: Option<Deadline>,
}

impl Conn {
    /// A fresh connection over `io`, boxed: a connection moves between the pool, a request's
    /// future and a response body several times a request, and a pointer moves for less than
    /// its 168 bytes. One allocation a connection, none a request.
    pub(crate) fn new(io: Io) -> Box<Self> {
        Box::new(Self {
            io,
            read: BytesMut::new(),
            out: Out::default(),
            reused: false,
            read_space: READ_SPACE,
            deadline: None,
        })
    }

    /// Starts the response-head timer: [`Conn::poll_deadline`] is ready `after` from now.
    pub(crate) fn arm_deadline(&mut self, after: Duration) {
        let now = Instant::now();
        // As `tokio::time::timeout` does: a duration past the clock's range never fires.
        let at = now
            .checked_add(after)
            .unwrap_or_else(|| now + Duration::from_secs(86400 * 365 * 30));
        match &mut self.deadline {
            Some(d) => d.set(at),
            None => self.deadline = Some(Deadline::at(at)),
        }
    }

    /// Ready once the deadline set by [`Conn::arm_deadline`] has passed.
    pub(crate) fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.deadline {
            Some(d) => d.poll(cx),
            None => Poll::Pending,
        }
    }

    /// Whether an idle connection can carry a request: the endpoint has neither closed it nor
    /// sent anything unasked. Never waits; for plain TCP it costs no system call unless the
    /// socket was reported readable.
    pub(crate) fn is_open(&mut self) -> bool {
        if !self.read.is_empty() || !self.out.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        // Pending: nothing to read, so still open. Any byte, the end, or an error: not usable.
        Pin::new(&mut self.io)
            .poll_read(&mut cx, &mut buf)
            .is_pending()
    }

    /// Reads what the endpoint sent into `read`; `Ok(0)` is the end of the stream.
    pub(crate) fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        poll_fill(&mut self.io, &mut self.read, &mut self.read_space, cx)
    }

    /// Writes everything in `out`, then flushes (TLS keeps records until then).
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        poll_write_out(&mut self.io, &mut self.out, cx)
    }

    /// The stream and any bytes already read past the response head (for a protocol switch).
    pub(crate) fn into_parts(self) -> (Io, Bytes) {
        (self.io, self.read.freeze())
    }
}

/// Reads from `io` into `read`, first making `space / 2` or more of free room (`space` doubles,
/// to [`MAX_READ_SPACE`], each time a read fills the room: large bodies take few reads, small
/// ones little memory); `Ok(0)` is the end of the stream. Used by both sides of the proxy.
pub(crate) fn poll_fill<IO: AsyncRead + Unpin>(
    io: &mut IO,
    read: &mut BytesMut,
    space: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if read.capacity() - read.len() < *space / 2 {
        read.reserve(*space);
    }
    let spare = read.capacity() - read.len();
    // `read_buf` fills the spare capacity without zeroing it first; a pending read consumed
    // nothing, so dropping its future is harmless.
    let n = ready!(pin!(io.read_buf(read)).poll(cx))?;
    if n >= spare && *space < MAX_READ_SPACE {
        *space *= 2;
    }
    Poll::Ready(Ok(n))
}

/// Writes everything in `out` to `io` as vectored writes of its three parts, then flushes (TLS
/// keeps records until then). The head buffer is cleared, keeping its allocation; the frame's
/// bytes are released. Used by both sides of the proxy.
pub(crate) fn poll_write_out<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: &mut Out,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while !out.is_empty() {
        let slices = [
            IoSlice::new(&out.head),
            IoSlice::new(&out.data),
            IoSlice::new(out.tail),
        ];
        let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        let mut n = n;
        let h = n.min(out.head.len());
        out.head.advance(h);
        n -= h;
        let d = n.min(out.data.len());
        out.data.advance(d);
        n -= d;
        out.tail = &out.tail[n.min(out.tail.len())..];
    }
    out.head.clear();
    // Written out, a frame's bytes are empty but still hold their buffer (an upstream
    // connection's read buffer): let it go now, not when the next frame comes (an idle client
    // connection would keep one alive, and the upstream connection could not reuse its room).
    out.data = Bytes::new();
    Pin::new(io).poll_flush(cx)
}
