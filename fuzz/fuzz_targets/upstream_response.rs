//! The inline HTTP/1 upstream client's response decoding (`proxy/src/upstream/`) on arbitrary
//! endpoint bytes: the head parser, the framing decision and the chunked decoder must not
//! panic, and what they conclude must not depend on how the bytes are split into reads.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use switchyard_proxy::upstream::decode::{Framing, parse_response_head, response_framing};
use switchyard_proxy::upstream::{ChunkedDecoder, Decoded};

/// What a response decodes to: the head's outcome, its framing, and the chunked body's data
/// and ending (as text, so two decodings compare whole).
fn decode<'a>(reads: impl Iterator<Item = &'a [u8]>, head_request: bool) -> String {
    let mut buf = BytesMut::new();
    let mut reads = reads.peekable();
    let head = loop {
        match parse_response_head(&mut buf) {
            Ok(Some(head)) => break head,
            Err(e) => return format!("head error {e:?}"),
            Ok(None) => match reads.next() {
                Some(r) => buf.extend_from_slice(r),
                None => return "head incomplete".to_owned(),
            },
        }
    };
    let summary = format!("{} {:?} {:?}", head.status, head.version, head.headers);
    let framing = match response_framing(&head, head_request) {
        Ok((f, keep_alive)) => format!("{f:?} keep-alive {keep_alive}"),
        Err(e) => return format!("{summary} framing error {e:?}"),
    };
    if !matches!(response_framing(&head, head_request), Ok((Framing::Chunked, _))) {
        return format!("{summary} {framing}");
    }
    let mut decoder = ChunkedDecoder::new();
    let mut data = Vec::new();
    let end = loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(d)) => data.extend_from_slice(&d),
            Ok(Decoded::Trailers(t)) => break format!("trailers {t:?}"),
            Ok(Decoded::End) => break "end".to_owned(),
            Err(e) => break format!("chunk error {e:?}"),
            Ok(Decoded::NeedMore) => match reads.next() {
                Some(r) => buf.extend_from_slice(r),
                None => break "body incomplete".to_owned(),
            },
        }
    };
    format!("{summary} {framing} body {data:?} {end}")
}

fuzz_target!(|input: &[u8]| {
    let Some((&first, bytes)) = input.split_first() else {
        return;
    };
    let head_request = first & 0x80 != 0;
    let split = usize::from(first & 0x7f).max(1);
    let whole = decode(std::iter::once(bytes), head_request);
    let reads = decode(bytes.chunks(split), head_request);
    assert_eq!(whole, reads, "split into reads of {split} bytes");
    let bytewise = decode(bytes.chunks(1), head_request);
    assert_eq!(whole, bytewise, "split into single bytes");
});
