//! End-to-end tests of the JSON access log through the real binary: one line per request that
//! matches what the client got, drops counted instead of blocking when the writer is stuck,
//! and a reopen on SIGUSR1 after log rotation.

mod support;

use bytes::Bytes;
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use support::{Client, Proxy, Upstream, WAIT, config};

/// The lines of `path` once it has at least `n` complete ones (bounded by [`WAIT`]).
async fn lines_at_least(path: &Path, n: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text
            .split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| l.trim_end().to_owned())
            .collect();
        if lines.len() >= n {
            return lines;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} has {} lines, expected {n}: {text}",
            path.display(),
            lines.len()
        );
        // A poll interval, bounded by the deadline above; the line count is what is awaited.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// An address nothing listens on: bound, then released.
async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

/// What a client saw of one request.
struct Sent {
    stack: &'static str,
    status: u16,
    body_len: usize,
}

#[tokio::test]
async fn access_log_lines_match_the_requests_one_for_one() {
    let ok = Upstream::start("ok").await;
    let failing = Upstream::start_with("failing", 1.0, Duration::ZERO).await;
    let dead = dead_addr().await;
    let text = config(
        &[
            ("blue", "v1", 100, vec![ok.addr]),
            ("green", "v2", 0, vec![failing.addr]),
            ("dead", "v3", 0, vec![dead]),
        ],
        "",
        "[access_log]\npath = \"access.log\"\n",
    );
    let proxy = Proxy::start(&text);
    let mut c = Client::connect(proxy.addr("public")).await;
    let mut sent: HashMap<String, Sent> = HashMap::new();
    let plan: [(&str, usize, u16, &[u8]); 4] = [
        ("blue", 5, 200, b"abc"),
        ("green", 3, 500, b""),
        ("dead", 2, 502, b""),
        ("nope", 1, 400, b""),
    ];
    for (stack, n, status, body) in plan {
        for i in 0..n {
            let own_id = format!("client-{stack}-{i}");
            let mut headers = vec![("x-switchyard-stack", stack)];
            // Every other request brings its own id; the rest get a generated one.
            if i % 2 == 0 {
                headers.push(("x-request-id", &own_id));
            }
            let r = c
                .request("POST", "/some/path?q=1", &headers, Bytes::from_static(body))
                .await;
            assert_eq!(r.status, status, "{stack}");
            let id = r.headers["x-request-id"]
                .to_str()
                .expect("ascii id")
                .to_owned();
            if i % 2 == 0 {
                assert_eq!(id, own_id);
            }
            sent.insert(
                id,
                Sent {
                    stack,
                    status,
                    body_len: r.body.len(),
                },
            );
        }
    }
    let path = proxy.dir.path().join("access.log");
    let lines = lines_at_least(&path, sent.len()).await;
    assert_eq!(lines.len(), sent.len(), "{lines:#?}");
    let mut seen = std::collections::HashSet::new();
    for line in &lines {
        let v = parse(line);
        for key in [
            "ts",
            "listener",
            "service",
            "stack",
            "endpoint",
            "method",
            "path",
            "status",
            "duration_ms",
            "upstream_ms",
            "bytes_in",
            "bytes_out",
            "request_id",
            "client",
            "error",
        ] {
            assert!(v.get(key).is_some(), "no {key} in {line}");
        }
        let id = v["request_id"].as_str().expect("request_id");
        assert!(seen.insert(id.to_owned()), "two lines for {id}");
        let s = sent
            .get(id)
            .unwrap_or_else(|| panic!("no request had id {id}: {line}"));
        assert_eq!(v["status"], s.status, "{line}");
        assert_eq!(v["listener"], "public");
        assert_eq!(v["service"], "web");
        if s.stack != "nope" {
            assert_eq!(v["stack"], s.stack, "{line}");
        }
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/some/path", "the query is not logged: {line}");
        assert_eq!(v["bytes_out"], s.body_len as u64, "{line}");
        assert!(v["duration_ms"].as_f64().is_some_and(|d| d >= 0.0));
        let ts = v["ts"].as_str().expect("ts");
        assert!(
            ts.len() == 24 && ts.ends_with('Z') && ts.as_bytes()[10] == b'T',
            "RFC 3339 UTC with milliseconds: {ts}"
        );
        assert!(
            v["client"]
                .as_str()
                .is_some_and(|c| c.starts_with("127.0.0.1:")),
            "{line}"
        );
        match s.stack {
            "blue" => {
                assert_eq!(v["error"], Value::Null);
                assert_eq!(v["endpoint"], ok.addr.to_string());
                assert_eq!(v["bytes_in"], 3);
                assert!(v["upstream_ms"].as_f64().is_some(), "{line}");
            }
            "green" => {
                // The endpoint's own 500: not a proxy error.
                assert_eq!(v["error"], Value::Null);
                assert_eq!(v["endpoint"], failing.addr.to_string());
            }
            "dead" => {
                assert_eq!(v["error"], "connect-failed");
                assert_eq!(v["endpoint"], dead.to_string());
            }
            _ => {
                assert_eq!(v["error"], "unknown-stack");
                assert_eq!(v["stack"], Value::Null);
                assert_eq!(v["endpoint"], Value::Null);
                assert_eq!(v["upstream_ms"], Value::Null);
            }
        }
    }
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn a_blocked_access_log_writer_drops_and_counts_instead_of_blocking_requests() {
    let up = Upstream::start("v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A FIFO nobody reads: opening it for writing blocks the writer for good.
    let fifo = dir.path().join("access.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let text = config(
        &[("blue", "v1", 100, vec![up.addr])],
        "",
        "[access_log]\npath = \"access.fifo\"\nbuffer = 4\n",
    );
    let proxy = Proxy::start_in(dir, &text);
    let mut c = Client::connect(proxy.addr("public")).await;
    const N: u64 = 50;
    for _ in 0..N {
        let r = tokio::time::timeout(WAIT, c.get("/"))
            .await
            .expect("a request waited on the access log");
        assert_eq!(r.status, 200);
    }
    let mut m = Client::connect(proxy.control).await;
    let r = m.get("/metrics").await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    let dropped = text
        .lines()
        .find_map(|l| l.strip_prefix("switchyard_access_log_dropped_total "))
        .and_then(|v| v.parse::<f64>().ok());
    // The writer never took a line: the buffer holds 4, every other one was dropped.
    assert_eq!(dropped, Some((N - 4) as f64), "{text}");
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn sigusr1_reopens_the_access_log_after_rotation() {
    let up = Upstream::start("v1").await;
    let text = config(
        &[("blue", "v1", 100, vec![up.addr])],
        "",
        "[access_log]\npath = \"access.log\"\n",
    );
    let proxy = Proxy::start(&text);
    let mut c = Client::connect(proxy.addr("public")).await;
    let send = |tag: &str| format!("/{tag}");
    for i in 0..3 {
        assert_eq!(c.get(&send(&format!("before-{i}"))).await.status, 200);
    }
    let live = proxy.dir.path().join("access.log");
    let rotated = proxy.dir.path().join("access.log.1");
    lines_at_least(&live, 3).await;
    std::fs::rename(&live, &rotated).expect("rotate");
    // Until the reopen, lines still go to the renamed file.
    for i in 0..2 {
        assert_eq!(c.get(&send(&format!("between-{i}"))).await.status, 200);
    }
    lines_at_least(&rotated, 5).await;
    proxy.signal("USR1");
    let deadline = tokio::time::Instant::now() + WAIT;
    while !live.exists() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no new access log after SIGUSR1: {}",
            proxy.stderr()
        );
        // A poll interval, bounded by the deadline above; the new file is what is awaited.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..4 {
        assert_eq!(c.get(&send(&format!("after-{i}"))).await.status, 200);
    }
    let new = lines_at_least(&live, 4).await;
    assert_eq!(new.len(), 4);
    assert!(new.iter().all(|l| {
        parse(l)["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/after-"))
    }));
    let old = lines_at_least(&rotated, 5).await;
    assert_eq!(old.len(), 5);
    assert!(old.iter().all(|l| {
        !parse(l)["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/after-"))
    }));
    assert!(proxy.stop().success());
}

/// An endpoint that answers after 5 s, and a proxy logging to `access.log` in front of it.
async fn slow_and_logged() -> (Upstream, Proxy) {
    let slow = Upstream::start_with("slow", 0.0, Duration::from_secs(5)).await;
    let text = config(
        &[("blue", "v1", 100, vec![slow.addr])],
        "",
        "[access_log]\npath = \"access.log\"\n",
    );
    let proxy = Proxy::start(&text);
    (slow, proxy)
}

/// The one line logged: request `id` on `path`, abandoned (499) before the endpoint answered.
async fn logged_abandoned(proxy: &Proxy, id: &str, path: &str) {
    let lines = lines_at_least(&proxy.dir.path().join("access.log"), 1).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v = parse(&lines[0]);
    assert_eq!(v["request_id"], id);
    assert_eq!(v["status"], 499, "{v}");
    assert_eq!(v["path"], path);
    assert_eq!(v["stack"], "blue");
    assert!(
        v["duration_ms"].as_f64().is_some_and(|d| d < 5000.0),
        "logged when the client left, not when the endpoint answered: {v}"
    );
}

#[tokio::test]
async fn a_request_the_client_abandons_is_logged_with_status_499() {
    use tokio::io::AsyncWriteExt;
    let (slow, proxy) = slow_and_logged().await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr("public"))
        .await
        .expect("connect");
    tcp.write_all(b"GET /abandoned HTTP/1.1\r\nhost: web\r\nx-request-id: gave-up\r\n\r\n")
        .await
        .expect("write");
    // Wait (bounded) until the endpoint has the request, then give up on it.
    let deadline = tokio::time::Instant::now() + WAIT;
    while slow.requests() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never forwarded");
        // A poll interval, bounded by the deadline above; the upstream's count is awaited.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(tcp);
    logged_abandoned(&proxy, "gave-up", "/abandoned").await;
    assert!(proxy.stop().success());
}

/// An HTTP/2 stream the client resets is logged at once with 499, as an abandoned HTTP/1
/// request is: the reset drops the stream's request (and its upstream exchange), and the
/// connection goes on.
#[tokio::test]
async fn an_http2_stream_the_client_resets_is_logged_with_status_499() {
    use http_body_util::Full;
    let (slow, proxy) = slow_and_logged().await;
    let mut send = support::h2c(proxy.addr("public")).await;
    let req = hyper::Request::builder()
        .uri("http://web/abandoned-h2")
        .header("x-request-id", "reset-stream")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let answer = send.send_request(req);
    let waited = tokio::time::timeout(WAIT, async {
        let mut answer = std::pin::pin!(answer);
        while slow.requests() == 0 {
            // The request goes out as the answer's future is polled.
            let _ = tokio::time::timeout(Duration::from_millis(10), answer.as_mut()).await;
        }
        // Dropped here: the client resets the stream (CANCEL).
    })
    .await;
    assert!(waited.is_ok(), "never forwarded");
    logged_abandoned(&proxy, "reset-stream", "/abandoned-h2").await;
    // Off the test's thread: the client's connection must go on answering (the drain's GOAWAY
    // waits for the client's answer to its PING).
    let stopped = tokio::task::spawn_blocking(move || proxy.stop());
    assert!(stopped.await.expect("stop").success());
    drop(send);
}
