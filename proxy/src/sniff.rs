//! A watcher of HTTP/1 request framing on the raw byte stream, for the one request shape hyper
//! repairs instead of refusing: a head carrying both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper drops the `Content-Length` of such a request before the handler sees it (RFC 9112
//! §6.3), so the proxy cannot tell it apart from a plain chunked request. This wrapper follows
//! the framing of every request on the connection (heads line by line, `Content-Length` bodies
//! by counting, chunked bodies by their size lines) and raises a per-connection flag when one
//! head has both fields; the handler answers 400 and closes. It never changes a byte, stops
//! watching on anything it does not understand (HTTP/2, `CONNECT`, lines past its buffer), and
//! scans only head and chunk-size bytes: bodies are skipped by count. A request carrying
//! `Upgrade` is framed like any other: a disallowed upgrade goes on as a plain keep-alive
//! request, so watching must not stop there (after a real 101 the bytes are a tunnel, no
//! request follows, and a flag raised by them has no reader).

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const LINE: usize = 96;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a head; `first` until the request line was seen.
    Head,
    /// Skipping this many body bytes.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data plus its CRLF.
    ChunkData(u64),
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// Not watching any more.
    Off,
}

/// The framing tracker (no I/O; fed with the bytes the client sent).
#[derive(Debug)]
pub(crate) struct Framing {
    phase: Phase,
    line: [u8; LINE],
    len: usize,
    truncated: bool,
    request_line_seen: bool,
    content_length: Option<u64>,
    /// A `Content-Length` field was seen (whatever its value).
    has_content_length: bool,
    transfer_encoding: bool,
    chunked: bool,
    /// A framing field's value was cut off at the line buffer: its meaning is unknown.
    framing_cut: bool,
}

impl Framing {
    pub(crate) fn new() -> Self {
        Self {
            phase: Phase::Head,
            line: [0; LINE],
            len: 0,
            truncated: false,
            request_line_seen: false,
            content_length: None,
            has_content_length: false,
            transfer_encoding: false,
            chunked: false,
            framing_cut: false,
        }
    }

    /// Feeds bytes; returns true when a head with both framing fields was completed.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> bool {
        let mut found = false;
        while !bytes.is_empty() {
            match self.phase {
                Phase::Off => return found,
                Phase::Body(n) | Phase::ChunkData(n) => {
                    let take = n.min(bytes.len() as u64);
                    bytes = &bytes[take as usize..];
                    let left = n - take;
                    self.phase = match (self.phase, left) {
                        (Phase::Body(_), 0) => Phase::Head,
                        (Phase::Body(_), l) => Phase::Body(l),
                        (_, 0) => Phase::ChunkSize,
                        (_, l) => Phase::ChunkData(l),
                    };
                }
                Phase::Head | Phase::ChunkSize | Phase::Trailers => {
                    let Some(nl) = memchr::memchr(b'\n', bytes) else {
                        self.push(bytes);
                        return found;
                    };
                    let (part, rest) = (&bytes[..nl], &bytes[nl + 1..]);
                    bytes = rest;
                    if self.len == 0 && !self.truncated {
                        // The whole line is in this read (the common case): no copy. It is cut
                        // at `LINE` as a line spread over reads would be, so what the watcher
                        // concludes never depends on how the bytes arrived.
                        let truncated = part.len() > LINE;
                        let part = &part[..part.len().min(LINE)];
                        let line = part.strip_suffix(b"\r").unwrap_or(part);
                        found |= self.line_done(line, truncated);
                        continue;
                    }
                    self.push(part);
                    let mut line = [0u8; LINE];
                    let n = self.len;
                    line[..n].copy_from_slice(&self.line[..n]);
                    let truncated = std::mem::take(&mut self.truncated);
                    self.len = 0;
                    let line = line[..n].strip_suffix(b"\r").unwrap_or(&line[..n]);
                    found |= self.line_done(line, truncated);
                }
            }
        }
        found
    }

    /// Keeps the first `LINE` bytes of the current line (names and framing values are short;
    /// a long cookie only loses its tail) and remembers whether anything was cut.
    fn push(&mut self, part: &[u8]) {
        let n = part.len().min(LINE - self.len);
        self.line[self.len..self.len + n].copy_from_slice(&part[..n]);
        self.len += n;
        self.truncated |= n < part.len();
    }

    fn line_done(&mut self, line: &[u8], truncated: bool) -> bool {
        match self.phase {
            Phase::ChunkSize if truncated => {
                // A chunk-size line past the buffer: stop watching rather than guess.
                self.phase = Phase::Off;
                false
            }
            Phase::ChunkSize => {
                let digits = line
                    .split(|&b| b == b';')
                    .next()
                    .unwrap_or(b"")
                    .trim_ascii();
                match parse_hex(digits) {
                    Some(0) => self.phase = Phase::Trailers,
                    // Chunk data is followed by CRLF, skipped as part of the data.
                    Some(n) => self.phase = Phase::ChunkData(n.saturating_add(2)),
                    None => self.phase = Phase::Off,
                }
                false
            }
            Phase::Trailers => {
                if line.is_empty() {
                    self.phase = Phase::Head;
                }
                false
            }
            _ => self.head_line(line, truncated),
        }
    }

    fn head_line(&mut self, line: &[u8], truncated: bool) -> bool {
        if !self.request_line_seen {
            if line.is_empty() {
                return false; // RFC 9112 §2.2: ignore empty lines before a request line.
            }
            if line.starts_with(b"PRI * HTTP/2") || line.starts_with(b"CONNECT ") {
                self.phase = Phase::Off;
                return false;
            }
            self.request_line_seen = true;
            return false;
        }
        if !line.is_empty() {
            // Only names starting with c or t matter: skip the rest without scanning.
            if !matches!(line[0] | 0x20, b'c' | b't') {
                return false;
            }
            if let Some(colon) = line.iter().position(|&b| b == b':') {
                let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
                if name.eq_ignore_ascii_case(b"content-length") {
                    self.has_content_length = true;
                    self.framing_cut |= truncated;
                    self.content_length =
                        std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                    // A cut value still counts for "both fields"; its last coding is unknown.
                    self.framing_cut |= truncated;
                    self.transfer_encoding = true;
                    self.chunked = value.len() >= 7
                        && value[value.len() - 7..].eq_ignore_ascii_case(b"chunked");
                }
            }
            return false;
        }
        // End of the head.
        let both = self.transfer_encoding && self.has_content_length;
        self.phase = if both || self.framing_cut {
            // hyper closes the connection after the first two; after a cut framing value the
            // body's length is unknown: stop watching rather than guess.
            Phase::Off
        } else if self.chunked {
            Phase::ChunkSize
        } else {
            match self.content_length {
                Some(n) if n > 0 => Phase::Body(n),
                _ => Phase::Head,
            }
        };
        self.request_line_seen = false;
        self.content_length = None;
        self.has_content_length = false;
        self.framing_cut = false;
        self.transfer_encoding = false;
        self.chunked = false;
        both
    }
}

fn parse_hex(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 15 {
        return None;
    }
    d.iter().try_fold(0u64, |acc, &c| {
        Some(acc * 16 + u64::from((c as char).to_digit(16)?))
    })
}

/// What the framing watcher concluded from a byte stream (see [`watch_framing`]).
#[doc(hidden)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watched {
    /// A request head carried both `Content-Length` and `Transfer-Encoding`.
    pub found: bool,
    /// Where the watcher stands after the last byte.
    pub state: String,
}

/// Feeds `reads` to a fresh framing watcher, one read at a time, as a connection would; for
/// the fuzz targets, which check that the outcome does not depend on how the bytes are split.
#[doc(hidden)]
pub fn watch_framing<'a>(reads: impl IntoIterator<Item = &'a [u8]>) -> Watched {
    let mut f = Framing::new();
    let mut found = false;
    for r in reads {
        if f.phase != Phase::Off {
            found |= f.feed(r);
        }
    }
    Watched {
        found,
        state: format!("{:?}", f.phase),
    }
}

/// An I/O stream whose reads feed a [`Framing`] tracker; `flag` turns true when a request head
/// carried both `Content-Length` and `Transfer-Encoding`.
pub(crate) struct Sniff<T> {
    inner: T,
    framing: Framing,
    flag: Arc<AtomicBool>,
}

impl<T> Sniff<T> {
    pub(crate) fn new(inner: T, flag: Arc<AtomicBool>) -> Self {
        Self {
            inner,
            framing: Framing::new(),
            flag,
        }
    }

    /// The same stream, not watched (for protocols that frame their own messages).
    pub(crate) fn off(mut self) -> Self {
        self.framing.phase = Phase::Off;
        self
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Sniff<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.framing.phase != Phase::Off && this.framing.feed(&buf.filled()[before..]) {
            this.flag.store(true, Ordering::Relaxed);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Sniff<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(parts: &[&[u8]]) -> bool {
        let mut f = Framing::new();
        parts.iter().fold(false, |acc, p| acc | f.feed(p))
    }

    #[test]
    fn both_fields_in_one_head_are_found_in_either_order_and_across_reads() {
        assert!(flags(&[
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
        assert!(flags(&[
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 4\r\n\r\n"
        ]));
        assert!(flags(&[
            b"POST / HTTP/1.1\r\nTransfer-Enc",
            b"oding: chunked\r\nContent-Le",
            b"ngth: 4\r",
            b"\n\r\n"
        ]));
    }

    #[test]
    fn pipelined_requests_with_bodies_that_look_like_headers_are_not_flagged() {
        let body = b"content-length: 9\r\ntransfer-encoding: chunked\r\n\r\n";
        let mut req = format!(
            "POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req.extend_from_slice(b"POST /b HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n");
        req.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
        req.extend_from_slice(body);
        req.extend_from_slice(b"\r\n0\r\nx-trailer: 1\r\n\r\nGET /c HTTP/1.1\r\nhost: a\r\n\r\n");
        let mut f = Framing::new();
        for chunk in req.chunks(7) {
            assert!(!f.feed(chunk));
        }
        assert_eq!(f.phase, Phase::Head);
        // And a smuggling head after all that is still found.
        assert!(
            f.feed(b"POST /d HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n")
        );
    }

    #[test]
    fn long_header_lines_do_not_stop_the_watch() {
        let cookie = format!("cookie: {}\r\n", "a=b; ".repeat(100));
        let req = format!(
            "GET / HTTP/1.1\r\n{cookie}\r\nPOST / HTTP/1.1\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert!(flags(&[req.as_bytes()]));
    }

    #[test]
    fn framing_fields_past_the_line_buffer_are_judged_alike_however_the_bytes_arrive() {
        // The property the `framing` fuzz target checks. A framing line longer than the
        // buffer used to be read in full when it arrived in one read and cut when it did not, so a padded
        // `Transfer-Encoding` hid a head with both fields, and a padded `Content-Length` value
        // left the watcher skipping the wrong number of body bytes.
        let pad = " ".repeat(2 * LINE);
        let te_cut = format!(
            "POST / HTTP/1.1\r\ntransfer-encoding:{pad}chunked\r\ncontent-length: 4\r\n\r\n"
        );
        let cl_cut = format!(
            "POST / HTTP/1.1\r\ncontent-length: {}5\r\n\r\nhello",
            "0".repeat(2 * LINE)
        );
        for req in [te_cut.as_bytes(), cl_cut.as_bytes()] {
            let whole = watch_framing([req]);
            for split in [1, 7, LINE - 1, LINE, LINE + 1] {
                assert_eq!(watch_framing(req.chunks(split)), whole, "split {split}");
            }
        }
        assert!(watch_framing([te_cut.as_bytes()]).found);
        assert_eq!(watch_framing([cl_cut.as_bytes()]).state, "Off");
    }

    #[test]
    fn http2_and_unknown_framing_stop_the_watch() {
        let mut f = Framing::new();
        assert!(!f.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert_eq!(f.phase, Phase::Off);
        let mut f = Framing::new();
        assert!(!f.feed(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"));
        assert_eq!(f.phase, Phase::Off);
    }

    #[test]
    fn an_upgrade_header_does_not_stop_the_watch() {
        // A disallowed upgrade is forwarded as a plain request on the same connection, so a
        // later head with both framing fields must still be seen.
        let mut f = Framing::new();
        assert!(!f.feed(b"GET / HTTP/1.1\r\nupgrade: foo\r\nconnection: upgrade\r\n\r\n"));
        assert_eq!(f.phase, Phase::Head);
        assert!(
            f.feed(b"POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n")
        );
    }
}
