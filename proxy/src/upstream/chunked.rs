//! The chunked transfer coding of a response body (RFC 9112 §7.1), decoded incrementally from
//! the connection's read buffer: data is split off the buffer (no copy), size lines are read
//! byte by byte and must be strict — hex digits (at most 16), optional whitespace and
//! extensions, CRLF — and every chunk must end in CRLF. Anything else is an error, never a
//! guess.

use super::decode::{DecodeError, parse_trailers};
use bytes::{Buf, Bytes, BytesMut};
use http::HeaderMap;

/// Largest trailer section accepted, in bytes.
const MAX_TRAILER_BYTES: usize = 16 * 1024;
/// Longest chunk extension accepted, in bytes.
const MAX_EXTENSION_BYTES: usize = 1024;

/// What one step of decoding produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Body bytes.
    Data(Bytes),
    /// The trailer fields; the body has ended.
    Trailers(HeaderMap),
    /// The body has ended.
    End,
    /// More bytes are needed.
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the size's hex digits.
    Size { value: u64, digits: u8 },
    /// Whitespace after the size.
    SizeSpace { value: u64 },
    /// Inside a chunk extension.
    Extension { value: u64, len: usize },
    /// After the size line's CR.
    SizeLf { value: u64 },
    /// Inside a chunk's data.
    Data { left: u64 },
    /// After a chunk's data: its CR.
    DataCr,
    /// After a chunk's data: its LF.
    DataLf,
    /// After the last chunk: the trailer section.
    Trailers,
    /// The body has ended.
    Done,
}

/// An incremental decoder of one chunked body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self {
            state: State::Size {
                value: 0,
                digits: 0,
            },
        }
    }

    /// Whether the whole body, trailers included, has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// After a chunk's data: when `buf` holds exactly its end and an empty last chunk without
    /// trailers, consumes them and ends the body, so its end is known with its last data.
    pub fn finish_if_last(&mut self, buf: &mut BytesMut) -> bool {
        if self.state == State::DataCr && &buf[..] == b"\r\n0\r\n\r\n" {
            buf.clear();
            self.state = State::Done;
            return true;
        }
        false
    }

    /// Decodes the next piece of the body from the front of `buf`, consuming what it used.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, DecodeError> {
        loop {
            if let State::Data { left } = self.state {
                if buf.is_empty() {
                    return Ok(Decoded::NeedMore);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let data = buf.split_to(n).freeze();
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data { left }
                };
                return Ok(Decoded::Data(data));
            }
            if self.state == State::Trailers {
                return self.trailers(buf);
            }
            if self.state == State::Done {
                return Ok(Decoded::End);
            }
            let Some(&b) = buf.first() else {
                return Ok(Decoded::NeedMore);
            };
            buf.advance(1);
            self.state = self.step(b)?;
        }
    }

    /// One byte of a size line or of a chunk's end.
    fn step(&self, b: u8) -> Result<State, DecodeError> {
        Ok(match self.state {
            State::Size { value, digits } => match b {
                b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                    if digits == 16 {
                        return Err(DecodeError::Chunk);
                    }
                    let d = (b as char).to_digit(16).unwrap_or(0);
                    State::Size {
                        value: (value << 4) | u64::from(d),
                        digits: digits + 1,
                    }
                }
                _ if digits == 0 => return Err(DecodeError::Chunk),
                b' ' | b'\t' => State::SizeSpace { value },
                b';' => State::Extension { value, len: 0 },
                b'\r' => State::SizeLf { value },
                _ => return Err(DecodeError::Chunk),
            },
            State::SizeSpace { value } => match b {
                b' ' | b'\t' => State::SizeSpace { value },
                b';' => State::Extension { value, len: 0 },
                b'\r' => State::SizeLf { value },
                _ => return Err(DecodeError::Chunk),
            },
            State::Extension { value, len } => match b {
                b'\r' => State::SizeLf { value },
                // Control characters (a bare LF among them) end no extension.
                0..=8 | 10..=31 | 127 => return Err(DecodeError::Chunk),
                _ if len >= MAX_EXTENSION_BYTES => return Err(DecodeError::Chunk),
                _ => State::Extension {
                    value,
                    len: len + 1,
                },
            },
            State::SizeLf { value } => match b {
                b'\n' if value == 0 => State::Trailers,
                b'\n' => State::Data { left: value },
                _ => return Err(DecodeError::Chunk),
            },
            State::DataCr if b == b'\r' => State::DataLf,
            State::DataLf if b == b'\n' => State::Size {
                value: 0,
                digits: 0,
            },
            _ => return Err(DecodeError::Chunk),
        })
    }

    /// The trailer section: an empty line, or field lines ending in an empty line.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, DecodeError> {
        if buf.len() < 2 {
            return Ok(Decoded::NeedMore);
        }
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Decoded::End);
        }
        match memchr::memmem::find(buf, b"\r\n\r\n") {
            None if buf.len() > MAX_TRAILER_BYTES => Err(DecodeError::Trailers),
            None => Ok(Decoded::NeedMore),
            Some(i) if i + 4 > MAX_TRAILER_BYTES => Err(DecodeError::Trailers),
            Some(i) => {
                let block = buf.split_to(i + 4).freeze();
                let fields = parse_trailers(&block)?;
                self.state = State::Done;
                Ok(Decoded::Trailers(fields))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `input` fed in pieces of `step` bytes: the data, the trailers and whether the
    /// body ended.
    fn run(input: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>, bool), DecodeError> {
        let mut d = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut fed = 0;
        loop {
            match d.decode(&mut buf)? {
                Decoded::Data(b) => data.extend_from_slice(&b),
                Decoded::Trailers(t) => return Ok((data, Some(t), true)),
                Decoded::End => return Ok((data, None, true)),
                Decoded::NeedMore if fed >= input.len() => return Ok((data, None, false)),
                Decoded::NeedMore => {
                    let end = (fed + step).min(input.len());
                    buf.extend_from_slice(&input[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn chunks_decode_whatever_the_read_sizes() {
        let body = b"5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\n\r\n";
        for step in [1, 2, 3, 7, 100] {
            let (data, trailers, done) = run(body, step).expect("valid");
            assert_eq!(&data[..], b"hello 0123456789", "step {step}");
            assert!(trailers.is_none() && done);
        }
    }

    #[test]
    fn trailers_are_returned() {
        let body = b"3\r\nabc\r\n0\r\nx-sum: 9\r\nx-more: a\r\n\r\n";
        for step in [1, 5, 100] {
            let (data, trailers, done) = run(body, step).expect("valid");
            assert_eq!(&data[..], b"abc");
            let t = trailers.expect("trailers");
            assert_eq!(t["x-sum"], "9");
            assert_eq!(t["x-more"], "a");
            assert!(done);
        }
    }

    #[test]
    fn malformed_chunks_are_errors() {
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"\r\n",
            b"-5\r\nhello\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhello\r\r",
            b"10000000000000000\r\n",
            b"0x5\r\nhello\r\n",
            b"5;a\nb\r\nhello\r\n",
        ] {
            let got = run(bad, 100);
            assert!(
                got.is_err(),
                "{:?} gave {got:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn an_unfinished_body_asks_for_more() {
        let (data, _, done) = run(b"5\r\nhel", 100).expect("valid so far");
        assert_eq!(&data[..], b"hel");
        assert!(!done);
    }
}
