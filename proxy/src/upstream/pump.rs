//! Sending a request body: frames taken from the client's body as they come and queued on the
//! connection with their framing (raw for a known length, chunked otherwise). It runs inside
//! the request's future until the response head arrives, and inside the response body after
//! that, so an endpoint that answers while the upload goes on gets the rest of it.

use super::conn::Conn;
use super::encode::{self, BodyFraming};
use crate::body::{BodyError, UpstreamBody};
use http_body::Body;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Why a request body could not be sent.
#[derive(Debug)]
pub(crate) enum PumpError {
    /// The client's body failed (or timed out, see `crate::body::RequestBodyTimeout`).
    Body(BodyError),
    /// Writing to the endpoint failed.
    Io(std::io::Error),
    /// The body's length differed from the length it declared.
    Length,
}

/// A request body on its way to the endpoint.
pub(crate) struct Pump {
    body: Pin<Box<UpstreamBody>>,
    chunked: bool,
    /// For a body of known length: the bytes still to come.
    left: u64,
    /// The body has ended and its last bytes are queued.
    ended: bool,
}

impl std::fmt::Debug for Pump {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pump")
            .field("chunked", &self.chunked)
            .field("left", &self.left)
            .field("ended", &self.ended)
            .finish()
    }
}

impl Pump {
    /// A pump for `body`, framed as the head said.
    pub(crate) fn new(body: Pin<Box<UpstreamBody>>, framing: BodyFraming) -> Self {
        let (chunked, left) = match framing {
            BodyFraming::Chunked => (true, 0),
            BodyFraming::Length(n) => (false, n),
            BodyFraming::Empty => (false, 0),
        };
        Self {
            body,
            chunked,
            left,
            ended: false,
        }
    }

    /// Moves the body along: queues what the client has sent and writes it. `Ready(Ok)` once
    /// all of it, and the end of a chunked body, is written. Whatever is already queued on
    /// `conn` (the request head) leaves with the first frame in one write.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        conn: &mut Conn,
    ) -> Poll<Result<(), PumpError>> {
        loop {
            // Take a frame only when nothing but a head waits, so the order on the wire holds.
            let mut waiting = false;
            if !self.ended && conn.out.data.is_empty() && conn.out.tail.is_empty() {
                match self.body.as_mut().poll_frame(cx) {
                    Poll::Pending => waiting = true,
                    Poll::Ready(r) => self.queue(r, conn)?,
                }
            }
            if conn.out.is_empty() {
                if self.ended {
                    return Poll::Ready(Ok(()));
                }
                if waiting {
                    return Poll::Pending;
                }
                continue;
            }
            ready!(conn.poll_write_out(cx)).map_err(PumpError::Io)?;
        }
    }

    fn queue(
        &mut self,
        frame: Option<Result<http_body::Frame<bytes::Bytes>, BodyError>>,
        conn: &mut Conn,
    ) -> Result<(), PumpError> {
        let frame = match frame {
            None => return self.end(conn),
            Some(Err(e)) => return Err(PumpError::Body(e)),
            Some(Ok(f)) => f,
        };
        match frame.into_data() {
            Ok(data) => {
                if !data.is_empty() {
                    if self.chunked {
                        encode::encode_chunk_size(data.len(), &mut conn.out.head);
                        conn.out.tail = b"\r\n";
                    } else {
                        self.left = self
                            .left
                            .checked_sub(data.len() as u64)
                            .ok_or(PumpError::Length)?;
                    }
                    conn.out.data = data;
                }
                if self.body.is_end_stream() {
                    // The last frame: the end goes out in the same write.
                    self.end(conn)?;
                }
                Ok(())
            }
            Err(frame) => {
                // Frames are only taken when no chunk is queued, so the last chunk can follow
                // whatever head is still in the buffer.
                if let (true, Ok(trailers)) = (self.chunked, frame.into_trailers()) {
                    encode::encode_last_chunk(&trailers, &mut conn.out.head);
                    self.ended = true;
                    return Ok(());
                }
                // Trailers cannot go with a body of known length; they end it.
                self.end(conn)
            }
        }
    }

    fn end(&mut self, conn: &mut Conn) -> Result<(), PumpError> {
        if self.ended {
            return Ok(());
        }
        self.ended = true;
        if self.chunked {
            // A queued chunk still needs its CRLF before the last chunk.
            conn.out.tail = if conn.out.tail.is_empty() {
                b"0\r\n\r\n"
            } else {
                b"\r\n0\r\n\r\n"
            };
            return Ok(());
        }
        if self.left != 0 {
            return Err(PumpError::Length);
        }
        Ok(())
    }
}
