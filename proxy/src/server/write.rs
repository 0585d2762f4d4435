//! Response heads to clients, and the framing of the bytes that follow them.
//!
//! The head is written into the connection's head buffer in one pass over the response's
//! fields. The proxy frames the body itself: the hop's own fields (`Connection`, `Keep-Alive`,
//! `Transfer-Encoding`) are never copied from the response (a `101`'s `Connection` excepted),
//! the body gets its declared `Content-Length`, else its known exact size, else the chunked
//! coding (HTTP/1.1 clients) or the connection's close (HTTP/1.0 clients). A `Date` is added
//! when the response has none, formatted once a second per thread.

use crate::upstream::decode::RawFields;
use crate::upstream::encode::{put_decimal, put_field};
use bytes::{BufMut, BytesMut};
use http::response::Parts;
use http::{StatusCode, Version, header};
use http_body::SizeHint;
use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

/// What the request asked of its response's framing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Asked {
    /// The request was a HEAD: no body bytes follow the head.
    pub(crate) head: bool,
    /// The client's HTTP version.
    pub(crate) version: Version,
    /// The client let the connection carry another request.
    pub(crate) keep_alive: bool,
}

/// How the body after a head is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    /// No body bytes may follow (HEAD, 1xx, 204, 304): the body is read and dropped.
    pub(crate) bodiless: bool,
    /// The body goes out in chunks.
    pub(crate) chunked: bool,
    /// The connection closes after this response.
    pub(crate) close: bool,
}

/// Writes the head of a response to `asked` into `out`. `closing`: the connection closes after
/// it whatever the client asked (a drain, a hand-over, an unread request body).
pub(crate) fn encode_head(
    out: &mut BytesMut,
    parts: &Parts,
    raw: Option<&RawFields>,
    size: &SizeHint,
    asked: Asked,
    closing: bool,
) -> Plan {
    let status = parts.status;
    let code = status.as_u16();
    let switching = status == StatusCode::SWITCHING_PROTOCOLS;
    let bodiless = asked.head || (100..200).contains(&code) || code == 204 || code == 304;
    out.reserve(256);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.put_slice(b"\r\n");
    let mut close = closing || !asked.keep_alive;
    let mut length = false;
    let mut date = false;
    for (name, value) in &parts.headers {
        if name == header::CONNECTION {
            close |= has_token(value.as_bytes(), b"close");
            if !switching {
                continue;
            }
        } else if name == header::TRANSFER_ENCODING || name.as_str() == "keep-alive" {
            continue;
        } else if name == header::CONTENT_LENGTH {
            if (100..200).contains(&code) || code == 204 {
                continue;
            }
            length = true;
        } else if name == header::DATE {
            date = true;
        }
        put_field(out, name, value);
    }
    if let Some(raw) = raw {
        // Whole field lines, the hop's own already left out (`RawFields`).
        for run in raw.runs() {
            out.put_slice(run);
        }
        date |= raw.has_date();
        length |= raw.has_length();
    }
    if !date {
        put_date(out);
    }
    let mut chunked = false;
    if switching {
        close = false;
    } else if bodiless && !length && asked.head && code >= 200 && code != 204 && code != 304 {
        // The proxy's own answer to a HEAD says the length its GET would have had. (An
        // endpoint's answer brings its own; its empty body says nothing, so 0 is not sent.)
        if let Some(n) = size.exact().filter(|&n| n > 0) {
            out.put_slice(b"content-length: ");
            put_decimal(out, n);
            out.put_slice(b"\r\n");
        }
    } else if !bodiless && !length {
        if let Some(n) = size.exact() {
            out.put_slice(b"content-length: ");
            put_decimal(out, n);
            out.put_slice(b"\r\n");
        } else if asked.version == Version::HTTP_11 {
            out.put_slice(b"transfer-encoding: chunked\r\n");
            chunked = true;
        } else {
            // An HTTP/1.0 client knows no chunks: the body ends with the connection.
            close = true;
        }
    }
    if !switching {
        if close && asked.version == Version::HTTP_11 {
            out.put_slice(b"connection: close\r\n");
        } else if !close && asked.version == Version::HTTP_10 {
            out.put_slice(b"connection: keep-alive\r\n");
        }
    }
    out.put_slice(b"\r\n");
    Plan {
        bodiless,
        chunked,
        close,
    }
}

/// Whether the comma-separated list `v` holds `token` in any case.
fn has_token(v: &[u8], token: &[u8]) -> bool {
    v.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

thread_local! {
    /// The `Date` field of the current second, on this thread.
    static DATE: RefCell<(u64, [u8; 37])> = const { RefCell::new((u64::MAX, [0; 37])) };
}

/// Appends `date: <IMF-fixdate>\r\n` for now.
fn put_date(out: &mut BytesMut) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            let line = format!("date: {}\r\n", httpdate::fmt_http_date(now));
            let n = line.len().min(37);
            d.1[..n].copy_from_slice(&line.as_bytes()[..n]);
            d.0 = secs;
        }
        out.put_slice(&d.1);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderValue, Response};

    fn head(resp: Response<()>, size: SizeHint, asked: Asked, closing: bool) -> (String, Plan) {
        let (parts, ()) = resp.into_parts();
        let mut out = BytesMut::new();
        let plan = encode_head(&mut out, &parts, None, &size, asked, closing);
        (String::from_utf8(out.to_vec()).unwrap(), plan)
    }

    const GET11: Asked = Asked {
        head: false,
        version: Version::HTTP_11,
        keep_alive: true,
    };

    #[test]
    fn a_known_size_gets_its_length_and_an_unknown_one_chunks() {
        let mut r = Response::new(());
        r.headers_mut().insert("x-a", HeaderValue::from_static("1"));
        let (h, plan) = head(r, SizeHint::with_exact(5), GET11, false);
        assert!(h.starts_with("HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: "), "{h}");
        assert!(h.ends_with(" GMT\r\ncontent-length: 5\r\n\r\n"), "{h}");
        assert!(!plan.chunked && !plan.close && !plan.bodiless);
        let (h, plan) = head(Response::new(()), SizeHint::default(), GET11, false);
        assert!(h.ends_with("transfer-encoding: chunked\r\n\r\n"), "{h}");
        assert!(plan.chunked);
    }

    #[test]
    fn http10_clients_get_the_close_or_keep_alive_said() {
        let ten = Asked {
            version: Version::HTTP_10,
            keep_alive: false,
            ..GET11
        };
        let (h, plan) = head(Response::new(()), SizeHint::default(), ten, false);
        assert!(plan.close && !plan.chunked, "{h}");
        assert!(!h.contains("connection"), "{h}");
        let kept = Asked {
            keep_alive: true,
            ..ten
        };
        let (h, plan) = head(Response::new(()), SizeHint::with_exact(0), kept, false);
        assert!(!plan.close);
        assert!(h.contains("connection: keep-alive\r\n"), "{h}");
    }

    #[test]
    fn the_hops_own_fields_are_replaced_and_a_close_is_kept() {
        let mut r = Response::new(());
        let h = r.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        h.insert(header::DATE, HeaderValue::from_static("then"));
        let (h, plan) = head(r, SizeHint::with_exact(2), GET11, false);
        assert!(plan.close);
        assert_eq!(h.matches("connection").count(), 1, "{h}");
        assert!(
            h.contains("connection: close\r\n") && !h.contains("gzip"),
            "{h}"
        );
        assert_eq!(h.matches("date").count(), 1, "{h}");
    }

    #[test]
    fn fields_kept_as_bytes_follow_the_maps_and_count_for_date_and_length() {
        use crate::upstream::decode::parse_response_head_raw;
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\nServer: up\r\nDate: then\r\nConnection: keep-alive\r\n\
Content-Length: 2\r\n\r\n"[..],
        );
        let up = parse_response_head_raw(&mut buf, &mut http::HeaderMap::new())
            .unwrap()
            .unwrap();
        let mut r = Response::new(());
        r.headers_mut()
            .insert("x-request-id", HeaderValue::from_static("mine"));
        let (parts, ()) = r.into_parts();
        let mut out = BytesMut::new();
        let plan = encode_head(
            &mut out,
            &parts,
            up.raw.as_ref(),
            &SizeHint::with_exact(2),
            GET11,
            false,
        );
        assert_eq!(
            &out[..],
            b"HTTP/1.1 200 OK\r\nx-request-id: mine\r\nServer: up\r\nDate: then\r\n\
Content-Length: 2\r\n\r\n"
        );
        assert!(!plan.close && !plan.chunked && !plan.bodiless);
    }

    #[test]
    fn bodiless_responses_keep_their_length_but_frame_nothing() {
        let mut r = Response::new(());
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        let head_req = Asked {
            head: true,
            ..GET11
        };
        let (h, plan) = head(r, SizeHint::default(), head_req, false);
        assert!(plan.bodiless && !plan.chunked);
        assert!(h.contains("content-length: 10\r\n"), "{h}");
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::NO_CONTENT;
        let (h, plan) = head(r, SizeHint::default(), GET11, false);
        assert!(plan.bodiless && !h.contains("content-length") && !h.contains("chunked"));
    }
}
