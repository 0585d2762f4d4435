//! The inline upstream client's codec: encoding a proxied request head, parsing a response
//! head into a `HeaderMap` (with its framing decided), and decoding a chunked body. Calls the
//! public codec of the proxy crate (`switchyard_proxy::upstream`).

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Uri};
use switchyard_proxy::upstream::decode::{parse_response_head, response_framing};
use switchyard_proxy::upstream::encode::{BodyShape, encode_request_head};
use switchyard_proxy::upstream::{ChunkedDecoder, Decoded};

/// The head the proxy sends for a small GET after rewriting (as in the load bench).
fn request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("host", "app.example.test"),
        ("user-agent", "hey/0.0.1"),
        ("accept", "*/*"),
        ("accept-encoding", "gzip"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-host", "app.example.test"),
        ("x-request-id", "0123456789abcdef0123456789abcdef"),
    ] {
        h.insert(n, HeaderValue::from_static(v));
    }
    h
}

/// nginx's answer to the load bench's small request, and a larger, more typical one.
const SMALL: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 03:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 13\r\nConnection: keep-alive\r\n\r\nhello, world\n";
const TYPICAL: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 02 Dec 2026 03:00:00 GMT\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 5120\r\nConnection: keep-alive\r\nCache-Control: private, max-age=0, must-revalidate\r\nETag: \"5f2b-6a1c0e9d\"\r\nLast-Modified: Tue, 01 Dec 2026 12:00:00 GMT\r\nVary: Accept-Encoding\r\nSet-Cookie: session=abcdef0123456789; Path=/; HttpOnly; Secure\r\nX-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\nStrict-Transport-Security: max-age=31536000\r\nX-Request-Id: 0123456789abcdef0123456789abcdef\r\n\r\n";

fn encode(c: &mut Criterion) {
    let h = request_headers();
    let uri: Uri = "/api/v1/items?page=2".parse().expect("uri");
    let mut dst = BytesMut::with_capacity(1024);
    c.bench_function("upstream encode request head (8 fields)", |b| {
        b.iter(|| {
            dst.clear();
            black_box(encode_request_head(
                black_box(&Method::GET),
                black_box(&uri),
                black_box(&h),
                &[],
                BodyShape::Empty,
                &mut dst,
            ))
        })
    });
}

fn parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("upstream parse response head");
    for (name, text) in [("small", SMALL), ("typical", TYPICAL)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            b.iter_batched(
                || BytesMut::from(text),
                |mut buf| {
                    let head = parse_response_head(&mut buf)
                        .expect("valid")
                        .expect("complete");
                    let framing = response_framing(&head, false).expect("framed");
                    black_box((head, framing, buf))
                },
                criterion::BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn chunked(c: &mut Criterion) {
    let mut body = BytesMut::new();
    for _ in 0..16 {
        body.extend_from_slice(b"400\r\n");
        body.extend_from_slice(&[b'x'; 1024]);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let body: Bytes = body.freeze();
    let mut g = c.benchmark_group("upstream decode chunked body");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("16 x 1 KiB", |b| {
        b.iter_batched(
            || BytesMut::from(&body[..]),
            |mut buf| {
                let mut d = ChunkedDecoder::new();
                let mut n = 0;
                while let Decoded::Data(b) = d.decode(&mut buf).expect("valid") {
                    n += b.len();
                }
                black_box(n)
            },
            criterion::BatchSize::SmallInput,
        )
    });
    g.finish();
}

// criterion_group! expands to an undocumented function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, encode, parse, chunked);
}

criterion_main!(group::benches);
