//! Response decoding from an endpoint: the head parsed with `httparse` into a `HeaderMap` built
//! once (values share the read buffer, no copy), and the body's framing decided strictly
//! (RFC 9112 §6.3).
//!
//! Strict means every message whose length two readers could see differently is refused: both
//! `Content-Length` and `Transfer-Encoding`, a `Content-Length` that is not one non-negative
//! decimal number (repeats must agree), `chunked` anywhere but last, or `Transfer-Encoding` on
//! an HTTP/1.0 response. The caller answers 502 and closes the connection.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Version, header};
use std::mem::MaybeUninit;

/// Most header fields accepted in a response head (hyper's client default).
pub const MAX_HEADERS: usize = 100;
/// Largest response head accepted, in bytes.
pub const MAX_HEAD_BYTES: usize = 64 * 1024 - 1;

/// Why a response from an endpoint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The head is not HTTP/1.x.
    #[error("malformed response head")]
    Head,
    /// The head is larger than [`MAX_HEAD_BYTES`] or has more than [`MAX_HEADERS`] fields.
    #[error("response head too large")]
    HeadTooLarge,
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("response carries both content-length and transfer-encoding")]
    LengthAndEncoding,
    /// A `Content-Length` that is not one non-negative number.
    #[error("invalid content-length")]
    ContentLength,
    /// A `Transfer-Encoding` this proxy cannot delimit.
    #[error("invalid transfer-encoding")]
    TransferEncoding,
    /// A chunk-size line, or the end of a chunk, is malformed.
    #[error("malformed chunk")]
    Chunk,
    /// The trailer section is malformed or too large.
    #[error("malformed trailers")]
    Trailers,
}

/// A parsed response head.
///
/// The fields that only concern this hop are read while parsing and kept out of `headers`:
/// `Transfer-Encoding`, `Keep-Alive`, and a `Connection` that says no more than `close` or
/// `keep-alive` (one naming other fields, or `upgrade`, stays, so the hop-by-hop stripping
/// downstream sees it). `Content-Length` stays.
#[derive(Debug)]
pub struct ResponseHead {
    /// The status code.
    pub status: StatusCode,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// The header fields, in order, less the hop's own (see above); empty when they were kept
    /// as bytes (`raw`).
    pub headers: HeaderMap,
    /// The fields as the bytes that came (see [`parse_response_head_raw`]).
    pub raw: Option<RawFields>,
    fields: Fields,
}

/// What a head's framing and connection fields said.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Fields {
    /// `Content-Length`: `None` when absent; `Some(None)` when invalid or disagreeing.
    pub(crate) length: Option<Option<u64>>,
    /// Whether `Transfer-Encoding` was present.
    pub(crate) encoded: bool,
    /// Whether its last coding is `chunked`.
    pub(crate) chunked_last: bool,
    /// `chunked` not last, or a field without codings.
    pub(crate) bad_encoding: bool,
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    /// `Connection` named `upgrade`.
    pub(crate) upgrade: bool,
}

impl Fields {
    pub(crate) fn content_length(&mut self, v: &[u8]) {
        for t in v.split(|&b| b == b',') {
            let n = parse_decimal(t.trim_ascii());
            self.length = match (self.length, n) {
                (None, n) => Some(n),
                (Some(Some(f)), Some(n)) if f == n => Some(Some(f)),
                _ => Some(None),
            };
        }
    }

    pub(crate) fn transfer_encoding(&mut self, v: &[u8]) {
        self.encoded = true;
        let mut any = false;
        for t in v.split(|&b| b == b',') {
            let t = t.trim_ascii();
            if t.is_empty() {
                continue;
            }
            any = true;
            // chunked must be applied last, and once.
            self.bad_encoding |= self.chunked_last;
            self.chunked_last = t.eq_ignore_ascii_case(b"chunked");
        }
        self.bad_encoding |= !any;
    }

    /// Records the tokens; whether they were only `close` / `keep-alive`.
    pub(crate) fn connection(&mut self, v: &[u8]) -> bool {
        let mut only = true;
        for t in v.split(|&b| b == b',') {
            let t = t.trim_ascii();
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !t.is_empty() {
                self.upgrade |= t.eq_ignore_ascii_case(b"upgrade");
                only = false;
            }
        }
        only
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304, `content-length: 0`).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Until the endpoint closes the connection.
    Close,
}

/// Parses a response head from the front of `buf`. On success the head's bytes are split off
/// `buf` (what follows stays); `Ok(None)` means more bytes are needed.
pub fn parse_response_head(buf: &mut BytesMut) -> Result<Option<ResponseHead>, DecodeError> {
    parse_response_head_into(buf, &mut HeaderMap::new())
}

/// [`parse_response_head`], building the head's fields in `spare` (cleared first) so its
/// allocation is reused: the proxy passes the request's own map, which is no longer needed once
/// an answer arrives, and the response's map later carries the client's next request (hyper's
/// server keeps it for that), so a keep-alive exchange allocates no map. `spare` is taken only
/// when a head is complete.
pub fn parse_response_head_into(
    buf: &mut BytesMut,
    spare: &mut HeaderMap,
) -> Result<Option<ResponseHead>, DecodeError> {
    parse(buf, spare, false)
}

/// [`parse_response_head_into`], but the fields of a final response that only passes through
/// are kept as the bytes that came ([`RawFields`], in [`ResponseHead::raw`]) and `headers` is
/// left empty: no map is built for them, and an HTTP/1.1 client gets them as they are. A head
/// whose fields need more than leaving lines out (see [`RawFields`]) is parsed into the map as
/// by [`parse_response_head_into`].
pub fn parse_response_head_raw(
    buf: &mut BytesMut,
    spare: &mut HeaderMap,
) -> Result<Option<ResponseHead>, DecodeError> {
    parse(buf, spare, true)
}

fn parse(
    buf: &mut BytesMut,
    spare: &mut HeaderMap,
    try_raw: bool,
) -> Result<Option<ResponseHead>, DecodeError> {
    // Offsets of (name, value) of each field, relative to the buffer's start: the parse
    // borrows `buf`, and the field values are sliced out of it once it is frozen.
    let mut spans = [(0u16, 0u16, 0u16, 0u16); MAX_HEADERS];
    let (len, code, minor, count) = {
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut []);
        let status = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut resp,
            buf,
            &mut headers,
        );
        let len = match status {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                return Err(DecodeError::HeadTooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(DecodeError::HeadTooLarge),
            Err(_) => return Err(DecodeError::Head),
        };
        if len > MAX_HEAD_BYTES {
            return Err(DecodeError::HeadTooLarge);
        }
        let base = buf.as_ptr() as usize;
        for (span, h) in spans.iter_mut().zip(resp.headers.iter()) {
            let n = h.name.as_ptr() as usize - base;
            let v = h.value.as_ptr() as usize - base;
            // Offsets fit: the head is shorter than MAX_HEAD_BYTES (64 KiB).
            *span = (
                n as u16,
                h.name.len() as u16,
                v as u16,
                h.value.len() as u16,
            );
        }
        let code = resp.code.ok_or(DecodeError::Head)?;
        let minor = resp.version.ok_or(DecodeError::Head)?;
        (len, code, minor, resp.headers.len())
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| DecodeError::Head)?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let spans = &spans[..count];
    let mut headers = std::mem::take(spare);
    headers.clear();
    // 1xx and 204 lose their `Content-Length` on the way out (`crate::server`), so their
    // fields go through the map.
    if try_raw && status.as_u16() >= 200 && status != StatusCode::NO_CONTENT {
        let mut fields = Fields::default();
        if let Some(raw) = RawFields::of(&head, spans, &mut fields) {
            return Ok(Some(ResponseHead {
                status,
                version,
                headers,
                raw: Some(raw),
                fields,
            }));
        }
    }
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let mut fields = Fields::default();
    headers.reserve(count);
    for &(n, nl, v, vl) in spans {
        let (n, nl, v, vl) = (
            usize::from(n),
            usize::from(nl),
            usize::from(v),
            usize::from(vl),
        );
        let raw_name = &head[n..n + nl];
        let name = match common_name(raw_name) {
            Some(name) => name,
            None => HeaderName::from_bytes(raw_name).map_err(|_| DecodeError::Head)?,
        };
        let raw = &head[v..v + vl];
        if name == header::CONTENT_LENGTH {
            fields.content_length(raw);
        } else if name == header::TRANSFER_ENCODING {
            fields.transfer_encoding(raw);
            continue;
        } else if name == header::CONNECTION {
            if fields.connection(raw) && !switching {
                continue;
            }
        } else if name.as_str() == "keep-alive" {
            continue;
        }
        let value =
            HeaderValue::from_maybe_shared(head.slice(v..v + vl)).map_err(|_| DecodeError::Head)?;
        headers.append(name, value);
    }
    Ok(Some(ResponseHead {
        status,
        version,
        headers,
        raw: None,
        fields,
    }))
}

/// Most runs of lines a [`RawFields`] keeps; a head that would need more is parsed into a map.
const RUNS: usize = 4;

/// A response head's fields kept as the bytes that came, for an HTTP/1.1 client: runs of whole
/// field lines, in order, each line ending in CRLF.
///
/// Left out, as from the map: the hop's own `Transfer-Encoding`, `Keep-Alive`, and a
/// `Connection` that says no more than `close` or `keep-alive`. Also left out: `X-Request-Id`,
/// which the proxy sets on every response (`crate::forward`). A head is not kept raw (the
/// parse falls back to the map) when any other hop-by-hop field came (`TE`, `Trailer`,
/// `Upgrade`, `Proxy-*`, `HTTP2-Settings`, or a `Connection` naming fields to remove), when a
/// line ends in a bare LF, or when more than four runs would be needed.
#[derive(Debug, Clone)]
pub struct RawFields {
    head: Bytes,
    runs: [(u16, u16); RUNS],
    count: u8,
    date: bool,
    length: bool,
}

impl RawFields {
    /// The runs for `spans` (name and value offsets in `head`), recording the framing fields
    /// in `fields`; `None` when the head cannot be kept raw.
    fn of(head: &Bytes, spans: &[(u16, u16, u16, u16)], fields: &mut Fields) -> Option<Self> {
        let mut raw = Self {
            head: head.clone(),
            runs: [(0, 0); RUNS],
            count: 0,
            date: false,
            length: false,
        };
        // The blank line that ends the head.
        let end = head.len().checked_sub(2)?;
        if !spans.is_empty() && !head.ends_with(b"\r\n\r\n") {
            return None;
        }
        for (i, &(n, nl, v, vl)) in spans.iter().enumerate() {
            let (start, name) = (usize::from(n), usize::from(nl));
            let value = &head[usize::from(v)..usize::from(v) + usize::from(vl)];
            let stop = spans.get(i + 1).map_or(end, |s| usize::from(s.0));
            // Each line ends in CRLF (the parse also takes a bare LF).
            if !head[..stop].ends_with(b"\r\n") {
                return None;
            }
            let name = &head[start..start + name];
            let keep = match name.len() {
                2 if same_name(name, b"te") => return None,
                4 if same_name(name, b"date") => {
                    raw.date = true;
                    true
                }
                7 if same_name(name, b"trailer") || same_name(name, b"upgrade") => return None,
                10 if same_name(name, b"connection") => {
                    if !fields.connection(value) {
                        return None;
                    }
                    false
                }
                10 if same_name(name, b"keep-alive") => false,
                12 if same_name(name, b"x-request-id") => false,
                14 if same_name(name, b"content-length") => {
                    fields.content_length(value);
                    raw.length = true;
                    true
                }
                14 if same_name(name, b"http2-settings") => return None,
                16 if same_name(name, b"proxy-connection") => return None,
                17 if same_name(name, b"transfer-encoding") => {
                    fields.transfer_encoding(value);
                    false
                }
                18 if same_name(name, b"proxy-authenticate") => return None,
                19 if same_name(name, b"proxy-authorization") => return None,
                _ => true,
            };
            if !keep {
                continue;
            }
            let (start, stop) = (start as u16, stop as u16);
            match raw.count {
                0 => {}
                c if raw.runs[usize::from(c) - 1].1 == start => {
                    raw.runs[usize::from(c) - 1].1 = stop;
                    continue;
                }
                c if usize::from(c) == RUNS => return None,
                _ => {}
            }
            raw.runs[usize::from(raw.count)] = (start, stop);
            raw.count += 1;
        }
        Some(raw)
    }

    /// The runs of field lines to send, in order.
    pub fn runs(&self) -> impl Iterator<Item = &[u8]> {
        self.runs[..usize::from(self.count)]
            .iter()
            .map(|&(a, b)| &self.head[usize::from(a)..usize::from(b)])
    }

    /// Whether a `Date` came.
    pub fn has_date(&self) -> bool {
        self.date
    }

    /// Whether a `Content-Length` came.
    pub fn has_length(&self) -> bool {
        self.length
    }

    /// Appends the fields to `map`, as the map parse would have built them (for a client that
    /// takes a map: HTTP/2).
    pub fn append_to(&self, map: &mut HeaderMap) {
        for run in self.runs() {
            for line in run.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    continue;
                };
                let raw_name = &line[..colon];
                let value = line[colon + 1..].trim_ascii();
                // Both were accepted by the parse already.
                let name = match common_name(raw_name) {
                    Some(n) => Ok(n),
                    None => HeaderName::from_bytes(raw_name),
                };
                if let (Ok(n), Ok(v)) = (
                    name,
                    HeaderValue::from_maybe_shared(self.head.slice_ref(value)),
                ) {
                    map.append(n, v);
                }
            }
        }
    }
}

static LEN_4: [HeaderName; 3] = [header::DATE, header::ETAG, header::VARY];
static LEN_6: [HeaderName; 1] = [header::SERVER];
static LEN_7: [HeaderName; 1] = [header::EXPIRES];
static LEN_8: [HeaderName; 1] = [header::LOCATION];
static LEN_10: [HeaderName; 2] = [header::CONNECTION, header::SET_COOKIE];
static LEN_12: [HeaderName; 1] = [header::CONTENT_TYPE];
static LEN_13: [HeaderName; 3] = [
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::ACCEPT_RANGES,
];
static LEN_14: [HeaderName; 1] = [header::CONTENT_LENGTH];
static LEN_16: [HeaderName; 1] = [header::CONTENT_ENCODING];
static LEN_17: [HeaderName; 1] = [header::TRANSFER_ENCODING];

/// The standard name `raw` spells in any case, for the fields most responses carry: the same
/// name `HeaderName::from_bytes` gives, found by a comparison or three of whole words instead
/// of its general parse. `None` for any other name. `raw` must be a field name httparse
/// accepted (token characters only, see [`same_name`]).
fn common_name(raw: &[u8]) -> Option<HeaderName> {
    let candidates: &[HeaderName] = match raw.len() {
        4 => &LEN_4,
        6 => &LEN_6,
        7 => &LEN_7,
        8 => &LEN_8,
        10 => &LEN_10,
        12 => &LEN_12,
        13 => &LEN_13,
        14 => &LEN_14,
        16 => &LEN_16,
        17 => &LEN_17,
        _ => return None,
    };
    one_of(raw, candidates)
}

/// The name among `candidates` that the field name `raw` spells in any case.
pub(crate) fn one_of(raw: &[u8], candidates: &[HeaderName]) -> Option<HeaderName> {
    candidates
        .iter()
        .find(|n| same_name(raw, n.as_str().as_bytes()))
        .cloned()
}

/// Whether the token `raw` is `lower` (lowercase letters and `-`, as long as `raw`) in any
/// case. Setting bit 0x20 lowers a capital and keeps a lowercase letter or `-`; no other token
/// character (RFC 9110 §5.6.2) becomes a letter or `-` by it, so for tokens this is
/// `eq_ignore_ascii_case`, eight bytes a step.
fn same_name(raw: &[u8], lower: &[u8]) -> bool {
    const LOW: u64 = 0x2020_2020_2020_2020;
    fn word(b: &[u8]) -> u64 {
        u64::from_le_bytes(b.try_into().expect("eight bytes"))
    }
    let n = raw.len();
    if n != lower.len() {
        return false;
    }
    if n < 8 {
        return raw.iter().zip(lower).all(|(&r, &l)| r | 0x20 == l);
    }
    // The first and the last eight bytes (overlapping below 16), then any middle.
    word(&raw[..8]) | LOW == word(&lower[..8])
        && word(&raw[n - 8..]) | LOW == word(&lower[n - 8..])
        && raw[8..n.max(16) - 8]
            .iter()
            .zip(&lower[8..n.max(16) - 8])
            .all(|(&r, &l)| r | 0x20 == l)
}

/// The framing of a response's body and whether its connection may carry another request
/// after it (RFC 9112 §6.3, §9.3). `head_request`: the request was a HEAD.
pub fn response_framing(
    head: &ResponseHead,
    head_request: bool,
) -> Result<(Framing, bool), DecodeError> {
    let f = &head.fields;
    // HTTP/1.1 keeps the connection unless `close`; HTTP/1.0 only with `keep-alive`.
    let keep_alive = !f.close && (head.version == Version::HTTP_11 || f.keep_alive);
    let status = head.status.as_u16();
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok((Framing::Empty, keep_alive));
    }
    if f.encoded {
        if f.length.is_some() {
            return Err(DecodeError::LengthAndEncoding);
        }
        if head.version == Version::HTTP_10 || f.bad_encoding {
            return Err(DecodeError::TransferEncoding);
        }
        return if f.chunked_last {
            Ok((Framing::Chunked, keep_alive))
        } else {
            // A coding without chunked: the body runs to the close (RFC 9112 §6.3 item 4).
            Ok((Framing::Close, false))
        };
    }
    match f.length {
        Some(None) => Err(DecodeError::ContentLength),
        Some(Some(0)) => Ok((Framing::Empty, keep_alive)),
        Some(Some(n)) => Ok((Framing::Length(n), keep_alive)),
        None => Ok((Framing::Close, false)),
    }
}

fn parse_decimal(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &b in t {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(b - b'0');
    }
    Some(n)
}

/// Parses a complete trailer section (field lines, no final empty line needed) into fields.
pub(crate) fn parse_trailers(block: &Bytes) -> Result<HeaderMap, DecodeError> {
    let mut fields = [httparse::EMPTY_HEADER; 64];
    match httparse::parse_headers(block, &mut fields) {
        Ok(httparse::Status::Complete((_, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for f in fields.iter() {
                let name =
                    HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| DecodeError::Trailers)?;
                let value = HeaderValue::from_maybe_shared(block.slice_ref(f.value))
                    .map_err(|_| DecodeError::Trailers)?;
                map.append(name, value);
            }
            Ok(map)
        }
        _ => Err(DecodeError::Trailers),
    }
}

#[cfg(test)]
mod tests;
