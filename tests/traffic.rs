//! End-to-end tests of shadow traffic and sticky canaries: real listeners on 127.0.0.1
//! ephemeral ports, real upstreams, the proxy in process (shadow, so the shadow stack's figures
//! are read through the control plane's `DataPlane` trait) or the real binary with weight
//! changes through the control API (sticky).

mod support;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{BlueGreen, Client, Proxy, Upstream, WAIT, api, config, raw_exchange};
use switchyard_config::Window;
use switchyard_control::DataPlane;
use switchyard_proxy::{BoundListener, ProxyHandle, spawn_proxy};

/// One request as the recording upstream saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    path: String,
    shadow: bool,
    body: usize,
}

/// How the recording upstream answers.
const ANSWER_OK: u8 = 0;
const ANSWER_500: u8 = 1;
const ANSWER_HANG: u8 = 2;

/// A real HTTP/1.1 upstream on 127.0.0.1 that records every request it reads (method, path,
/// the shadow mark, body length) and answers 200, 500, or never, as `mode` says.
struct Recorder {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    mode: Arc<AtomicU8>,
    task: tokio::task::JoinHandle<()>,
}

impl Recorder {
    async fn start() -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind recorder");
        let addr = l.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(AtomicU8::new(ANSWER_OK));
        let (s, m) = (seen.clone(), mode.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let (s, m) = (s.clone(), m.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (s, m) = (s.clone(), m.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await?.to_bytes();
                            s.lock().expect("seen lock").push(Seen {
                                method: parts.method.to_string(),
                                path: parts.uri.path().to_owned(),
                                shadow: parts
                                    .headers
                                    .get("x-switchyard-shadow")
                                    .is_some_and(|v| v == "1"),
                                body: body.len(),
                            });
                            let mut resp = hyper::Response::new(Full::new(Bytes::from_static(
                                b"{\"version\":\"green\"}",
                            )));
                            match m.load(Ordering::Relaxed) {
                                ANSWER_500 => {
                                    *resp.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                                }
                                ANSWER_HANG => std::future::pending::<()>().await,
                                _ => {}
                            }
                            Ok::<_, hyper::Error>(resp)
                        }
                    });
                    // A connection ending (the proxy closing it) is not the test's concern.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            seen,
            mode,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }

    /// Waits (bounded by [`WAIT`]) until `n` requests were recorded.
    async fn wait_for(&self, n: usize) -> Vec<Seen> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let seen = self.seen();
            if seen.len() >= n {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "recorder saw {} of {n} requests: {seen:?}",
                seen.len()
            );
            // A poll interval, bounded by the deadline above.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of the sample of `name` whose labels include every one of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

async fn start_proxy(text: &str) -> (ProxyHandle, SocketAddr) {
    let cfg = Arc::new(switchyard_config::parse(text, Path::new("traffic.toml")).expect("valid"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bound = vec![BoundListener {
        name: switchyard_config::Name::new("public").expect("name"),
        listener,
        tls: None,
    }];
    (spawn_proxy(cfg, bound).await.expect("proxy"), addr)
}

/// `(copies, queue full, body too large, incomplete)` of service `web`'s shadow setting.
fn shadow_counts(proxy: &ProxyHandle) -> (u64, u64, u64, u64) {
    let snap = proxy.snapshot();
    let svc = snap.service("web").expect("service web");
    svc.shadow().expect("web mirrors traffic").1.counts()
}

/// Waits until no shadow copy of `web` is in flight any more.
async fn wait_copies_settled(proxy: &ProxyHandle) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let snap = proxy.snapshot();
        let svc = snap.service("web").expect("service web");
        if svc.shadow().expect("shadow").1.in_flight() == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "shadow copies still in flight"
        );
        // A poll interval, bounded by the deadline above.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn shadow_config(blue: &Upstream, green: &Recorder, shadow: &str, extra_service: &str) -> String {
    config(
        &[
            ("blue", "v1", 100, vec![blue.addr]),
            ("green", "v2", 0, vec![green.addr]),
        ],
        &format!("shadow = {shadow}\nhealth_check = {{ kind = \"none\" }}\n{extra_service}"),
        "",
    )
}

#[tokio::test]
async fn shadow_copies_reach_the_shadow_stack_and_clients_see_only_the_live_answer() {
    let blue = Upstream::start("blue").await;
    let green = Recorder::start().await;
    let text = shadow_config(
        &blue,
        &green,
        "{ stack = \"green\", percent = 100, methods = [\"GET\", \"PUT\"], max_body = \"1KiB\" }",
        "",
    );
    let (proxy, addr) = start_proxy(&text).await;
    let plane = switchyard::ProxyPlane::new(proxy.clone(), true).expect("metrics");
    let plane: &dyn DataPlane = &plane;
    let mut c = Client::connect(addr).await;

    for i in 0..20 {
        let r = c.get(&format!("/get/{i}")).await;
        assert_eq!((r.status, r.version()), (200, "blue".to_owned()));
    }
    // A mirrored method with a body under the bound: copied with its body.
    let r = c
        .request("PUT", "/put-small", &[], Bytes::from(vec![b'x'; 100]))
        .await;
    assert_eq!((r.status, r.version()), (200, "blue".to_owned()));
    // A method not mirrored, and bodies over the bound, declared or chunked: not copied.
    let r = c
        .request("POST", "/post", &[], Bytes::from_static(b"hello"))
        .await;
    assert_eq!((r.status, r.version()), (200, "blue".to_owned()));
    let r = c
        .request("PUT", "/put-big", &[], Bytes::from(vec![b'x'; 2048]))
        .await;
    assert_eq!((r.status, r.version()), (200, "blue".to_owned()));
    // Eight chunks of 256 bytes: no length up front, the copy is given up as it passes 1 KiB.
    let chunk = format!("100\r\n{}\r\n", "y".repeat(256));
    let chunked = format!(
        "PUT /put-chunked HTTP/1.1\r\nhost: {addr}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n{}0\r\n\r\n",
        chunk.repeat(8)
    );
    let answer = raw_exchange(addr, chunked.as_bytes()).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("\"blue\""),
        "{answer}"
    );
    // A request pinned to the shadow stack is live traffic for it, not copied again.
    let r = c
        .request(
            "GET",
            "/pinned",
            &[("x-switchyard-stack", "green")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, 200);

    green.wait_for(22).await;
    wait_copies_settled(&proxy).await;
    let mut seen = green.seen();
    seen.sort_by(|a, b| a.path.cmp(&b.path));
    let mut expected: Vec<Seen> = (0..20)
        .map(|i| Seen {
            method: "GET".into(),
            path: format!("/get/{i}"),
            shadow: true,
            body: 0,
        })
        .collect();
    expected.push(Seen {
        method: "GET".into(),
        path: "/pinned".into(),
        shadow: false,
        body: 0,
    });
    expected.push(Seen {
        method: "PUT".into(),
        path: "/put-small".into(),
        shadow: true,
        body: 100,
    });
    expected.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(seen, expected);
    // Blue answered every client request but the pinned one; green only copies and that one.
    assert_eq!(blue.requests(), 24);
    assert_eq!(shadow_counts(&proxy), (21, 0, 2, 0));

    let figures = plane
        .stack_figures("web", "green", Window::Last1m)
        .expect("green figures");
    assert_eq!(figures.requests, 22, "{figures:?}");
    assert_eq!(figures.responses, [22, 0, 0, 0]);
    assert_eq!(figures.bytes_in, 100);
    assert!(figures.latency.p99.is_some());
    let m = plane.metrics().expect("metrics on");
    let dropped = |reason| {
        metric(
            &m,
            "switchyard_shadow_dropped_total",
            &[("service", "web"), ("reason", reason)],
        )
    };
    let copies = metric(
        &m,
        "switchyard_shadow_copies_total",
        &[("service", "web"), ("stack", "green")],
    );
    assert_eq!(copies, Some(21.0), "{m}");
    assert_eq!(dropped("body_too_large"), Some(2.0), "{m}");
    assert_eq!(dropped("queue_full"), Some(0.0), "{m}");
}

#[tokio::test]
async fn a_failing_or_hanging_shadow_stack_changes_no_client_answer() {
    let blue = Upstream::start("blue").await;
    let green = Recorder::start().await;
    let text = shadow_config(
        &blue,
        &green,
        "{ stack = \"green\", percent = 100 }",
        "timeouts = { upstream_response = \"1m\" }",
    );
    let (proxy, addr) = start_proxy(&text).await;
    let plane = switchyard::ProxyPlane::new(proxy.clone(), true).expect("metrics");
    let plane: &dyn DataPlane = &plane;
    let mut c = Client::connect(addr).await;

    green.mode.store(ANSWER_500, Ordering::Relaxed);
    for _ in 0..10 {
        let r = tokio::time::timeout(WAIT, c.get("/"))
            .await
            .expect("answered");
        assert_eq!((r.status, r.version()), (200, "blue".to_owned()));
    }
    green.wait_for(10).await;
    wait_copies_settled(&proxy).await;
    let figures = plane
        .stack_figures("web", "green", Window::Last1m)
        .expect("green figures");
    assert_eq!((figures.requests, figures.responses), (10, [0, 0, 0, 10]));
    assert_eq!(figures.error_rate, 1.0);
    let live = plane
        .stack_figures("web", "blue", Window::Last1m)
        .expect("blue figures");
    assert_eq!((live.requests, live.error_rate), (10, 0.0));

    // Green now never answers: every copy holds its place among the copies in flight (the
    // response timeout is a minute), the first SHADOW_IN_FLIGHT are sent, the rest dropped and
    // counted, and every client still gets blue's answer.
    green.mode.store(ANSWER_HANG, Ordering::Relaxed);
    let n = switchyard_proxy::SHADOW_IN_FLIGHT + 5;
    for _ in 0..n {
        let r = tokio::time::timeout(WAIT, c.get("/"))
            .await
            .expect("answered while the shadow stack hangs");
        assert_eq!((r.status, r.version()), (200, "blue".to_owned()));
    }
    let (copies, full, too_large, incomplete) = shadow_counts(&proxy);
    assert_eq!(
        (copies, full, too_large, incomplete),
        (10 + switchyard_proxy::SHADOW_IN_FLIGHT, 5, 0, 0)
    );
    assert_eq!(blue.requests(), 10 + n);
    let m = plane.metrics().expect("metrics on");
    assert_eq!(
        metric(
            &m,
            "switchyard_shadow_dropped_total",
            &[("service", "web"), ("reason", "queue_full")],
        ),
        Some(5.0),
        "{m}"
    );
}

/// The stack a sticky key lands on at weights `blue`/`green`, as the proxy computes it
/// (weighted rendezvous hashing of the key and the stack names).
fn expected_stack(key: &str, blue: u32, green: u32) -> &'static str {
    let stacks = [
        (switchyard_proxy::stable_hash(b"blue"), blue),
        (switchyard_proxy::stable_hash(b"green"), green),
    ];
    let key = switchyard_proxy::stable_hash(key.as_bytes());
    match switchyard_proxy::sticky_pick(key, &stacks, |&s| s, |_, _| true) {
        Some(0) => "blue",
        Some(_) => "green",
        None => "",
    }
}

async fn versions(c: &mut Client, keys: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        out.push(
            c.request("GET", "/", &[("x-user", k)], Bytes::new())
                .await
                .version(),
        );
    }
    out
}

#[tokio::test]
async fn sticky_users_only_move_onto_a_growing_canary_and_a_rollback_puts_them_back() {
    let bg = BlueGreen::start().await;
    let text = bg.config(95, 5, "sticky = { header = \"x-user\" }", "");
    let proxy = Proxy::start(&text);
    let mut web = Client::connect(proxy.addr("public")).await;
    let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();

    let first = versions(&mut web, &keys).await;
    let mut before = first.clone();
    let mut shares = Vec::new();
    for green in [5u32, 25, 50, 100] {
        let (s, _) = api(
            proxy.control,
            "PUT",
            "/v1/services/web/weights",
            None,
            Some(&json!({"weights": {"blue": 100 - green, "green": green}})),
        )
        .await;
        assert_eq!(s, 200);
        let now = versions(&mut web, &keys).await;
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(now[i], expected_stack(k, 100 - green, green), "{k}");
            assert!(
                !(before[i] == "green" && now[i] == "blue"),
                "{k} moved back from the canary at {green}"
            );
        }
        shares.push(now.iter().filter(|v| *v == "green").count());
        before = now;
    }
    assert_eq!(shares[3], keys.len(), "{shares:?}");
    assert!(shares.windows(2).all(|w| w[0] < w[1]), "{shares:?}");

    // Rollback: the first weights again put every user where they were.
    let (s, _) = api(
        proxy.control,
        "PUT",
        "/v1/services/web/weights",
        None,
        Some(&json!({"weights": {"blue": 95, "green": 5}})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(versions(&mut web, &keys).await, first);

    // Another instance with the same configuration puts every user on the same stack.
    let other = Proxy::start(&text);
    let mut web2 = Client::connect(other.addr("public")).await;
    assert_eq!(versions(&mut web2, &keys).await, first);
    let counts: HashMap<&str, usize> = first.iter().fold(HashMap::new(), |mut m, v| {
        *m.entry(v.as_str()).or_default() += 1;
        m
    });
    assert!(counts.get("blue").copied().unwrap_or(0) > 0, "{counts:?}");
}
