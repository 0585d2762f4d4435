//! The HTTP/1 codecs of the proxy crate: the inline upstream client's (encoding a proxied
//! request head, parsing a response head into a `HeaderMap` with its framing decided, decoding
//! a chunked body; `switchyard_proxy::upstream`) and the server's (parsing a client's request
//! head; `switchyard_proxy::server::head`).

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, Method, Uri};
use switchyard_proxy::server::head::{HeadLimits, parse_request_head};
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

/// wrk's request in the side-by-side bench, and a browser-like one.
const WRK: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18093\r\n\r\n";
const BROWSER: &[u8] = b"GET /app/items?page=2 HTTP/1.1\r\nHost: app.example.test\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0\r\nAccept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nCookie: session=abcdef0123456789; theme=dark\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\nSec-Fetch-Site: same-origin\r\nPriority: u=0, i\r\n\r\n";

fn request_head(c: &mut Criterion) {
    let limits = HeadLimits {
        max_fields: 100,
        max_bytes: 64 * 1024,
    };
    let mut g = c.benchmark_group("server parse request head");
    for (name, text) in [("wrk", WRK), ("browser", BROWSER)] {
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), text, |b, text| {
            // The connection's map is reused from request to request, as the server does.
            let mut spare = HeaderMap::with_capacity(32);
            b.iter_batched(
                || BytesMut::from(text),
                |mut buf| {
                    let head = parse_request_head(&mut buf, limits, &mut spare)
                        .expect("valid")
                        .expect("complete");
                    let mut headers = head.headers;
                    headers.clear();
                    spare = headers;
                    black_box((head.uri, buf))
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
    criterion_group!(benches, encode, parse, request_head, chunked);
}

criterion_main!(group::benches);
