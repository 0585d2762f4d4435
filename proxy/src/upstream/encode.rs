//! Request encoding towards an endpoint: the request line and header block written into one
//! buffer, and the body's framing chosen from what the body says of itself.
//!
//! The framing is never taken from the client's `Content-Length` or `Transfer-Encoding` fields
//! (both are skipped when the block is written): a body of known length goes with its own
//! `content-length`, any other with `transfer-encoding: chunked`. So what the endpoint reads
//! always matches the bytes this proxy sends, whatever the client claimed.

use bytes::{BufMut, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};

/// How a request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body bytes follow the head.
    Empty,
    /// Exactly this many bytes follow (`content-length`).
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
}

/// What is known of a request body before it is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyShape {
    /// No body at all.
    Empty,
    /// A body of exactly this many bytes.
    Exact(u64),
    /// A body whose length is not known in advance.
    Streaming,
}

/// Writes the HTTP/1.1 head of a request (`method`, origin-form `uri`, `headers`) into `dst`
/// and returns the framing its body must be sent with. Each field of `set` replaces those of
/// its name in `headers` (written after them; `None` only removes them), so a proxy adds its
/// own fields without rebuilding the map.
pub fn encode_request_head(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    set: &[(&HeaderName, Option<&HeaderValue>)],
    body: BodyShape,
    dst: &mut BytesMut,
) -> BodyFraming {
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = if target.is_empty() { "/" } else { target };
    dst.reserve(64 + target.len() + headers.len() * 32);
    dst.put_slice(method.as_str().as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(target.as_bytes());
    dst.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || set.iter().any(|(n, _)| *n == name)
        {
            continue;
        }
        put_field(dst, name, value);
    }
    for (name, value) in set {
        if let Some(value) = value {
            put_field(dst, name, value);
        }
    }
    let framing = match body {
        BodyShape::Empty => {
            // A method that defines a body says its length even when it is empty, so the
            // endpoint need not guess (RFC 9110 §8.6).
            if method == Method::POST || method == Method::PUT || method == Method::PATCH {
                dst.put_slice(b"content-length: 0\r\n");
            }
            BodyFraming::Empty
        }
        BodyShape::Exact(n) => {
            dst.put_slice(b"content-length: ");
            put_decimal(dst, n);
            dst.put_slice(b"\r\n");
            if n == 0 {
                BodyFraming::Empty
            } else {
                BodyFraming::Length(n)
            }
        }
        BodyShape::Streaming => {
            dst.put_slice(b"transfer-encoding: chunked\r\n");
            BodyFraming::Chunked
        }
    };
    dst.put_slice(b"\r\n");
    framing
}

/// Appends the size line of a chunk of `len` bytes (`len` in hex, then CRLF).
pub fn encode_chunk_size(len: usize, dst: &mut BytesMut) {
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    let mut n = len;
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&digits[i..]);
    dst.put_slice(b"\r\n");
}

/// Appends the last chunk with `trailers` and the end of the chunked body.
pub fn encode_last_chunk(trailers: &HeaderMap, dst: &mut BytesMut) {
    dst.put_slice(b"0\r\n");
    for (name, value) in trailers {
        put_field(dst, name, value);
    }
    dst.put_slice(b"\r\n");
}

/// Appends one field line.
pub(crate) fn put_field(dst: &mut BytesMut, name: &HeaderName, value: &HeaderValue) {
    dst.put_slice(name.as_str().as_bytes());
    dst.put_slice(b": ");
    dst.put_slice(value.as_bytes());
    dst.put_slice(b"\r\n");
}

/// Appends `n` in decimal.
pub(crate) fn put_decimal(dst: &mut BytesMut, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.put_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(method: Method, uri: &str, h: &HeaderMap, body: BodyShape) -> (String, BodyFraming) {
        let mut dst = BytesMut::new();
        let uri: Uri = uri.parse().expect("uri");
        let f = encode_request_head(&method, &uri, h, &[], body, &mut dst);
        (String::from_utf8(dst.to_vec()).expect("ascii"), f)
    }

    #[test]
    fn framing_comes_from_the_body_not_the_client_fields() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let (s, f) = head(Method::POST, "/x?y=1", &h, BodyShape::Exact(5));
        assert_eq!(
            s,
            "POST /x?y=1 HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n"
        );
        assert_eq!(f, BodyFraming::Length(5));
        let (s, f) = head(Method::POST, "/", &h, BodyShape::Streaming);
        assert_eq!(
            s,
            "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        assert_eq!(f, BodyFraming::Chunked);
        let (s, f) = head(Method::GET, "/", &h, BodyShape::Empty);
        assert_eq!(s, "GET / HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(f, BodyFraming::Empty);
        let (s, _) = head(Method::PUT, "/", &HeaderMap::new(), BodyShape::Empty);
        assert_eq!(s, "PUT / HTTP/1.1\r\ncontent-length: 0\r\n\r\n");
    }

    #[test]
    fn set_fields_replace_the_clients_and_none_removes() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("client"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        let xff = HeaderName::from_static("x-forwarded-for");
        let peer = HeaderValue::from_static("127.0.0.1");
        let set = [(&header::HOST, None), (&xff, Some(&peer))];
        let mut dst = BytesMut::new();
        let uri: Uri = "/".parse().expect("uri");
        encode_request_head(&Method::GET, &uri, &h, &set, BodyShape::Empty, &mut dst);
        assert_eq!(
            &dst[..],
            b"GET / HTTP/1.1\r\nx-keep: 1\r\nx-forwarded-for: 127.0.0.1\r\n\r\n"
        );
    }

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        let mut b = BytesMut::new();
        encode_chunk_size(0x1a2f, &mut b);
        encode_chunk_size(0, &mut b);
        assert_eq!(&b[..], b"1a2f\r\n0\r\n");
        let mut t = HeaderMap::new();
        t.insert("x-sum", HeaderValue::from_static("7"));
        let mut b = BytesMut::new();
        encode_last_chunk(&t, &mut b);
        assert_eq!(&b[..], b"0\r\nx-sum: 7\r\n\r\n");
    }
}
