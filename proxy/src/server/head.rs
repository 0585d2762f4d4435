//! Request heads from clients: parsed with `httparse` straight into the parts of a request (the
//! field values share the read buffer, no copy), and the body's framing decided strictly
//! (RFC 9112 §6.3).
//!
//! Strict means every request two readers could delimit differently is refused, never
//! repaired: both `Content-Length` and `Transfer-Encoding` (the classic smuggling shape), a
//! `Content-Length` that is not one non-negative decimal number (repeats must agree), a
//! `Transfer-Encoding` whose last coding is not `chunked`, or any `Transfer-Encoding` on an
//! HTTP/1.0 request. httparse itself refuses whitespace before a field's colon, obsolete line
//! folding, bare control characters and anything but HTTP/1.0 and HTTP/1.1.

use crate::upstream::decode::{Fields, one_of};
use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version, header};
use std::mem::MaybeUninit;

/// The most header fields a head may have, whatever `limits.max_headers` says (the parse's
/// field array lives on the stack).
pub const MAX_FIELDS: usize = 256;
/// Fields whose offsets are kept on the stack; a head with more keeps them in a `Vec`.
const INLINE_FIELDS: usize = 32;

/// Why a request head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// Not an HTTP/1.x request head, or framing two readers could see differently: 400.
    #[error("malformed request head")]
    Malformed,
    /// More fields or bytes than the limits allow: 431.
    #[error("request head too large")]
    TooLarge,
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body.
    None,
    /// Exactly this many bytes (more than zero).
    Length(u64),
    /// The chunked transfer coding.
    Chunked,
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// The method.
    pub method: Method,
    /// The request-target.
    pub uri: Uri,
    /// HTTP/1.0 or HTTP/1.1.
    pub version: Version,
    /// Every field, in order (the hop-by-hop ones too: the request path strips them).
    pub headers: HeaderMap,
    /// How the body is delimited.
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this one (RFC 9112 §9.3).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    pub expect_continue: bool,
    /// `Connection: upgrade` with an `Upgrade` field on an HTTP/1.1 request.
    pub upgrade: bool,
}

/// The limits a head is parsed under.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Most fields (more is [`HeadError::TooLarge`]); at most [`MAX_FIELDS`] are honoured.
    pub max_fields: usize,
    /// Most bytes in the head (more is [`HeadError::TooLarge`]).
    pub max_bytes: usize,
}

/// Parses a request head from the front of `buf`. On success the head's bytes are split off
/// `buf` (what follows stays); `Ok(None)` means more bytes are needed. The fields are built in
/// `spare` (cleared first; taken only when a head is complete), so a connection reuses one
/// map's allocation from request to request.
pub fn parse_request_head(
    buf: &mut BytesMut,
    limits: HeadLimits,
    spare: &mut HeaderMap,
) -> Result<Option<RequestHead>, HeadError> {
    let max_fields = limits.max_fields.min(MAX_FIELDS);
    // Offsets of each field's name and value relative to the buffer's start: the parse borrows
    // `buf`, and values are sliced out of it once the head is split off and frozen. A few on
    // the stack (zeroing room for all of them cost more than the parse), more on the heap.
    let mut inline = [(0u32, 0u32, 0u32, 0u32); INLINE_FIELDS];
    let mut spilled = Vec::new();
    let (len, method, target, minor, count) = {
        let mut fields = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let status = httparse::ParserConfig::default().parse_request_with_uninit_headers(
            &mut req,
            buf,
            &mut fields[..max_fields],
        );
        let len = match status {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > limits.max_bytes => {
                return Err(HeadError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(_) => return Err(HeadError::Malformed),
        };
        if len > limits.max_bytes {
            return Err(HeadError::TooLarge);
        }
        let base = buf.as_ptr() as usize;
        let span = |s: &[u8]| ((s.as_ptr() as usize - base) as u32, s.len() as u32);
        let field = |h: &httparse::Header<'_>| {
            let (n, nl) = span(h.name.as_bytes());
            let (v, vl) = span(h.value);
            (n, nl, v, vl)
        };
        if req.headers.len() <= INLINE_FIELDS {
            for (slot, h) in inline.iter_mut().zip(req.headers.iter()) {
                *slot = field(h);
            }
        } else {
            spilled = req.headers.iter().map(field).collect();
        }
        let method = req.method.ok_or(HeadError::Malformed)?;
        let method = match method {
            "GET" => Method::GET,
            "POST" => Method::POST,
            m => Method::from_bytes(m.as_bytes()).map_err(|_| HeadError::Malformed)?,
        };
        let target = span(req.path.ok_or(HeadError::Malformed)?.as_bytes());
        let minor = req.version.ok_or(HeadError::Malformed)?;
        (len, method, target, minor, req.headers.len())
    };
    let head = buf.split_to(len).freeze();
    let at = |(o, l): (u32, u32)| (o as usize, o as usize + l as usize);
    let (t0, t1) = at(target);
    let uri = Uri::from_maybe_shared(head.slice(t0..t1)).map_err(|_| HeadError::Malformed)?;
    let version = if minor == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut fields = Fields::default();
    let mut expect_continue = false;
    let mut upgrade_field = false;
    let mut headers = std::mem::take(spare);
    if !headers.is_empty() {
        // Clearing walks the whole index table, even of an empty map.
        headers.clear();
    }
    headers.reserve(count);
    let spans = if count <= INLINE_FIELDS {
        &inline[..count]
    } else {
        &spilled[..]
    };
    for &(n, nl, v, vl) in spans {
        let (n0, n1) = at((n, nl));
        let (v0, v1) = at((v, vl));
        let raw_name = &head[n0..n1];
        let name = match common_name(raw_name) {
            Some(name) => name,
            None => HeaderName::from_bytes(raw_name).map_err(|_| HeadError::Malformed)?,
        };
        let raw = &head[v0..v1];
        if name == header::CONTENT_LENGTH {
            fields.content_length(raw);
        } else if name == header::TRANSFER_ENCODING {
            fields.transfer_encoding(raw);
        } else if name == header::CONNECTION {
            if fields.connection(raw) {
                // Only `close` / `keep-alive`: read into `keep_alive`, and hop-by-hop, so
                // not kept (the request path would only look it up and remove it again:
                // about 800 instructions for each `Connection: close` request).
                continue;
            }
        } else if name == header::EXPECT {
            expect_continue |= raw.trim_ascii().eq_ignore_ascii_case(b"100-continue");
        } else if name == header::UPGRADE {
            upgrade_field = true;
        }
        let value = value_of(&head, v0, v1)?;
        headers.append(name, value);
    }
    let framing = framing(&fields, version)?;
    let http11 = version == Version::HTTP_11;
    Ok(Some(RequestHead {
        method,
        uri,
        version,
        headers,
        framing,
        keep_alive: !fields.close && (http11 || fields.keep_alive),
        expect_continue: expect_continue && http11,
        upgrade: fields.upgrade && upgrade_field && http11,
    }))
}

static LEN_4: [HeaderName; 1] = [header::HOST];
static LEN_6: [HeaderName; 3] = [header::ACCEPT, header::COOKIE, header::ORIGIN];
static LEN_7: [HeaderName; 2] = [header::REFERER, header::UPGRADE];
static LEN_10: [HeaderName; 2] = [header::USER_AGENT, header::CONNECTION];
static LEN_12: [HeaderName; 2] = [
    header::CONTENT_TYPE,
    HeaderName::from_static("x-request-id"),
];
static LEN_13: [HeaderName; 2] = [header::AUTHORIZATION, header::CACHE_CONTROL];
static LEN_14: [HeaderName; 1] = [header::CONTENT_LENGTH];
static LEN_15: [HeaderName; 3] = [
    header::ACCEPT_ENCODING,
    header::ACCEPT_LANGUAGE,
    HeaderName::from_static("x-forwarded-for"),
];
static LEN_17: [HeaderName; 1] = [header::TRANSFER_ENCODING];

/// The name `raw` spells in any case, for the fields most requests carry, found by a word
/// comparison or two instead of `HeaderName::from_bytes`'s general parse; `None` for any other
/// name. `raw` is a field name httparse accepted (token characters only).
fn common_name(raw: &[u8]) -> Option<HeaderName> {
    let candidates: &[HeaderName] = match raw.len() {
        4 => &LEN_4,
        6 => &LEN_6,
        7 => &LEN_7,
        10 => &LEN_10,
        12 => &LEN_12,
        13 => &LEN_13,
        14 => &LEN_14,
        15 => &LEN_15,
        17 => &LEN_17,
        _ => return None,
    };
    one_of(raw, candidates)
}

/// The value bytes `head[from..to]` as a field value sharing `head`.
fn value_of(head: &Bytes, from: usize, to: usize) -> Result<HeaderValue, HeadError> {
    HeaderValue::from_maybe_shared(head.slice(from..to)).map_err(|_| HeadError::Malformed)
}

/// The body's framing from the head's fields (RFC 9112 §6.3), refusing every ambiguity.
fn framing(f: &Fields, version: Version) -> Result<BodyFraming, HeadError> {
    if f.encoded {
        // Both fields, a coding other than chunked last (its length would be the close, which
        // a request cannot use), or transfer codings HTTP/1.0 does not have.
        if f.length.is_some() || f.bad_encoding || !f.chunked_last || version == Version::HTTP_10 {
            return Err(HeadError::Malformed);
        }
        return Ok(BodyFraming::Chunked);
    }
    match f.length {
        None | Some(Some(0)) => Ok(BodyFraming::None),
        Some(Some(n)) => Ok(BodyFraming::Length(n)),
        Some(None) => Err(HeadError::Malformed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: HeadLimits = HeadLimits {
        max_fields: 100,
        max_bytes: 64 * 1024,
    };

    fn parse(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        parse_request_head(&mut BytesMut::from(raw), LIMITS, &mut HeaderMap::new())
    }

    fn head(raw: &str) -> RequestHead {
        parse(raw.as_bytes()).expect("valid").expect("complete")
    }

    #[test]
    fn a_head_is_split_off_and_what_follows_stays() {
        let mut buf = BytesMut::from(
            &b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\nx-a: 2\r\n\r\nGET /next"[..],
        );
        let h = parse_request_head(&mut buf, LIMITS, &mut HeaderMap::new())
            .unwrap()
            .unwrap();
        assert_eq!(h.method, Method::GET);
        assert_eq!(h.uri, "/a?b=1");
        assert_eq!(h.version, Version::HTTP_11);
        assert_eq!(h.headers["host"], "x");
        let xa: Vec<_> = h.headers.get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(h.framing, BodyFraming::None);
        assert!(h.keep_alive && !h.expect_continue && !h.upgrade);
        assert_eq!(&buf[..], b"GET /next");
    }

    #[test]
    fn partial_heads_ask_for_more_and_oversized_ones_are_refused() {
        assert!(parse(b"GET / HTTP/1.1\r\nhost: a\r\n").unwrap().is_none());
        let big = format!("GET / HTTP/1.1\r\nx: {}\r\n", "a".repeat(70_000));
        assert_eq!(parse(big.as_bytes()).unwrap_err(), HeadError::TooLarge);
        let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse(req.as_bytes()).unwrap_err(), HeadError::TooLarge);
    }

    #[test]
    fn common_names_are_the_names_the_general_parse_gives() {
        for name in [
            "Host",
            "ACCEPT",
            "cookie",
            "Origin",
            "referer",
            "Upgrade",
            "User-Agent",
            "connection",
            "Content-Type",
            "X-Request-ID",
            "authorization",
            "Cache-Control",
            "content-length",
            "Accept-Encoding",
            "accept-language",
            "X-Forwarded-For",
            "Transfer-Encoding",
        ] {
            let fast = common_name(name.as_bytes()).expect(name);
            assert_eq!(
                fast,
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                "{name}"
            );
        }
        for other in ["hostx", "accepts", "x-request-ie", "content-lengtx", "a"] {
            assert!(common_name(other.as_bytes()).is_none(), "{other}");
        }
    }

    #[test]
    fn many_fields_are_all_kept() {
        let many: String = (0..60).map(|i| format!("x-{i}: v{i}\r\n")).collect();
        let h = head(&format!(
            "GET / HTTP/1.1\r\n{many}content-length: 3\r\n\r\n"
        ));
        assert_eq!(h.headers.len(), 61);
        assert_eq!(h.headers["x-59"], "v59");
        assert_eq!(h.framing, BodyFraming::Length(3));
    }

    #[test]
    fn framing_is_strict() {
        let bad = [
            "POST / HTTP/1.1\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 5, 6\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: -5\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length: 0x5\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: chunked, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ntransfer-encoding: \r\n\r\n",
            "POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\ncontent-length : 5\r\n\r\n",
            "POST / HTTP/1.1\r\nx: a\r\n b\r\n\r\n",
            "GET / HTTP/2.0\r\n\r\n",
            "GARBAGE\r\n\r\n",
        ];
        for raw in bad {
            assert_eq!(
                parse(raw.as_bytes()).unwrap_err(),
                HeadError::Malformed,
                "{raw:?}"
            );
        }
        let ok = [
            (
                "POST / HTTP/1.1\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\n",
                BodyFraming::Length(5),
            ),
            (
                "POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n",
                BodyFraming::None,
            ),
            (
                "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n",
                BodyFraming::Chunked,
            ),
            ("POST / HTTP/1.1\r\n\r\n", BodyFraming::None),
        ];
        for (raw, framing) in ok {
            assert_eq!(head(raw).framing, framing, "{raw:?}");
        }
    }

    #[test]
    fn connection_expect_and_upgrade_are_read() {
        assert!(!head("GET / HTTP/1.1\r\nconnection: close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            head("PUT / HTTP/1.1\r\nexpect: 100-Continue\r\ncontent-length: 1\r\n\r\n")
                .expect_continue
        );
        assert!(
            !head("PUT / HTTP/1.0\r\nexpect: 100-continue\r\ncontent-length: 1\r\n\r\n")
                .expect_continue
        );
        let up =
            head("GET / HTTP/1.1\r\nconnection: keep-alive, Upgrade\r\nupgrade: websocket\r\n\r\n");
        assert!(up.upgrade);
        assert!(!head("GET / HTTP/1.1\r\nupgrade: websocket\r\n\r\n").upgrade);
        assert!(!head("GET / HTTP/1.1\r\nconnection: upgrade\r\n\r\n").upgrade);
    }

    #[test]
    fn a_connection_field_of_options_only_is_read_but_not_kept() {
        let close = head("GET / HTTP/1.1\r\nconnection: close\r\nhost: a\r\n\r\n");
        assert!(!close.keep_alive);
        assert!(close.headers.get(header::CONNECTION).is_none());
        assert_eq!(close.headers.len(), 1);
        let kept = head("GET / HTTP/1.0\r\nConnection: Keep-Alive , \r\n\r\n");
        assert!(kept.keep_alive && kept.headers.is_empty());
        // Naming a field (to be removed on the way) or an upgrade: kept for the request path.
        let named = head("GET / HTTP/1.1\r\nconnection: close, x-secret\r\nx-secret: 1\r\n\r\n");
        assert!(!named.keep_alive);
        assert_eq!(named.headers[header::CONNECTION], "close, x-secret");
        let up = head("GET / HTTP/1.1\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\r\n");
        assert!(up.upgrade);
        assert_eq!(up.headers[header::CONNECTION], "Upgrade");
        // Of two fields, the one of options only goes and the other stays.
        let two = head("GET / HTTP/1.1\r\nconnection: keep-alive\r\nconnection: x-a\r\n\r\n");
        let all: Vec<_> = two.headers.get_all(header::CONNECTION).iter().collect();
        assert_eq!(all, ["x-a"]);
    }

    #[test]
    fn the_spare_map_is_reused() {
        let mut spare = HeaderMap::with_capacity(32);
        let cap = spare.capacity();
        let mut buf = BytesMut::from(&b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"[..]);
        let h = parse_request_head(&mut buf, LIMITS, &mut spare)
            .unwrap()
            .unwrap();
        assert_eq!(h.headers.capacity(), cap);
    }
}
