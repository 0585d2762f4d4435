//! The inline HTTP/1.1 upstream client end to end: the proxy in process, raw-TCP upstreams on
//! 127.0.0.1 that write exact bytes and count the connections they accept, and raw clients
//! that see exactly what the proxy sends back. Covers connection reuse, strict response framing,
//! bodies cut short by either side, interim answers, chunked trailers, read-to-close bodies and
//! protocol switches.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use support::{LISTENER, WAIT, start_proxy, trace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// An upstream that hands each accepted connection, with its number (from 1), to a script.
struct RawUpstream {
    addr: SocketAddr,
    accepts: Arc<AtomicU64>,
}

impl RawUpstream {
    async fn start<F, Fut>(script: F) -> Self
    where
        F: Fn(TcpStream, u64) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let accepts = Arc::new(AtomicU64::new(0));
        let counted = accepts.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let n = counted.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(script(tcp, n));
            }
        });
        Self { addr, accepts }
    }

    fn accepts(&self) -> u64 {
        self.accepts.load(Ordering::SeqCst)
    }
}

/// Reads one request head from `tcp` (bytes after it stay in `buf`); `None` at the end.
async fn read_head(tcp: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..i + 4]).into_owned();
            buf.drain(..i + 4);
            return Some(head);
        }
        match tcp.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Answers every request on the connection with `answer`.
async fn answer_each(mut tcp: TcpStream, answer: &'static [u8]) {
    let mut buf = Vec::new();
    while read_head(&mut tcp, &mut buf).await.is_some() {
        if tcp.write_all(answer).await.is_err() {
            return;
        }
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

fn config(up: SocketAddr) -> String {
    format!(
        "{LISTENER}\n[[services]]\nname = \"app\"\nlisteners = [\"public\"]\n\
         health_check = {{ kind = \"none\" }}\n\n[[services.stacks]]\nname = \"blue\"\n\
         weight = 1\nendpoints = [\"{up}\"]\n"
    )
}

/// As [`config`], with the stack's endpoints `a` and `b`, in that order (round robin).
fn config_two(a: SocketAddr, b: SocketAddr) -> String {
    config(a).replace(
        &format!("endpoints = [\"{a}\"]"),
        &format!("endpoints = [\"{a}\", \"{b}\"]"),
    )
}

/// One request on a fresh client connection (which it asks to close); everything the proxy
/// sent back until it closed.
async fn request(proxy: SocketAddr, head: &str) -> String {
    let mut s = TcpStream::connect(proxy).await.expect("connect");
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "the proxy kept the client connection open");
    String::from_utf8_lossy(&out).into_owned()
}

const GET: &str = "GET / HTTP/1.1\r\nhost: app.test\r\nconnection: close\r\n\r\n";

#[tokio::test]
async fn two_requests_share_one_upstream_connection() {
    trace();
    let up = RawUpstream::start(|tcp, _| answer_each(tcp, OK)).await;
    let proxy = start_proxy(&config(up.addr)).await;
    for _ in 0..3 {
        let out = request(proxy.addr, GET).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.ends_with("\r\n\r\nok"), "{out}");
    }
    assert_eq!(up.accepts(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn ambiguous_response_framing_is_a_502_and_its_connection_is_dropped() {
    trace();
    let bad: [&'static [u8]; 5] = [
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        b"HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ];
    for (i, answer) in bad.into_iter().enumerate() {
        // The first connection answers badly; any later one well.
        let up =
            RawUpstream::start(move |tcp, n| answer_each(tcp, if n == 1 { answer } else { OK }))
                .await;
        let proxy = start_proxy(&config(up.addr)).await;
        let out = request(proxy.addr, GET).await;
        assert!(out.starts_with("HTTP/1.1 502"), "case {i}: {out}");
        assert!(
            out.contains("x-switchyard-error: upstream-error"),
            "case {i}: {out}"
        );
        assert!(!out.contains("hello"), "case {i}: {out}");
        let out = request(proxy.addr, GET).await;
        assert!(out.ends_with("\r\n\r\nok"), "case {i}: {out}");
        assert_eq!(up.accepts(), 2, "case {i}: the bad connection was reused");
        proxy.stop().await;
    }
}

#[tokio::test]
async fn an_upstream_that_closes_mid_body_cuts_the_response_and_is_not_pooled() {
    trace();
    let up = RawUpstream::start(|mut tcp, n| async move {
        if n == 1 {
            let mut buf = Vec::new();
            if read_head(&mut tcp, &mut buf).await.is_some() {
                let _ = tcp
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly ten b")
                    .await;
            }
            // Dropped: the connection closes 90 bytes short.
        } else {
            answer_each(tcp, OK).await;
        }
    })
    .await;
    let proxy = start_proxy(&config(up.addr)).await;
    // The client never gets a complete response: the connection closes with the head and
    // part of the body, or (when the break is seen before anything was flushed) with nothing.
    let out = request(proxy.addr, GET).await;
    if !out.is_empty() {
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("content-length: 100"), "{out}");
        let body = &out[out.find("\r\n\r\n").expect("head") + 4..];
        assert!(body.len() < 100, "{out}");
    }
    let out = request(proxy.addr, GET).await;
    assert!(out.ends_with("\r\n\r\nok"), "{out}");
    assert_eq!(up.accepts(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn interim_answers_are_skipped_and_the_client_sees_one_100_continue() {
    trace();
    let up = RawUpstream::start(|mut tcp, _| async move {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut tcp, &mut buf).await else {
            return;
        };
        assert!(head.contains("content-length: 5"), "{head}");
        let _ = tcp
            .write_all(
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\n",
            )
            .await;
        let mut chunk = [0u8; 64];
        while buf.len() < 5 {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n{}",
            String::from_utf8_lossy(&buf[..5])
        );
        let _ = tcp.write_all(answer.as_bytes()).await;
        answer_each(tcp, OK).await;
    })
    .await;
    let proxy = start_proxy(&config(up.addr)).await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"POST /up HTTP/1.1\r\nhost: app.test\r\nexpect: 100-continue\r\ncontent-length: 5\r\nconnection: close\r\n\r\n")
        .await
        .expect("write head");
    let mut got = Vec::new();
    let mut chunk = [0u8; 256];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("100 in time")
            .expect("read");
        assert!(n > 0, "closed before 100 Continue");
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 100 Continue\r\n\r\n"));
    s.write_all(b"hello").await.expect("write body");
    let read = tokio::time::timeout(WAIT, s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the proxy kept the client connection open");
    let out = String::from_utf8_lossy(&got);
    assert_eq!(out.matches("HTTP/1.1 100").count(), 1, "{out}");
    assert!(!out.contains("HTTP/1.1 103"), "{out}");
    assert!(!out.contains("a.css"), "{out}");
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    assert!(out.ends_with("\r\n\r\nhello"), "{out}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_chunked_response_with_trailers_is_read_to_its_end_and_its_connection_reused() {
    trace();
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-sum: 11\r\n\r\n";
    let up = RawUpstream::start(|tcp, _| answer_each(tcp, CHUNKED)).await;
    let proxy = start_proxy(&config(up.addr)).await;
    for _ in 0..2 {
        let out = request(proxy.addr, GET).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let body = &out[out.find("\r\n\r\n").expect("head") + 4..];
        // Re-chunked by the proxy for the client: both pieces, then the last chunk.
        assert!(body.contains("hello") && body.contains(" world"), "{out}");
        assert!(body.contains("0\r\n"), "{out}");
    }
    assert_eq!(up.accepts(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_body_delimited_by_the_close_streams_to_the_end_and_is_not_pooled() {
    trace();
    let up = RawUpstream::start(|mut tcp, _| async move {
        let mut buf = Vec::new();
        if read_head(&mut tcp, &mut buf).await.is_some() {
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil ").await;
            let _ = tcp.write_all(b"the close").await;
        }
    })
    .await;
    let proxy = start_proxy(&config(up.addr)).await;
    for _ in 0..2 {
        let out = request(proxy.addr, GET).await;
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        assert!(out.contains("until "), "{out}");
        assert!(out.contains("the close"), "{out}");
    }
    assert_eq!(up.accepts(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn a_websocket_switch_is_tunnelled_with_the_bytes_sent_after_the_101() {
    trace();
    let up = RawUpstream::start(|mut tcp, _| async move {
        let mut buf = Vec::new();
        let Some(head) = read_head(&mut tcp, &mut buf).await else {
            return;
        };
        assert!(head.contains("upgrade: websocket"), "{head}");
        // The switch and the first frame in one write: the proxy must pass both on.
        let _ = tcp
            .write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: websocket\r\n\r\nhello")
            .await;
        let mut chunk = [0u8; 256];
        loop {
            match tcp.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tcp.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let proxy = start_proxy(&config(up.addr)).await;
    let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
    s.write_all(b"GET /chat HTTP/1.1\r\nhost: app.test\r\nconnection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .await
        .expect("write");
    let mut got = Vec::new();
    let mut chunk = [0u8; 512];
    while !got.ends_with(b"hello") {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("switch in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    for i in 0..3 {
        let msg = format!("frame {i}");
        s.write_all(msg.as_bytes()).await.expect("write");
        let mut back = vec![0u8; msg.len()];
        tokio::time::timeout(WAIT, s.read_exact(&mut back))
            .await
            .expect("echo in time")
            .expect("echo");
        assert_eq!(back, msg.as_bytes());
    }
    proxy.stop().await;
}

#[tokio::test]
async fn a_response_the_client_abandons_mid_body_never_goes_back_to_the_pool() {
    trace();
    let (closed_tx, mut closed_rx) = mpsc::channel::<u64>(4);
    let up = RawUpstream::start(move |mut tcp, n| {
        let closed = closed_tx.clone();
        async move {
            if n > 1 {
                return answer_each(tcp, OK).await;
            }
            let mut buf = Vec::new();
            if read_head(&mut tcp, &mut buf).await.is_none() {
                return;
            }
            // 8 MiB promised and sent until the proxy stops taking it.
            let _ = tcp
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8388608\r\n\r\n")
                .await;
            let piece = vec![b'x'; 64 * 1024];
            for _ in 0..128 {
                if tcp.write_all(&piece).await.is_err() {
                    break;
                }
            }
            // The proxy closed the connection (or it took all of it, which the test refutes).
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(WAIT, tcp.read_to_end(&mut rest)).await;
            let _ = closed.send(n).await;
        }
    })
    .await;
    let proxy = start_proxy(&config(up.addr)).await;
    {
        let mut s = TcpStream::connect(proxy.addr).await.expect("connect");
        s.write_all(GET.as_bytes()).await.expect("write");
        let mut got = vec![0u8; 16 * 1024];
        let n = tokio::time::timeout(WAIT, s.read(&mut got))
            .await
            .expect("head in time")
            .expect("read");
        assert!(got[..n].starts_with(b"HTTP/1.1 200"));
        // Dropped with most of the body unread.
    }
    let closed = tokio::time::timeout(WAIT, closed_rx.recv()).await;
    assert_eq!(
        closed.ok().flatten(),
        Some(1),
        "the first upstream connection stayed open"
    );
    let out = request(proxy.addr, GET).await;
    assert!(out.ends_with("\r\n\r\nok"), "{out}");
    assert_eq!(up.accepts(), 2);
    proxy.stop().await;
}

#[tokio::test]
async fn a_pooled_connection_the_endpoint_closed_costs_the_client_nothing() {
    trace();
    // Each connection answers once, as if keeping it, then closes it.
    let up = RawUpstream::start(|mut tcp, _| async move {
        let mut buf = Vec::new();
        if read_head(&mut tcp, &mut buf).await.is_some() {
            let _ = tcp.write_all(OK).await;
        }
    })
    .await;
    let proxy = start_proxy(&config(up.addr)).await;
    for _ in 0..3 {
        let out = request(proxy.addr, GET).await;
        assert!(out.ends_with("\r\n\r\nok"), "{out}");
    }
    assert_eq!(up.accepts(), 3);
    proxy.stop().await;
}

/// An endpoint whose port accepts but resets each connection once the request arrived, as a
/// container's port proxy does while nothing listens behind it (a restarting container).
async fn reset_after_the_head(mut tcp: TcpStream, _: u64) {
    let mut buf = Vec::new();
    if read_head(&mut tcp, &mut buf).await.is_some() {
        let _ = tcp.set_zero_linger();
    }
}

#[tokio::test]
async fn a_new_connection_reset_before_any_answer_sends_a_get_to_another_endpoint_once() {
    trace();
    let refusing = RawUpstream::start(reset_after_the_head).await;
    let up = RawUpstream::start(|tcp, _| answer_each(tcp, OK)).await;
    let proxy = start_proxy(&config_two(refusing.addr, up.addr)).await;
    // Round robin: the refusing endpoint is chosen at least once in four.
    for i in 0..4 {
        let out = request(proxy.addr, GET).await;
        assert!(out.starts_with("HTTP/1.1 200"), "request {i}: {out}");
        assert!(out.ends_with("\r\n\r\nok"), "request {i}: {out}");
    }
    assert!(
        refusing.accepts() >= 1,
        "the refusing endpoint was never tried"
    );
    proxy.stop().await;

    // Alone, it is not tried twice: the request may have reached it.
    let refusing = RawUpstream::start(reset_after_the_head).await;
    let proxy = start_proxy(&config(refusing.addr)).await;
    let out = request(proxy.addr, GET).await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert_eq!(refusing.accepts(), 1);
    proxy.stop().await;
}

#[tokio::test]
async fn a_request_with_a_body_is_never_sent_twice_after_a_reset() {
    trace();
    let refusing = RawUpstream::start(reset_after_the_head).await;
    let up = RawUpstream::start(|tcp, _| answer_each(tcp, OK)).await;
    let proxy = start_proxy(&config_two(refusing.addr, up.addr)).await;
    let post =
        "POST / HTTP/1.1\r\nhost: app.test\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi";
    let (mut ok, mut failed) = (0, 0);
    for i in 0..4 {
        let out = request(proxy.addr, post).await;
        if out.starts_with("HTTP/1.1 200") {
            ok += 1;
        } else {
            assert!(out.starts_with("HTTP/1.1 502"), "request {i}: {out}");
            failed += 1;
        }
    }
    // Each POST that reached the refusing endpoint failed there, once, and went nowhere else.
    assert_eq!(failed, refusing.accepts(), "{ok} answered");
    assert!(failed >= 1, "the refusing endpoint was never tried");
    assert_eq!(ok + failed, 4);
    proxy.stop().await;
}

#[tokio::test]
async fn a_chunked_request_body_reaches_the_endpoint_chunked() {
    trace();
    let (seen_tx, mut seen_rx) = mpsc::channel::<String>(1);
    let up = RawUpstream::start(move |mut tcp, _| {
        let seen = seen_tx.clone();
        async move {
            let mut buf = Vec::new();
            let Some(head) = read_head(&mut tcp, &mut buf).await else {
                return;
            };
            let mut chunk = [0u8; 256];
            while !buf.ends_with(b"0\r\n\r\n") {
                match tcp.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = tcp.write_all(OK).await;
            let _ = seen
                .send(format!("{head}{}", String::from_utf8_lossy(&buf)))
                .await;
        }
    })
    .await;
    let proxy = start_proxy(&config(up.addr)).await;
    let out = request(
        proxy.addr,
        "POST / HTTP/1.1\r\nhost: app.test\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
    )
    .await;
    assert!(out.ends_with("\r\n\r\nok"), "{out}");
    let seen = tokio::time::timeout(WAIT, seen_rx.recv())
        .await
        .expect("in time")
        .expect("seen");
    assert!(seen.contains("transfer-encoding: chunked\r\n"), "{seen}");
    assert!(!seen.contains("content-length"), "{seen}");
    let body = &seen[seen.find("\r\n\r\n").expect("head") + 4..];
    let decoded: String = body
        .split("\r\n")
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect();
    assert_eq!(decoded, "hello world", "{body:?}");
    proxy.stop().await;
}

#[tokio::test]
async fn a_large_body_is_passed_whole_and_its_connection_reused() {
    trace();
    const LEN: usize = 1 << 20;
    let up = RawUpstream::start(|mut tcp, _| async move {
        let mut answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {LEN}\r\n\r\n").into_bytes();
        answer.extend((0..LEN).map(|i| b'a' + (i % 26) as u8));
        let mut buf = Vec::new();
        while read_head(&mut tcp, &mut buf).await.is_some() {
            if tcp.write_all(&answer).await.is_err() {
                return;
            }
        }
    })
    .await;
    let proxy = start_proxy(&config(up.addr)).await;
    for _ in 0..2 {
        let out = request(proxy.addr, GET).await;
        let body = &out.as_bytes()[out.find("\r\n\r\n").expect("head") + 4..];
        assert_eq!(body.len(), LEN);
        assert!(
            body.iter()
                .enumerate()
                .all(|(i, &b)| b == b'a' + (i % 26) as u8)
        );
    }
    assert_eq!(up.accepts(), 1);
    proxy.stop().await;
}
