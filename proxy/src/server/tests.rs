//! The HTTP/1.1 server on real loopback sockets, with a service that echoes what it got (or
//! streams, or ignores the body), and a client writing raw bytes.

use super::*;
use crate::body::BodyError;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const SETTINGS: Settings = Settings {
    limits: head::HeadLimits {
        max_fields: 100,
        max_bytes: 16 * 1024,
    },
    request_header: Duration::from_secs(5),
    idle: Duration::from_secs(5),
    dormant_after: None,
};

type Out = BoxBody<Bytes, BodyError>;

impl RawHead for Out {}

fn full(b: impl Into<Bytes>) -> Out {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// `/echo` answers `METHOD PATH BODY` (reading the body whole; a body error answers 400);
/// `/ignore` answers at once without reading the body; `/stream` answers two chunks and a
/// trailer of unknown length; anything else `ok` with a length.
async fn answer(req: Request<RequestBody>, bodies_read: Arc<AtomicUsize>) -> Response<Out> {
    let path = req.uri().path().to_owned();
    match path.as_str() {
        "/echo" => {
            let method = req.method().clone();
            match req.into_body().collect().await {
                Ok(b) => {
                    bodies_read.fetch_add(1, Ordering::Relaxed);
                    let trailers = b.trailers().cloned();
                    let mut text = format!("{method} {path} ").into_bytes();
                    text.extend_from_slice(&b.to_bytes());
                    if let Some(t) = trailers {
                        text.extend_from_slice(format!(" {t:?}").as_bytes());
                    }
                    Response::new(full(text))
                }
                Err(e) => {
                    let mut r = Response::new(full(format!("body: {e}")));
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    r
                }
            }
        }
        "/ignore" => Response::new(full("ignored")),
        "/stream" => {
            let mut trailers = HeaderMap::new();
            trailers.insert("x-sum", "7".parse().unwrap());
            let frames: Vec<Result<Frame<Bytes>, BodyError>> = vec![
                Ok(Frame::data(Bytes::from_static(b"hello "))),
                Ok(Frame::data(Bytes::from_static(b"world"))),
                Ok(Frame::trailers(trailers)),
            ];
            Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed())
        }
        _ => Response::new(full("ok")),
    }
}

struct Server {
    addr: std::net::SocketAddr,
    bodies_read: Arc<AtomicUsize>,
    draining: Arc<AtomicBool>,
}

async fn server(settings: Settings) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies_read = Arc::new(AtomicUsize::new(0));
    let draining = Arc::new(AtomicBool::new(false));
    let (b, d) = (bodies_read.clone(), draining.clone());
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (b, d) = (b.clone(), d.clone());
            tokio::spawn(async move {
                let service = |req| answer(req, b.clone());
                let _ = serve(tcp, &service, settings, &d, false, None).await;
            });
        }
    });
    Server {
        addr,
        bodies_read,
        draining,
    }
}

/// Writes `bytes` and reads until the server closes (bounded).
async fn exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_to_close(&mut s).await
}

async fn read_to_close(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("the server closes the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads until `needle` has been seen `n` times (bounded).
async fn read_until(s: &mut TcpStream, needle: &str, n: usize) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while String::from_utf8_lossy(&out).matches(needle).count() < n {
            let mut buf = [0u8; 4096];
            let k = s.read(&mut buf).await.unwrap();
            assert!(k > 0, "closed early: {}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&buf[..k]);
        }
    })
    .await
    .expect("the awaited bytes arrive");
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn pipelined_requests_with_either_framing_are_answered_in_order() {
    let srv = server(SETTINGS).await;
    let out = exchange(
        srv.addr,
        b"GET /echo HTTP/1.1\r\nhost: a\r\n\r\n\
          POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\nhello\
          POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n\
          GET /last HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    let bodies: Vec<&str> = out
        .split("HTTP/1.1 200 OK\r\n")
        .skip(1)
        .map(|r| r.split("\r\n\r\n").nth(1).unwrap_or(""))
        .collect();
    assert_eq!(
        bodies,
        [
            "GET /echo ",
            "POST /echo hello",
            "POST /echo abcde {\"x-t\": \"1\"}",
            "ok"
        ],
        "{out}"
    );
    assert!(out.contains("connection: close\r\n"), "{out}");
}

#[tokio::test]
async fn a_body_arriving_in_pieces_is_read_as_it_is_asked_for() {
    let srv = server(SETTINGS).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"PUT /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n01234")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.write_all(b"56789").await.unwrap();
    let out = read_until(&mut s, "PUT /echo 0123456789", 1).await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    // Kept alive: a second request on the same connection.
    s.write_all(b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    read_until(&mut s, "\r\n\r\nok", 1).await;
}

#[tokio::test]
async fn continue_is_sent_only_when_the_body_is_asked_for() {
    let srv = server(SETTINGS).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(
        b"POST /echo HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n",
    )
    .await
    .unwrap();
    let out = read_until(&mut s, "100 Continue\r\n\r\n", 1).await;
    assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"body").await.unwrap();
    read_until(&mut s, "POST /echo body", 1).await;

    // Answered without reading the body: no 100, and the connection closes after the answer
    // (the unread body cannot be told from a next request).
    let out = exchange(
        srv.addr,
        b"POST /ignore HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\ncontent-length: 4\r\n\r\n",
    )
    .await;
    assert!(!out.contains("100 Continue"), "{out}");
    assert!(
        out.starts_with("HTTP/1.1 200 OK\r\n") && out.ends_with("ignored"),
        "{out}"
    );
}

#[tokio::test]
async fn an_unread_body_closes_the_connection_after_the_answer() {
    let srv = server(SETTINGS).await;
    let out = exchange(
        srv.addr,
        b"POST /ignore HTTP/1.1\r\nhost: a\r\ncontent-length: 20\r\n\r\n0123456789",
    )
    .await;
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(
        out.contains("connection: close\r\n") && out.ends_with("ignored"),
        "{out}"
    );
}

#[tokio::test]
async fn a_body_cut_short_or_malformed_is_an_error_and_the_connection_ends() {
    let srv = server(SETTINGS).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n0123")
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let out = read_to_close(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.contains("request body ended early"), "{out}");
    let out = exchange(
        srv.addr,
        b"POST /echo HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n",
    )
    .await;
    assert!(out.contains("malformed chunked request body"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert_eq!(srv.bodies_read.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn streamed_answers_are_chunked_for_http11_and_end_with_the_close_for_http10() {
    let srv = server(SETTINGS).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /stream HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let out = read_until(&mut s, "\r\n0\r\n", 1).await;
    let out = if out.ends_with("\r\n\r\n") {
        out
    } else {
        out + &read_until(&mut s, "\r\n\r\n", 1).await
    };
    assert!(out.contains("transfer-encoding: chunked\r\n"), "{out}");
    assert!(
        out.ends_with("\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\nx-sum: 7\r\n\r\n"),
        "{out:?}"
    );
    let out = exchange(srv.addr, b"GET /stream HTTP/1.0\r\n\r\n").await;
    assert!(!out.contains("chunked") && !out.contains("x-sum"), "{out}");
    assert!(out.ends_with("\r\n\r\nhello world"), "{out}");
}

#[tokio::test]
async fn http10_keeps_alive_only_when_asked_and_head_answers_carry_no_body() {
    let srv = server(SETTINGS).await;
    let out = exchange(srv.addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(
        out.ends_with("\r\n\r\nok") && !out.contains("connection"),
        "{out}"
    );
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.0\r\nconnection: keep-alive\r\n\r\n")
        .await
        .unwrap();
    let out = read_until(&mut s, "\r\n\r\nok", 1).await;
    assert!(out.contains("connection: keep-alive\r\n"), "{out}");
    s.write_all(b"HEAD /x HTTP/1.0\r\n\r\n").await.unwrap();
    let out = read_to_close(&mut s).await;
    assert!(
        out.contains("content-length: 2\r\n") && out.ends_with("\r\n\r\n"),
        "{out}"
    );
}

#[tokio::test]
async fn heads_that_break_the_rules_get_an_answer_and_a_close() {
    let srv = server(SETTINGS).await;
    for (raw, status) in [
        (
            &b"GET / HTTP/1.1\r\ncontent-length: 1\r\ntransfer-encoding: chunked\r\n\r\n"[..],
            "400",
        ),
        (b"BAD\r\n\r\n", "400"),
        (b"GET / HTTP/1.1\r\nx:\x01\r\n\r\n", "400"),
    ] {
        let out = exchange(srv.addr, raw).await;
        assert!(out.starts_with(&format!("HTTP/1.1 {status} ")), "{out}");
        assert!(out.contains("connection: close\r\n"), "{out}");
    }
    let big = format!("GET / HTTP/1.1\r\nx: {}\r\n\r\n", "a".repeat(20_000));
    let out = exchange(srv.addr, big.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
}

#[tokio::test]
async fn idle_and_slow_heads_are_closed_in_their_time() {
    let settings = Settings {
        request_header: Duration::from_millis(300),
        idle: Duration::from_millis(300),
        ..SETTINGS
    };
    let srv = server(settings).await;
    // A head that never completes.
    let out = exchange(srv.addr, b"GET / HTTP/1.1\r\nhost:").await;
    assert_eq!(out, "");
    // A kept-alive connection that sends nothing more.
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
    let out = read_to_close(&mut s).await;
    assert!(out.ends_with("\r\n\r\nok"), "{out}");
}

#[tokio::test]
async fn a_connection_busy_past_its_first_idle_deadline_closes_an_idle_time_after_its_last_answer()
{
    // The idle deadline moves with each answer while the timer stays set at the first one:
    // when it fires, the connection must wait for the rest, not close (or go dormant).
    let idle = Duration::from_millis(400);
    let settings = Settings {
        idle,
        request_header: idle,
        ..SETTINGS
    };
    let srv = server(settings).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    let start = tokio::time::Instant::now();
    for i in 1..=4 {
        s.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
        read_until(&mut s, "\r\n\r\nok", 1).await;
        if i < 4 {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let last = tokio::time::Instant::now();
    assert!(
        last - start > idle,
        "the requests spanned more than one idle time"
    );
    let out = read_to_close(&mut s).await;
    assert_eq!(out, "", "nothing more is sent");
    assert!(
        last.elapsed() >= idle - Duration::from_millis(50),
        "closed {:?} after its last answer, before its idle time was over",
        last.elapsed()
    );
}

/// Connections served as the listener serves them, under the drain's watcher, with waits long
/// enough that only the drain can end them: one kept alive after an answer, one that has sent
/// nothing. Each asks the drain to wake it once it waits for its client.
#[tokio::test]
async fn the_drain_wakes_and_closes_connections_waiting_for_their_client() {
    let settings = Settings {
        request_header: Duration::from_secs(60),
        idle: Duration::from_secs(60),
        ..SETTINGS
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let drain = crate::drain::Drain::new();
    let mut watchers = vec![drain.watcher(), drain.watcher()];
    tokio::spawn(async move {
        while let Some(mut watcher) = watchers.pop() {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let draining = watcher.draining();
                let service = |req| answer(req, Arc::default());
                let _ = watcher
                    .watch(|| {
                        crate::drain::SelfDraining::new(serve(
                            tcp, &service, settings, &draining, false, None,
                        ))
                    })
                    .await;
            });
        }
    });
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
    read_until(&mut kept, "\r\n\r\nok", 1).await;
    let mut fresh = TcpStream::connect(addr).await.unwrap();
    // Time for the fresh one to be accepted and to wait (had the drain come first, it would
    // close at its first poll, and this test would not tell).
    tokio::time::sleep(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
        .await
        .expect("both connections woken by the drain and closed");
    assert_eq!(read_to_close(&mut kept).await, "");
    assert_eq!(read_to_close(&mut fresh).await, "");
}

#[tokio::test]
async fn a_draining_server_closes_after_the_answer_in_flight() {
    let srv = server(SETTINGS).await;
    let mut s = TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
    read_until(&mut s, "\r\n\r\nok", 1).await;
    srv.draining.store(true, Ordering::Release);
    s.write_all(b"GET /x HTTP/1.1\r\n\r\n").await.unwrap();
    let out = read_to_close(&mut s).await;
    assert!(
        out.contains("connection: close\r\n") && out.ends_with("ok"),
        "{out}"
    );
}

#[tokio::test]
async fn a_dormant_connection_woken_for_nothing_goes_dormant_again_before_its_idle_deadline() {
    let settings = Settings {
        idle: Duration::from_secs(60),
        dormant_after: Some(Duration::from_millis(100)),
        ..SETTINGS
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _client = TcpStream::connect(addr).await.unwrap();
    let (tcp, _) = listener.accept().await.unwrap();
    let service = |req| answer(req, Arc::new(AtomicUsize::new(0)));
    let draining = AtomicBool::new(false);
    let idle_until = tokio::time::Instant::now() + Duration::from_secs(60);
    // Taken up with nothing sent (as after a spurious readiness): handed back dormant, with
    // its idle deadline unchanged, long before that deadline.
    let served = tokio::time::timeout(
        Duration::from_secs(10),
        serve(
            tcp,
            &service,
            settings,
            &draining,
            false,
            Some(Wake::until(idle_until)),
        ),
    )
    .await
    .expect("dormant again well before the idle deadline");
    let Ok(Served::Dormant { wake, .. }) = served else {
        panic!("not dormant: {served:?}");
    };
    assert_eq!(wake.deadline(), idle_until);
}

#[tokio::test]
async fn a_dormant_connection_is_taken_up_again_and_closes_at_its_idle_deadline() {
    let settings = Settings {
        idle: Duration::from_millis(1500),
        dormant_after: Some(Duration::from_millis(100)),
        ..SETTINGS
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let service = |req| answer(req, Arc::new(AtomicUsize::new(0)));
        let draining = AtomicBool::new(false);
        let mut wake = None;
        loop {
            let served = serve(tcp, &service, settings, &draining, false, wake.take()).await;
            let Ok(Served::Dormant { io, wake: mut w }) = served else {
                tx.send("done").unwrap();
                return;
            };
            tx.send("dormant").unwrap();
            let readable = tokio::select! {
                r = io.readable() => r.is_ok(),
                _ = w.idle_over() => false,
            };
            if !readable {
                tx.send("idle over").unwrap();
                return;
            }
            tcp = io;
            wake = Some(w);
        }
    });
    let mut next = async || {
        tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("the server says what happened")
    };
    let mut s = TcpStream::connect(addr).await.unwrap();
    for (path, end) in [("/a", "\r\n\r\nok"), ("/echo", "\r\n\r\nGET /echo ")] {
        s.write_all(format!("GET {path} HTTP/1.1\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let out = read_until(&mut s, end, 1).await;
        assert!(
            out.starts_with("HTTP/1.1 200 ") && out.ends_with(end),
            "{out}"
        );
        // Kept alive past its dormant time: handed back, its task ended.
        assert_eq!(next().await, Some("dormant"));
    }
    let dormant = tokio::time::Instant::now();
    // Nothing more: closed at the idle deadline (1.5 s after the last answer), not before.
    let out = read_to_close(&mut s).await;
    assert_eq!(next().await, Some("idle over"));
    assert_eq!(out, "");
    assert!(
        dormant.elapsed() >= Duration::from_millis(1000),
        "closed {:?} after going dormant, before its idle time was over",
        dormant.elapsed()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_connection_that_ends_gives_its_buffers_to_the_next_one() {
    let srv = server(SETTINGS).await;
    // The server's tasks run on this thread: its stock is the one counted here.
    let before = spare::stocked();
    for i in 0..3 {
        let out = exchange(
            srv.addr,
            b"GET /echo HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        // One set, taken by each connection and given back when it ended (a set per
        // connection would add one each time).
        assert_eq!(spare::stocked(), before + 1, "after connection {i}");
    }
    // A client that closes without a request also gives its set back.
    let s = TcpStream::connect(srv.addr).await.unwrap();
    drop(s);
    // Its accept and end run on this thread while it sleeps (before the next connection).
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(spare::stocked(), before + 1);
    let out = exchange(
        srv.addr,
        b"GET /x HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert!(out.ends_with("ok"), "{out}");
    assert_eq!(spare::stocked(), before + 1);
}
