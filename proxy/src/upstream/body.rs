//! An endpoint's response body as an `http_body::Body` that owns its connection.
//!
//! The body is delimited by its framing (a length, chunks, or the close) and read straight from
//! the connection by whoever polls it; it also finishes sending a request body the endpoint
//! answered before it was complete. The connection goes back to its endpoint's pool only when
//! the response was read to its exact end, the request was sent in full, nothing unasked
//! follows, and neither side said `close`. A body dropped early, a framing error or a short read
//! drops the connection, which closes it.

use super::chunked::{ChunkedDecoder, Decoded};
use super::conn::{Conn, Io};
use super::decode::{DecodeError, RawFields};
use super::pump::{Pump, PumpError};
use crate::body::BodyError;
use crate::endpoint::EndpointState;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

/// Why a response body broke off.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("endpoint response framing")]
    Decode(#[from] DecodeError),
    #[error("endpoint closed the connection before the response ended")]
    Closed,
    #[error("reading from the endpoint failed")]
    Io(#[source] std::io::Error),
    #[error("sending the rest of the request body failed")]
    Request(#[source] BodyError),
}

impl From<PumpError> for ReadError {
    fn from(e: PumpError) -> Self {
        match e {
            PumpError::Body(e) => Self::Request(e),
            PumpError::Io(e) => Self::Io(e),
            PumpError::Length => Self::Request("request body length changed".into()),
        }
    }
}

/// How the rest of the body is delimited.
#[derive(Debug)]
pub(crate) enum Decoder {
    /// This many bytes are left.
    Length(u64),
    /// Chunked.
    Chunked(ChunkedDecoder),
    /// Until the endpoint closes.
    Close,
    /// The endpoint switched protocols: the connection is for the tunnel, not a body.
    Switched,
}

/// What reading is left: the connection and how to delimit the body on it.
#[derive(Debug)]
pub(crate) struct Reading {
    pub(crate) conn: Box<Conn>,
    pub(crate) decoder: Decoder,
    /// A request body still being sent.
    pub(crate) pump: Option<Pump>,
    /// Whether the endpoint allows another request on the connection.
    pub(crate) keep_alive: bool,
    /// The endpoint whose pool takes the connection back.
    pub(crate) home: Arc<EndpointState>,
}

/// One step of reading.
enum Step {
    Frame(Frame<Bytes>),
    End,
}

impl Reading {
    fn is_complete(&self) -> bool {
        match &self.decoder {
            Decoder::Length(left) => *left == 0,
            Decoder::Chunked(d) => d.is_done(),
            Decoder::Close | Decoder::Switched => false,
        }
    }

    /// The next frame decodable from what was read already; `None` when more must be read.
    fn decode(&mut self) -> Result<Option<Step>, DecodeError> {
        let read = &mut self.conn.read;
        match &mut self.decoder {
            Decoder::Length(0) => Ok(Some(Step::End)),
            Decoder::Length(left) => {
                if read.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(*left).unwrap_or(usize::MAX).min(read.len());
                *left -= n as u64;
                Ok(Some(Step::Frame(Frame::data(read.split_to(n).freeze()))))
            }
            Decoder::Chunked(d) => Ok(match d.decode(read)? {
                Decoded::Data(b) => {
                    // The last chunk usually arrives with the data before it: see it now, so
                    // the connection is free as this frame goes out.
                    d.finish_if_last(read);
                    Some(Step::Frame(Frame::data(b)))
                }
                Decoded::Trailers(t) => Some(Step::Frame(Frame::trailers(t))),
                Decoded::End => Some(Step::End),
                Decoded::NeedMore => None,
            }),
            Decoder::Close if read.is_empty() => Ok(None),
            Decoder::Close => Ok(Some(Step::Frame(Frame::data(read.split().freeze())))),
            Decoder::Switched => Ok(Some(Step::End)),
        }
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Result<Step, ReadError>> {
        loop {
            if let Some(p) = self.pump.as_mut() {
                if let Poll::Ready(r) = p.poll(cx, &mut self.conn) {
                    r?;
                    self.pump = None;
                }
            }
            if let Some(step) = self.decode()? {
                return Poll::Ready(Ok(step));
            }
            let n = ready!(self.conn.poll_fill(cx)).map_err(ReadError::Io)?;
            if n == 0 {
                return Poll::Ready(match self.decoder {
                    Decoder::Close => Ok(Step::End),
                    _ => Err(ReadError::Closed),
                });
            }
        }
    }

    /// The body was read to its end: the connection goes back to the pool when reusable.
    fn release(mut self) {
        let reusable = self.keep_alive
            && self.pump.is_none()
            && self.conn.read.is_empty()
            && self.conn.out.is_empty()
            && self.is_complete();
        if reusable {
            self.conn.reused = true;
            self.home.pool().put(self.conn);
        }
    }
}

/// The body of an endpoint's response. Small, because responses move several times on their
/// way to the client: the reading state is boxed, and only when the body was not complete with
/// its head.
#[derive(Debug)]
pub(crate) struct ResponseBody {
    reading: Option<Box<Reading>>,
    /// A frame decoded before the head was handed out.
    ready: Option<Early>,
    /// The response's fields as the bytes that came, when they were kept so (see
    /// `decode::parse_response_head_raw`); the response's map then holds none of them.
    raw: Option<RawFields>,
}

/// A frame decoded with the head. Trailers are boxed: they are rare, and a map would make every
/// response larger (and each of its moves a longer copy).
#[derive(Debug)]
enum Early {
    Data(Bytes),
    Trailers(Box<http::HeaderMap>),
}

impl Early {
    fn of(frame: Frame<Bytes>) -> Self {
        match frame.into_data() {
            Ok(data) => Self::Data(data),
            Err(frame) => Self::Trailers(Box::new(frame.into_trailers().unwrap_or_default())),
        }
    }

    fn into_frame(self) -> Frame<Bytes> {
        match self {
            Self::Data(data) => Frame::data(data),
            Self::Trailers(t) => Frame::trailers(*t),
        }
    }
}

impl ResponseBody {
    /// A body still to be read from `reading`. What is already buffered is decoded now, so a
    /// malformed first chunk fails before the head goes anywhere; a body that is complete
    /// already frees its connection at once.
    pub(crate) fn new(mut reading: Reading) -> Result<Self, DecodeError> {
        let mut ready = None;
        if !reading.conn.read.is_empty() && !matches!(reading.decoder, Decoder::Close) {
            match reading.decode()? {
                Some(Step::Frame(f)) => ready = Some(Early::of(f)),
                Some(Step::End) | None => {}
            }
        }
        if reading.is_complete() {
            reading.release();
            return Ok(Self {
                reading: None,
                ready,
                raw: None,
            });
        }
        Ok(Self {
            reading: Some(Box::new(reading)),
            ready,
            raw: None,
        })
    }

    /// Gives the body the response's fields kept as bytes.
    pub(crate) fn with_raw(mut self, raw: Option<RawFields>) -> Self {
        self.raw = raw;
        self
    }

    /// The response's fields kept as bytes, if they were.
    pub(crate) fn raw_fields(&self) -> Option<&RawFields> {
        self.raw.as_ref()
    }

    /// A switched connection, kept for the tunnel (see [`ResponseBody::take_switched`]).
    pub(crate) fn switched(reading: Reading) -> Self {
        Self {
            reading: Some(Box::new(reading)),
            ready: None,
            raw: None,
        }
    }

    /// The connection of a protocol switch, and the bytes the endpoint sent after its 101.
    pub(crate) fn take_switched(&mut self) -> Option<(Io, Bytes)> {
        match self.reading.take() {
            Some(r) if matches!(r.decoder, Decoder::Switched) => Some(r.conn.into_parts()),
            other => {
                self.reading = other;
                None
            }
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(f) = this.ready.take() {
            return Poll::Ready(Some(Ok(f.into_frame())));
        }
        let Some(r) = this.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let step = ready!(r.poll_step(cx));
        let complete = r.is_complete();
        match step {
            Ok(Step::Frame(f)) => {
                if complete {
                    if let Some(r) = this.reading.take() {
                        (*r).release();
                    }
                }
                Poll::Ready(Some(Ok(f)))
            }
            Ok(Step::End) => {
                if let Some(r) = this.reading.take() {
                    (*r).release();
                }
                Poll::Ready(None)
            }
            Err(e) => {
                // The connection is dropped with the reading state: closed, never pooled.
                this.reading = None;
                Poll::Ready(Some(Err(e.into())))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ready.is_none() && self.reading.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let ready = match &self.ready {
            Some(Early::Data(d)) => d.len() as u64,
            _ => 0,
        };
        match self.reading.as_deref() {
            None => SizeHint::with_exact(ready),
            Some(Reading {
                decoder: Decoder::Length(left),
                ..
            }) => SizeHint::with_exact(ready + left),
            Some(_) => {
                let mut h = SizeHint::new();
                h.set_lower(ready);
                h
            }
        }
    }
}
