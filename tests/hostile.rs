//! End-to-end tests of hostile request shapes against the real `switchyard` binary over raw
//! sockets: h2c upgrade smuggling and unrequested protocol switches, duplicate or conflicting
//! Host, and request bodies that stall. Upstreams are real listeners on 127.0.0.1 that record
//! what reached them and how many connections they accepted.

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use support::{Client, PUBLIC_LISTENER, Proxy, Upstream, WAIT, config, raw_exchange, service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// What one connection to [`switching_upstream`] carried: the request head, then every byte
/// that followed the 101 until the proxy closed the connection.
#[derive(Debug)]
struct Switched {
    head: String,
    after: String,
}

/// An upstream that answers every request head with `101 Switching Protocols` to `protocol`
/// (whatever was asked) and records what arrives afterwards, as a careless or hostile endpoint
/// would.
async fn switching_upstream(protocol: &'static str) -> (SocketAddr, mpsc::Receiver<Switched>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let answer = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: {protocol}\r\n\r\n"
                );
                if tcp.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let mut after = buf.split_off(head_end);
                let bounded = tokio::time::timeout(WAIT, tcp.read_to_end(&mut after)).await;
                assert!(
                    bounded.is_ok(),
                    "the proxy kept the switched connection open"
                );
                let _ = tx
                    .send(Switched {
                        head: String::from_utf8_lossy(&buf).to_ascii_lowercase(),
                        after: String::from_utf8_lossy(&after).into_owned(),
                    })
                    .await;
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn h2c_and_disallowed_upgrades_are_stripped_and_an_unasked_switch_is_refused() {
    let (h2c_up, mut h2c_seen) = switching_upstream("h2c").await;
    let (ws_up, mut ws_seen) = switching_upstream("websocket").await;
    let proxy = Proxy::start(&format!(
        "{PUBLIC_LISTENER}{}{}",
        service("h2c", "hosts = [\"h2c.test\"]", &h2c_up.to_string()),
        service(
            "ws",
            "hosts = [\"ws.test\"]\nupgrades = []",
            &ws_up.to_string()
        ),
    ));
    let addr = proxy.addr("public");
    let smuggled = "GET /admin HTTP/1.1\r\nHost: internal\r\n\r\n";
    let cases = [
        (
            "h2c upgrade, settings listed in Connection",
            "GET / HTTP/1.1\r\nHost: h2c.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            0,
        ),
        (
            "h2c upgrade, settings not listed",
            "GET / HTTP/1.1\r\nHost: h2c.test\r\nConnection: upgrade\r\nUpgrade: H2C\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
            0,
        ),
        (
            "websocket on a service that allows no upgrade",
            "GET /chat HTTP/1.1\r\nHost: ws.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            1,
        ),
    ];
    let seen = [&mut h2c_seen, &mut ws_seen];
    for (name, head, upstream) in cases {
        let out = raw_exchange(addr, format!("{head}{smuggled}").as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 502"), "{name}: {out}");
        assert!(
            out.contains("x-switchyard-error: upstream-protocol"),
            "{name}: {out}"
        );
        // The status line, not just "101": a random x-request-id can contain those digits.
        assert!(!out.contains("HTTP/1.1 101"), "{name}: {out}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{name}: {out}");
        let got = tokio::time::timeout(WAIT, seen[upstream].recv())
            .await
            .expect("the upstream connection was closed")
            .expect("one record per connection");
        assert!(!got.head.contains("upgrade"), "{name}: {}", got.head);
        assert!(!got.head.contains("http2-settings"), "{name}: {}", got.head);
        assert!(
            got.after.is_empty(),
            "{name}: bytes after 101: {:?}",
            got.after
        );
    }
}

#[tokio::test]
async fn allowed_upgrade_is_tunnelled_only_to_the_protocol_asked_for() {
    // The service allows websocket (the default); the endpoint switches to h2c instead.
    let (up, mut seen) = switching_upstream("h2c").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![up])], "", ""));
    let out = raw_exchange(
        proxy.addr("public"),
        b"GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nGET /admin HTTP/1.1\r\nHost: internal\r\n\r\n",
    )
    .await;
    assert!(out.starts_with("HTTP/1.1 502"), "{out}");
    assert!(out.contains("upstream-protocol"), "{out}");
    let got = tokio::time::timeout(WAIT, seen.recv())
        .await
        .expect("the upstream connection was closed")
        .expect("record");
    assert!(got.head.contains("upgrade: websocket"), "{}", got.head);
    assert!(!got.after.contains("/admin"), "{:?}", got.after);
}

#[tokio::test]
async fn duplicate_or_conflicting_host_is_refused_before_routing() {
    let up = Upstream::start("v").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![up.addr])], "", ""));
    let addr = proxy.addr("public");
    let refused = [
        (
            "two host lines",
            "GET / HTTP/1.1\r\nHost: a.test\r\nHost: b.test\r\n\r\n",
        ),
        (
            "two equal host lines",
            "GET / HTTP/1.1\r\nHost: a.test\r\nhost: a.test\r\n\r\n",
        ),
        (
            "absolute form against another host",
            "GET http://a.test/ HTTP/1.1\r\nHost: b.test\r\n\r\n",
        ),
    ];
    for (name, req) in refused {
        let out = raw_exchange(addr, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{name}: {out}");
        assert!(out.contains("bad-request"), "{name}: {out}");
    }
    // HTTP/2: `:authority` and a differing `host` header.
    let mut send = support::h2c(addr).await;
    let req = hyper::Request::builder()
        .uri("http://a.test/")
        .header("host", "b.test")
        .body(Full::new(Bytes::new()))
        .expect("request");
    match send.send_request(req).await {
        Ok(resp) => {
            assert_eq!(resp.status(), 400);
            let _ = resp.into_body().collect().await;
        }
        Err(e) => assert!(e.to_string().contains("reset"), "{e}"),
    }
    assert_eq!(up.requests(), 0, "an ambiguous Host reached the upstream");

    // One Host, or an authority that agrees with it, goes through.
    let ok = raw_exchange(
        addr,
        b"GET http://a.test/x HTTP/1.1\r\nHost: A.test\r\n\r\nGET http://a.test:80/z HTTP/1.1\r\nHost: a.test\r\n\r\nGET /y HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(ok.matches("HTTP/1.1 200").count(), 3, "{ok}");
    assert_eq!(up.requests(), 3);
}

/// An HTTP/1.1 upstream that counts accepted connections, requests whose body arrived in full,
/// and requests whose body broke off.
struct CountingUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    complete: Arc<AtomicU64>,
    aborted: Arc<AtomicU64>,
    aborted_signal: Arc<tokio::sync::Notify>,
}

impl CountingUpstream {
    async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let up = Self {
            addr: l.local_addr().expect("addr"),
            connections: Arc::default(),
            complete: Arc::default(),
            aborted: Arc::default(),
            aborted_signal: Arc::default(),
        };
        let (connections, complete, aborted, signal) = (
            up.connections.clone(),
            up.complete.clone(),
            up.aborted.clone(),
            up.aborted_signal.clone(),
        );
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                connections.fetch_add(1, Ordering::SeqCst);
                let (complete, aborted, signal) =
                    (complete.clone(), aborted.clone(), signal.clone());
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let (complete, aborted, signal) =
                        (complete.clone(), aborted.clone(), signal.clone());
                    async move {
                        let body: hyper::body::Incoming = req.into_body();
                        let len = match body.collect().await {
                            Ok(b) => {
                                complete.fetch_add(1, Ordering::SeqCst);
                                b.to_bytes().len()
                            }
                            Err(_) => {
                                aborted.fetch_add(1, Ordering::SeqCst);
                                signal.notify_one();
                                0
                            }
                        };
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from(len.to_string()),
                        )))
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc),
                );
            }
        });
        up
    }
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_its_upstream_connection_is_not_reused() {
    let up = CountingUpstream::start().await;
    let proxy = Proxy::start(&config(
        &[("blue", "v1", 1, vec![up.addr])],
        // No health check: the default TCP check's connections would count as upstream ones.
        "timeouts = { request_body = \"300ms\" }\nhealth_check = { kind = \"none\" }",
        "",
    ));
    let addr = proxy.addr("public");
    // Headers and the first 10 of 1000 promised bytes, then nothing.
    let mut req = b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n".to_vec();
    req.extend_from_slice(&[b'x'; 10]);
    let out = raw_exchange(addr, &req).await;
    assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    assert!(
        out.contains("x-switchyard-error: request-body-timeout"),
        "{out}"
    );
    assert!(out.contains("connection: close"), "{out}");
    // The stalled request reached the upstream and was aborted there: its connection closed.
    let aborted = tokio::time::timeout(WAIT, async {
        while up.aborted.load(Ordering::SeqCst) == 0 {
            up.aborted_signal.notified().await;
        }
    })
    .await;
    assert!(aborted.is_ok(), "the upstream request was not aborted");

    // The next request needs a new upstream connection: the broken one never went back to
    // the pool.
    let mut c = Client::connect(addr).await;
    let r = c
        .request("POST", "/upload", &[], Bytes::from_static(b"0123456789"))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"10");
    assert_eq!(up.complete.load(Ordering::SeqCst), 1);
    assert_eq!(up.connections.load(Ordering::SeqCst), 2);
}
