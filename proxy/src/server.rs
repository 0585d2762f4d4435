//! The server side of HTTP/1.1 towards clients, Switchyard's own: no task, channel or timer per
//! request, buffers reused from request to request and given back while a connection idles.
//! HTTP/2 (ALPN `h2`, or the prior-knowledge preface on a plain listener) goes to `http2`:
//! the `h2` crate's codec in a connection loop of Switchyard's own.
//!
//! Layers, top down: `conn` (one connection: heads, bodies on demand, responses, keep-alive,
//! timers, upgrades) uses the codec — [`head`] (request heads and their framing, strict),
//! `write` (response heads and body framing) — and `body` (the request body the request path
//! reads, and the hand-over of a switched connection). `rewind` puts bytes already read back
//! in front of a stream for the HTTP/2 server. The head parser is public for its fuzz
//! target and bench.

mod body;
mod conn;
pub mod head;
pub(crate) mod http2;
mod rewind;
mod spare;
mod write;

pub(crate) use body::{OnUpgrade, RequestBody, Upgraded, on_upgrade};

use crate::upstream::decode::RawFields;
use bytes::Bytes;
use http::{Request, Response};
use std::future::Future;

/// What answers a connection's requests. The request stays where the connection keeps it and
/// is lent to the answer's future, which may take from it what it needs (the body above all):
/// moving a request (264 bytes) into each layer of futures on the request path costs a copy
/// per layer. The future may also borrow the handler, so a request clones nothing of the
/// connection's.
pub(crate) trait Handler {
    /// The body of the answers.
    type Body: http_body::Body<Data = Bytes> + RawHead;
    /// Answers `req`.
    fn call<'a>(
        &'a self,
        req: &'a mut Request<RequestBody>,
    ) -> impl Future<Output = Response<Self::Body>>;

    /// Whether answers should close their connection from now on (`Connection: close`; a
    /// switch of protocols is exempt).
    fn closing(&self) -> bool {
        false
    }
}

/// A function of an owned request (tests): it is given the request, body and all.
impl<F, Fut, B> Handler for F
where
    F: Fn(Request<RequestBody>) -> Fut,
    Fut: Future<Output = Response<B>>,
    B: http_body::Body<Data = Bytes> + RawHead,
{
    type Body = B;

    fn call<'a>(&'a self, req: &'a mut Request<RequestBody>) -> impl Future<Output = Response<B>> {
        self(std::mem::replace(req, Request::new(RequestBody::Empty)))
    }
}
/// A response body that may carry some of its response's fields as bytes to send unchanged
/// (an endpoint's: see `crate::upstream::decode::RawFields`); they go out after the map's.
pub(crate) trait RawHead {
    /// Those fields, if any.
    fn raw_fields(&self) -> Option<&RawFields> {
        None
    }
}

impl RawHead for crate::body::ProxyBody {
    fn raw_fields(&self) -> Option<&RawFields> {
        crate::body::ProxyBody::raw_fields(self)
    }
}

/// A client connection's byte stream.
pub(crate) trait Stream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
    /// Whether closing it sends something of its own first (TLS: its `close_notify`), so a
    /// close starts with a shutdown. A TCP stream's close sends the FIN itself once the bytes
    /// written are out, and a shutdown first would only cost a system call.
    const CLOSE_NOTIFY: bool = true;

    /// Ready when the peer has sent something (or closed): for a dormant connection
    /// ([`Served::Dormant`]), whose last read found nothing, TLS's buffers included.
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send;

    /// The plain TCP stream it is, if it is one (a dormant one can then wait without a task:
    /// `crate::listener`'s lot); else itself.
    fn into_tcp(self) -> Result<tokio::net::TcpStream, Self>
    where
        Self: Sized,
    {
        Err(self)
    }
}

impl Stream for tokio::net::TcpStream {
    const CLOSE_NOTIFY: bool = false;

    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        tokio::net::TcpStream::readable(self)
    }

    fn into_tcp(self) -> Result<tokio::net::TcpStream, Self> {
        Ok(self)
    }
}

impl Stream for tokio_rustls::server::TlsStream<tokio::net::TcpStream> {
    fn readable(&self) -> impl std::future::Future<Output = std::io::Result<()>> + Send {
        self.get_ref().0.readable()
    }
}

pub(crate) use conn::{Served, Settings, Wake, serve};
pub(crate) use rewind::Rewind;

#[cfg(test)]
mod tests;
