//! The HTTP/1 request-head parser (`proxy/src/server/head.rs`) on arbitrary client bytes: it
//! must not panic, and its conclusion (the head, or the refusal, and what is left after it)
//! must not depend on how the bytes arrive: whole, or growing in reads of N bytes.
#![no_main]

use bytes::BytesMut;
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use switchyard_proxy::server::head::{HeadLimits, parse_request_head};

const LIMITS: HeadLimits = HeadLimits {
    max_fields: 100,
    max_bytes: 8 * 1024,
};

/// What parsing concluded: the head as text, or the refusal; and the bytes left.
fn conclude(reads: impl IntoIterator<Item = Vec<u8>>) -> (String, Vec<u8>) {
    let mut buf = BytesMut::new();
    for read in reads {
        buf.extend_from_slice(&read);
        match parse_request_head(&mut buf, LIMITS, &mut HeaderMap::new()) {
            Ok(None) => continue,
            Ok(Some(h)) => {
                let seen = format!(
                    "{} {} {:?} {:?} {:?} {} {} {}",
                    h.method, h.uri, h.version, h.headers, h.framing, h.keep_alive,
                    h.expect_continue, h.upgrade
                );
                return (seen, buf.to_vec());
            }
            Err(e) => return (format!("{e}"), Vec::new()),
        }
    }
    ("partial".into(), Vec::new())
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, bytes)) = data.split_first() else {
        return;
    };
    let whole = conclude([bytes.to_vec()]);
    let n = usize::from(split).max(1);
    let pieces = conclude(bytes.chunks(n).map(<[u8]>::to_vec));
    // Read whole, more of what follows the head is already in the buffer.
    assert_eq!(whole.0, pieces.0, "split into reads of {n} bytes");
    assert!(whole.1.starts_with(&pieces.1), "split into reads of {n} bytes");
});
