//! End-to-end tests of the data plane through the real `switchyard` binary: routing, weights,
//! pinning, stickiness, header rewriting, protocol coverage, error statuses, refused request
//! shapes and reloads. Real listeners on 127.0.0.1 ephemeral ports and real upstreams.

mod support;

use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;
use support::{BlueGreen, Client, Proxy, Upstream, config, h2c, raw_exchange};

fn count_versions(replies: &[String]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for v in replies {
        *m.entry(v.clone()).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn weighted_split_is_exact_across_concurrent_connections() {
    let bg = BlueGreen::start().await;
    let (blue, green) = (&bg.blue, &bg.green);
    let proxy = Proxy::start(&bg.config(90, 10, "", ""));
    let addr = proxy.addr("public");
    let mut tasks = Vec::new();
    for _ in 0..4 {
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut out = Vec::new();
            for _ in 0..250 {
                let r = c.get("/").await;
                assert_eq!(r.status, 200);
                out.push(r.version());
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("client task"));
    }
    let counts = count_versions(&all);
    let b = counts.get("blue").copied().unwrap_or(0);
    let g = counts.get("green").copied().unwrap_or(0);
    assert_eq!(b + g, 1000);
    // Smooth schedule with one shared cursor: within one percentage point of 90/10.
    assert!((890..=910).contains(&b), "blue got {b} of 1000");
    assert_eq!(blue.requests() + green.requests(), 1000);
}

#[tokio::test]
async fn weight_zero_stack_gets_no_requests_unless_pinned() {
    let bg = BlueGreen::start().await;
    let green = &bg.green;
    let proxy = Proxy::start(&bg.config(100, 0, "", ""));
    let mut c = Client::connect(proxy.addr("public")).await;
    for _ in 0..50 {
        assert_eq!(c.get("/").await.version(), "blue");
    }
    assert_eq!(green.requests(), 0);
    let r = c
        .request("GET", "/", &[("x-switchyard-stack", "green")], Bytes::new())
        .await;
    assert_eq!(r.version(), "green");
    assert_eq!(green.requests(), 1);
    let r = c
        .request(
            "GET",
            "/",
            &[("x-switchyard-stack", "purple")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.error(), Some("unknown-stack"));
}

#[tokio::test]
async fn pinning_header_can_be_renamed_or_disabled() {
    let bg = BlueGreen::start().await;
    let proxy = Proxy::start(&bg.config(100, 0, "pin_header = \"x-qa-stack\"", ""));
    let mut c = Client::connect(proxy.addr("public")).await;
    assert_eq!(
        c.request("GET", "/", &[("x-qa-stack", "green")], Bytes::new())
            .await
            .version(),
        "green"
    );
    assert_eq!(
        c.request("GET", "/", &[("x-switchyard-stack", "green")], Bytes::new())
            .await
            .version(),
        "blue"
    );
    drop(proxy);
    let proxy = Proxy::start(&bg.config(100, 0, "pin_header = \"\"", ""));
    let mut c = Client::connect(proxy.addr("public")).await;
    assert_eq!(
        c.request("GET", "/", &[("x-switchyard-stack", "green")], Bytes::new())
            .await
            .version(),
        "blue"
    );
}

#[tokio::test]
async fn sticky_cookie_keeps_a_user_on_one_stack() {
    let bg = BlueGreen::start().await;
    let proxy = Proxy::start(&bg.config(50, 50, "sticky = { cookie = \"sid\" }", ""));
    let mut c = Client::connect(proxy.addr("public")).await;
    let mut seen = HashMap::new();
    for user in 0..40 {
        let cookie = format!("theme=dark; sid=user-{user}");
        let first = c
            .request("GET", "/", &[("cookie", &cookie)], Bytes::new())
            .await
            .version();
        for _ in 0..5 {
            let again = c
                .request("GET", "/", &[("cookie", &cookie)], Bytes::new())
                .await
                .version();
            assert_eq!(again, first, "user {user} moved between stacks");
        }
        *seen.entry(first).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "40 users all landed on one stack: {seen:?}");
}

#[tokio::test]
async fn routes_by_host_and_longest_prefix() {
    let api = Upstream::start("api").await;
    let api_v2 = Upstream::start("api-v2").await;
    let www = Upstream::start("www").await;
    let wild = Upstream::start("wild").await;
    let text = [
        support::PUBLIC_LISTENER.to_owned(),
        support::service(
            "www",
            "hosts = [\"www.example.test\"]",
            &www.addr.to_string(),
        ),
        support::service(
            "api",
            "hosts = [\"www.example.test\"]\npath_prefix = \"/api\"",
            &api.addr.to_string(),
        ),
        support::service(
            "api-v2",
            "hosts = [\"www.example.test\"]\npath_prefix = \"/api/v2\"",
            &api_v2.addr.to_string(),
        ),
        support::service(
            "wild",
            "hosts = [\"*.apps.example.test\"]",
            &wild.addr.to_string(),
        ),
    ]
    .concat();
    let proxy = Proxy::start(&text);
    let mut c = Client::connect(proxy.addr("public")).await;
    let get = |host: &'static str, path: &'static str| (host, path);
    let cases = [
        (get("www.example.test", "/"), "www"),
        (get("WWW.Example.Test:8080", "/index.html"), "www"),
        (get("www.example.test", "/api"), "api"),
        (get("www.example.test", "/api/users"), "api"),
        (get("www.example.test", "/apix"), "www"),
        (get("www.example.test", "/api/v2/users"), "api-v2"),
        (get("shop.apps.example.test", "/"), "wild"),
    ];
    for ((host, path), want) in cases {
        let r = c
            .request("GET", path, &[("host", host)], Bytes::new())
            .await;
        assert_eq!(r.version(), want, "{host}{path}");
    }
    for host in ["apps.example.test", "other.test"] {
        let r = c.request("GET", "/", &[("host", host)], Bytes::new()).await;
        assert_eq!(r.status, 404, "{host}");
        assert_eq!(r.error(), Some("no-route"));
    }
}

#[tokio::test]
async fn hop_by_hop_headers_are_stripped_and_forwarding_headers_set() {
    let up = Upstream::start("v").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![up.addr])], "", ""));
    let mut c = Client::connect(proxy.addr("public")).await;
    let r = c
        .request(
            "GET",
            "/echo",
            &[
                ("host", "app.example.test"),
                ("connection", "keep-alive, x-secret"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-connection", "keep-alive"),
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("x-request-id", "not well formed"),
                ("x-custom", "kept"),
            ],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);
    let h = &r.json()["headers"];
    for gone in [
        "connection",
        "x-secret",
        "keep-alive",
        "te",
        "proxy-connection",
    ] {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h["host"], "app.example.test");
    assert_eq!(h["x-forwarded-for"], "127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "app.example.test");
    assert_ne!(h["x-request-id"], "not well formed");
    assert_eq!(h["x-request-id"].as_str().map(str::len), Some(32));
    // Responses lose hop-by-hop headers too.
    assert!(r.headers.get("keep-alive").is_none());
}

#[tokio::test]
async fn request_and_response_bodies_stream_through() {
    let up = Upstream::start("v").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![up.addr])], "", ""));
    let mut c = Client::connect(proxy.addr("public")).await;
    let body = Bytes::from(vec![b'x'; 1 << 20]);
    let r = c.request("POST", "/upload", &[], body).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_bytes"], 1 << 20);
    assert_eq!(r.json()["method"], "POST");
}

#[tokio::test]
async fn h2c_with_prior_knowledge_is_served() {
    use http_body_util::{BodyExt, Full};
    let up = Upstream::start("h2-ok").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![up.addr])], "", ""));
    let mut send = h2c(proxy.addr("public")).await;
    for i in 0..3 {
        let req = hyper::Request::builder()
            .uri(format!("http://h2.example.test/stream/{i}"))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let resp = send.send_request(req).await.expect("h2 request");
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(v["version"], "h2-ok");
        assert_eq!(v["host"], "h2.example.test");
        assert_eq!(v["path"], format!("/stream/{i}"));
    }
}

#[tokio::test]
async fn websocket_is_tunnelled_both_ways() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let ws_addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
                    return;
                };
                while let Some(Ok(m)) = ws.next().await {
                    if m.is_text()
                        && ws
                            .send(Message::text(format!("echo:{}", m.to_text().unwrap_or(""))))
                            .await
                            .is_err()
                    {
                        break;
                    }
                }
            });
        }
    });
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![ws_addr])], "", ""));
    let tcp = tokio::net::TcpStream::connect(proxy.addr("public"))
        .await
        .expect("connect");
    let (mut ws, resp) =
        tokio_tungstenite::client_async(format!("ws://{}/chat", proxy.addr("public")), tcp)
            .await
            .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let m = tokio::time::timeout(support::WAIT, ws.next())
            .await
            .expect("reply in time")
            .expect("open")
            .expect("frame");
        assert_eq!(m.to_text().expect("text"), format!("echo:hello {i}"));
    }
}

#[tokio::test]
async fn errors_name_their_cause() {
    // 502: nothing listens on the endpoint.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let slow = Upstream::start_with("slow", 0.0, Duration::from_secs(3)).await;
    let up = Upstream::start("ok").await;
    let text = [
        support::PUBLIC_LISTENER.to_owned(),
        support::service("dead", "hosts = [\"dead.test\"]", &closed.to_string()),
        support::service(
            "slow",
            "hosts = [\"slow.test\"]\ntimeouts = { upstream_response = \"200ms\" }",
            &slow.addr.to_string(),
        ),
        support::service(
            "drained",
            "hosts = [\"drained.test\"]",
            &up.addr.to_string(),
        )
        .replace("weight = 1", "weight = 0"),
    ]
    .concat();
    let proxy = Proxy::start(&text);
    let mut c = Client::connect(proxy.addr("public")).await;
    for (host, status, cause) in [
        ("dead.test", 502, "connect-failed"),
        ("slow.test", 504, "upstream-timeout"),
        ("drained.test", 503, "no-stack"),
        ("nowhere.test", 404, "no-route"),
    ] {
        let r = c.request("GET", "/", &[("host", host)], Bytes::new()).await;
        assert_eq!((r.status, r.error()), (status, Some(cause)), "{host}");
        assert!(String::from_utf8_lossy(&r.body).contains(cause));
    }
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn malformed_and_oversized_requests_never_reach_an_upstream() {
    let up = Upstream::start("v").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![up.addr])], "", ""));
    let addr = proxy.addr("public");
    let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
    let big = format!("x-big: {}\r\n", "a".repeat(70_000));
    let cases: Vec<(&str, String, &str)> = vec![
        ("bad request line", "GARBAGE\r\n\r\n".into(), "400"),
        ("conflicting content-length", "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!".into(), "400"),
        ("bad chunk size", "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".into(), "400"),
        ("te not chunked", "POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: gzip\r\n\r\n".into(), "400"),
        ("too many headers", format!("GET / HTTP/1.1\r\nhost: a\r\n{many}\r\n"), "431"),
        ("header block too large", format!("GET / HTTP/1.1\r\nhost: a\r\n{big}\r\n"), "431"),
    ];
    for (name, req, status) in cases {
        let out = raw_exchange(addr, req.as_bytes()).await;
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: got {out:?}"
        );
    }
    assert_eq!(up.requests(), 0, "a malformed request reached the upstream");
    // Other connections are undisturbed.
    let mut c = Client::connect(addr).await;
    assert_eq!(c.get("/").await.status, 200);
}

#[tokio::test]
async fn content_length_with_transfer_encoding_is_refused_in_either_order() {
    let up = Upstream::start("v").await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![up.addr])], "", ""));
    let addr = proxy.addr("public");
    for head in [
        "POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 4\r\ntransfer-encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nhost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n",
    ] {
        let req = format!("{head}5\r\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nhost: a\r\n\r\n");
        let out = raw_exchange(addr, req.as_bytes()).await;
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        assert!(out.contains("bad-request"), "{out}");
        assert!(!out.contains("/smuggled"), "{out}");
        assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    }
    // The same bodies framed one way only still go through, pipelined on one connection.
    let ok = raw_exchange(
        addr,
        b"POST /a HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nPOST /b HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
    )
    .await;
    assert_eq!(ok.matches("HTTP/1.1 200").count(), 2, "{ok}");
    assert_eq!(
        up.requests(),
        2,
        "only the two well-framed requests reached the upstream"
    );
}

#[tokio::test]
async fn sighup_applies_a_valid_file_and_keeps_serving_on_an_invalid_one() {
    let bg = BlueGreen::start().await;
    let (blue, green) = (&bg.blue, &bg.green);
    let proxy = Proxy::start(&bg.config(100, 0, "", ""));
    let mut c = Client::connect(proxy.addr("public")).await;
    assert_eq!(c.get("/").await.version(), "blue");

    std::fs::write(
        &proxy.config_path,
        support::with_control("[[listeners]]\nname = \"public\"\nbind = 42\n"),
    )
    .expect("write");
    proxy.signal("HUP");
    wait_for_log(&proxy, "configuration reload refused").await;
    assert!(proxy.stderr().contains("bind"), "the error names the field");
    assert_eq!(c.get("/").await.version(), "blue");

    let next = config(
        &[
            ("blue", "v1", 0, vec![blue.addr]),
            ("green", "v2", 100, vec![green.addr]),
        ],
        "",
        "",
    );
    std::fs::write(&proxy.config_path, support::with_control(&next)).expect("write");
    proxy.signal("HUP");
    wait_for_log(&proxy, "configuration reloaded").await;
    assert_eq!(c.get("/").await.version(), "green");
    assert!(proxy.stop().success());
}

async fn wait_for_log(proxy: &Proxy, needle: &str) {
    tokio::time::timeout(support::WAIT, async {
        while !proxy.stderr().contains(needle) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("log never said {needle:?}: {}", proxy.stderr()));
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let slow = Upstream::start_with("slow", 0.0, Duration::from_millis(700)).await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![slow.addr])], "", ""));
    let mut c = Client::connect(proxy.addr("public")).await;
    let inflight = tokio::spawn(async move { c.get("/").await });
    tokio::time::timeout(support::WAIT, async {
        while slow.requests() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("request reached the upstream");
    let status = tokio::task::spawn_blocking(move || proxy.stop())
        .await
        .expect("stop");
    assert!(status.success());
    let r = inflight.await.expect("client");
    assert_eq!(r.status, 200);
    assert_eq!(r.version(), "slow");
}

/// A plain connection that became HTTP/2 (h2c) after it was accepted is told of the drain too:
/// it gets GOAWAY, its stream in flight finishes, and it closes long before the drain deadline
/// (30 s here, above the test's wait), so the process ends without waiting for it.
#[tokio::test]
async fn sigterm_sends_goaway_to_an_h2c_connection_and_lets_its_stream_finish() {
    use http_body_util::{BodyExt, Full};
    let slow = Upstream::start_with("slow", 0.0, Duration::from_millis(700)).await;
    let proxy = Proxy::start(&config(
        &[("blue", "v1", 1, vec![slow.addr])],
        "",
        "[timeouts]\ndrain = \"30s\"\n",
    ));
    let tcp = tokio::net::TcpStream::connect(proxy.addr("public"))
        .await
        .expect("connect");
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req = hyper::Request::builder()
        .uri("http://web.test/")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let inflight = tokio::spawn(send.send_request(req));
    tokio::time::timeout(support::WAIT, async {
        while slow.requests() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("request reached the upstream");
    let stopped = tokio::task::spawn_blocking(move || proxy.stop());
    let resp = inflight
        .await
        .expect("client")
        .expect("the stream in flight is answered");
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(v["version"], "slow");
    let ended = tokio::time::timeout(support::WAIT, conn)
        .await
        .expect("the connection ends before the drain deadline")
        .expect("client connection task");
    assert!(ended.is_ok(), "closed by GOAWAY, not cut: {ended:?}");
    let status = tokio::time::timeout(support::WAIT, stopped)
        .await
        .expect("the process ends without waiting for the deadline")
        .expect("stop");
    assert!(status.success());
}

#[tokio::test]
async fn a_keep_alive_connection_idle_past_a_second_sleeps_wakes_and_closes_with_the_drain() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("v1").await;
    let proxy = Proxy::start_with_env(
        &config(&[("blue", "v1", 1, vec![up.addr])], "", ""),
        &[("RUST_LOG", "info,switchyard_proxy::listener=debug")],
    );
    let mut s = tokio::net::TcpStream::connect(proxy.addr("public"))
        .await
        .expect("connect");
    for round in 1..=2 {
        s.write_all(b"GET / HTTP/1.1\r\nhost: web.test\r\n\r\n")
            .await
            .expect("write");
        let mut out = Vec::new();
        tokio::time::timeout(support::WAIT, async {
            // The demo upstream's JSON answer, with a length.
            while !(out.windows(4).any(|w| w == b"\r\n\r\n") && out.ends_with(b"}")) {
                let mut buf = [0u8; 4096];
                let n = s.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed: {}", String::from_utf8_lossy(&out));
                out.extend_from_slice(&buf[..n]);
            }
        })
        .await
        .expect("an answer");
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 200 "), "round {round}: {text}");
        assert!(text.contains(r#""version":"v1""#), "round {round}: {text}");
        // Past the dormant time (a second): the connection's task ends, and it waits in the
        // listener's lot.
        wait_for_log_count(&proxy, "dormant connection parked", round).await;
    }
    assert_eq!(
        proxy.stderr().matches("dormant connection woken").count(),
        1
    );
    // The drain closes the dormant connection at once, and the process ends.
    let stopped = tokio::task::spawn_blocking(move || proxy.stop());
    let mut rest = Vec::new();
    let read = tokio::time::timeout(support::WAIT, s.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    assert!(stopped.await.expect("stop").success());
}

#[tokio::test]
async fn a_parked_keep_alive_connection_is_closed_at_the_end_of_its_idle_time() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("v1").await;
    let proxy = Proxy::start_with_env(
        &config(
            &[("blue", "v1", 1, vec![up.addr])],
            "",
            "[timeouts]\nidle = \"3s\"\n",
        ),
        &[("RUST_LOG", "info,switchyard_proxy::listener=debug")],
    );
    let mut s = tokio::net::TcpStream::connect(proxy.addr("public"))
        .await
        .expect("connect");
    s.write_all(b"GET / HTTP/1.1\r\nhost: web.test\r\n\r\n")
        .await
        .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(support::WAIT, s.read(&mut buf))
        .await
        .expect("an answer")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    wait_for_log_count(&proxy, "dormant connection parked", 1).await;
    // Parked, its task gone: the lot closes it when its idle time is over.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(support::WAIT, s.read_to_end(&mut rest)).await;
    assert!(matches!(read, Ok(Ok(0))), "{read:?}");
    wait_for_log_count(&proxy, "dormant connection closed: idle", 1).await;
    assert_eq!(
        proxy.stderr().matches("dormant connection woken").count(),
        0
    );
}

async fn wait_for_log_count(proxy: &Proxy, needle: &str, n: usize) {
    tokio::time::timeout(support::WAIT, async {
        while proxy.stderr().matches(needle).count() < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("log never said {needle:?} {n} times: {}", proxy.stderr()));
}

#[test]
fn check_reports_errors_with_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\n[[services]]\nname = \"web\"\nlisteners = [\"public\"]\n[[services.stacks]]\nname = \"blue\"\nweight = -3\nendpoints = [\"127.0.0.1:1\"]\n").expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("{}:10:", path.display())), "{err}");
    assert!(err.contains("services[0].stacks[0].weight"), "{err}");

    std::fs::write(
        &path,
        support::config(
            &[("blue", "v1", 1, vec!["127.0.0.1:1".parse().expect("addr")])],
            "",
            "",
        ),
    )
    .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 listeners, 1 services, 1 stacks"));
}

/// An endpoint answering every request on a connection with `answer` (keep-alive).
async fn fixed_upstream(answer: &'static str) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..i + 4);
                        if tcp.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    match tcp.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn an_endpoints_fields_reach_http1_and_http2_clients_once_less_the_hops_own() {
    use http_body_util::{BodyExt, Full};
    let up = fixed_upstream(
        "HTTP/1.1 200 OK\r\nServer: up\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\
X-Request-Id: theirs\r\nX-Up: 1\r\nx-up: 2\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
    )
    .await;
    let proxy = Proxy::start(&config(&[("blue", "v1", 1, vec![up])], "", ""));
    let addr = proxy.addr("public");

    // HTTP/1.1, twice on one connection: the endpoint's lines as they came, the hop's own
    // left out, and one request id, the proxy's.
    let out = raw_exchange(
        addr,
        b"GET /a HTTP/1.1\r\nHost: a.test\r\n\r\nGET /b HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    let answers: Vec<&str> = out.split("HTTP/1.1 ").filter(|a| !a.is_empty()).collect();
    assert_eq!(answers.len(), 2, "{out}");
    for a in answers {
        let (head, body) = a.split_once("\r\n\r\n").expect("a head");
        assert!(head.starts_with("200 OK\r\n"), "{head}");
        assert_eq!(body, "hello", "{out}");
        let lower = head.to_ascii_lowercase();
        assert!(head.contains("\r\nServer: up\r\n"), "{head}");
        assert!(head.contains("\r\nX-Up: 1\r\nx-up: 2\r\n"), "{head}");
        assert!(head.contains("\r\nContent-Length: 5"), "{head}");
        assert_eq!(lower.matches("x-request-id:").count(), 1, "{head}");
        assert!(!lower.contains("theirs"), "{head}");
        assert!(!lower.contains("keep-alive"), "{head}");
        assert_eq!(lower.matches("content-length:").count(), 1, "{head}");
        assert_eq!(lower.matches("date:").count(), 1, "{head}");
    }

    // HTTP/2 (prior knowledge): the same fields, as hyper's map carries them.
    let mut send = h2c(addr).await;
    let req = hyper::Request::builder()
        .uri("http://a.test/c")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let resp = send.send_request(req).await.expect("h2 request");
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["server"], "up");
    assert_eq!(h["content-type"], "text/plain");
    let ups: Vec<_> = h.get_all("x-up").iter().collect();
    assert_eq!(ups, ["1", "2"]);
    let ids: Vec<_> = h.get_all("x-request-id").iter().collect();
    assert_eq!(ids.len(), 1);
    assert_ne!(ids[0], "theirs");
    assert!(h.get("keep-alive").is_none() && h.get("connection").is_none());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], b"hello");
}
