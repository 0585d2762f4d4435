//! End-to-end tests of observability: per-stack figures read through the control plane's
//! `DataPlane` trait over a real proxy, the Prometheus `/metrics` endpoint of the real binary,
//! request ids and the access log. Real listeners on 127.0.0.1 ephemeral ports, real upstreams.

mod support;

use bytes::Bytes;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use support::{Client, Upstream, config};
use switchyard_config::Window;
use switchyard_control::DataPlane;
use switchyard_proxy::{BoundListener, ProxyHandle, spawn_proxy};

/// An address nothing listens on: bound, then released.
async fn dead_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    l.local_addr().expect("addr")
}

async fn start_proxy(text: &str) -> (ProxyHandle, SocketAddr) {
    let cfg = Arc::new(switchyard_config::parse(text, Path::new("observe.toml")).expect("valid"));
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

/// Sends `n` requests pinned to `stack` and returns their statuses.
async fn send_pinned(c: &mut Client, stack: &str, n: usize, body: &'static [u8]) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        let r = c
            .request(
                "POST",
                "/x",
                &[("x-switchyard-stack", stack)],
                Bytes::from_static(body),
            )
            .await;
        out.push(r.status);
    }
    out
}

#[tokio::test]
async fn stack_figures_through_the_data_plane_match_the_requests_sent() {
    let slow = Upstream::start_with("slow", 0.0, Duration::from_millis(40)).await;
    let failing = Upstream::start_with("failing", 1.0, Duration::ZERO).await;
    let dead = dead_addr().await;
    let text = |w: u32| {
        config(
            &[
                ("blue", "v1", w, vec![slow.addr]),
                ("green", "v2", 100 - w, vec![failing.addr]),
                ("dead", "v3", 0, vec![dead]),
            ],
            "",
            "",
        )
    };
    let (proxy, addr) = start_proxy(&text(100)).await;
    let plane = switchyard::ProxyPlane::new(proxy.clone(), true).expect("metrics");
    let plane: &dyn DataPlane = &plane;
    let mut c = Client::connect(addr).await;
    assert!(
        send_pinned(&mut c, "blue", 20, b"12345")
            .await
            .iter()
            .all(|s| *s == 200)
    );
    assert!(
        send_pinned(&mut c, "green", 10, b"")
            .await
            .iter()
            .all(|s| *s == 500)
    );
    assert!(
        send_pinned(&mut c, "dead", 5, b"")
            .await
            .iter()
            .all(|s| *s == 502)
    );

    // A weight change rebuilds the snapshot; the figures carry over.
    let cfg = switchyard_config::parse(&text(50), Path::new("observe.toml")).expect("valid");
    plane.apply(Arc::new(cfg)).await.expect("applied");

    let blue = plane
        .stack_figures("web", "blue", Window::Last10s)
        .expect("blue figures");
    assert_eq!(blue.requests, 20);
    assert_eq!(blue.responses, [20, 0, 0, 0]);
    assert_eq!(blue.error_rate, 0.0);
    assert_eq!(blue.bytes_in, 100);
    assert!(blue.bytes_out > 0);
    assert!(blue.request_rate > 0.0);
    // Every request waited at least the upstream's injected 40 ms.
    let p50 = blue.latency.p50.expect("p50");
    let p99 = blue.latency.p99.expect("p99");
    assert!(p50 >= 0.040 && p99 >= p50, "{:?}", blue.latency);
    assert!(blue.headers_latency.p99.expect("p99") >= 0.040);

    let green = plane
        .stack_figures("web", "green", Window::Last1m)
        .expect("green figures");
    assert_eq!((green.requests, green.responses), (10, [0, 0, 0, 10]));
    assert_eq!(green.error_rate, 1.0);

    let dead = plane
        .stack_figures("web", "dead", Window::Last5m)
        .expect("dead figures");
    assert_eq!(dead.requests, 5);
    assert_eq!(dead.responses, [0, 0, 0, 0]);
    assert_eq!(
        dead.proxy_errors.get("connect-failed").copied(),
        Some(5),
        "{:?}",
        dead.proxy_errors
    );
    assert_eq!(dead.error_rate, 1.0);

    assert!(
        plane
            .stack_figures("web", "nope", Window::Last10s)
            .is_none()
    );
    assert!(
        plane
            .stack_figures("nope", "blue", Window::Last10s)
            .is_none()
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn request_ids_pass_through_when_well_formed_and_are_random_otherwise() {
    let up = Upstream::start("v1").await;
    let (proxy, addr) = start_proxy(&config(&[("blue", "v1", 100, vec![up.addr])], "", "")).await;
    let mut c = Client::connect(addr).await;
    let r = c
        .request(
            "GET",
            "/",
            &[("x-request-id", "trace-42.abc")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.json()["headers"]["x-request-id"], "trace-42.abc");
    assert_eq!(r.headers["x-request-id"], "trace-42.abc");

    let mut seen = std::collections::HashSet::new();
    for sent in [None, Some("has space"), Some(&*"x".repeat(129))] {
        let headers: Vec<(&str, &str)> = sent.map(|v| ("x-request-id", v)).into_iter().collect();
        let r = c.request("GET", "/", &headers, Bytes::new()).await;
        let upstream = r.json()["headers"]["x-request-id"]
            .as_str()
            .expect("id sent upstream")
            .to_owned();
        assert_eq!(r.headers["x-request-id"], upstream.as_str());
        assert_eq!(upstream.len(), 32);
        assert!(upstream.bytes().all(|b| b.is_ascii_hexdigit()));
        seen.insert(upstream[..16].to_owned());
    }
    // No fixed half: every id differs in its first 64 bits.
    assert_eq!(seen.len(), 3);
    // Proxy-generated answers carry an id too.
    let r = c
        .request("GET", "/", &[("x-switchyard-stack", "nope")], Bytes::new())
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.headers["x-request-id"].len(), 32);
    proxy.shutdown().await;
}

/// The value of the sample `name{labels}` in a Prometheus text exposition (labels exactly as
/// rendered, in order).
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .parse()
            .ok()
    })
}

/// `promtool check metrics` over the exposition: required in CI, skipped with a reason elsewhere.
fn promtool_check(text: &str) {
    use std::io::Write;
    let Ok(mut child) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
    else {
        assert!(
            std::env::var("CI").is_err(),
            "promtool is required in CI (.ci/run installs Debian's prometheus package)"
        );
        eprintln!("skipping promtool check: promtool is not installed");
        return;
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool ran");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn scrape(control: SocketAddr) -> (u16, String, Option<String>) {
    let mut c = Client::connect(control).await;
    let r = c.get("/metrics").await;
    let kind = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (
        r.status,
        String::from_utf8_lossy(&r.body).into_owned(),
        kind,
    )
}

#[tokio::test]
async fn metrics_count_requests_errors_and_latencies_exactly() {
    let ok = Upstream::start("ok").await;
    let failing = Upstream::start_with("failing", 1.0, Duration::ZERO).await;
    let dead = dead_addr().await;
    let text = support::with_control(&config(
        &[
            ("blue", "v1", 100, vec![ok.addr]),
            ("green", "v2", 0, vec![failing.addr]),
            ("dead", "v3", 0, vec![dead]),
        ],
        "",
        "",
    ));
    let proxy = support::Proxy::start(&text);
    let mut c = Client::connect(proxy.addr("public")).await;
    assert!(
        send_pinned(&mut c, "blue", 7, b"abc")
            .await
            .iter()
            .all(|s| *s == 200)
    );
    assert!(
        send_pinned(&mut c, "green", 4, b"")
            .await
            .iter()
            .all(|s| *s == 500)
    );
    assert!(
        send_pinned(&mut c, "dead", 3, b"")
            .await
            .iter()
            .all(|s| *s == 502)
    );

    // No token needed, as Prometheus scrapers expect.
    let (status, m, kind) = scrape(proxy.control).await;
    assert_eq!(status, 200, "{m}");
    assert!(kind.is_some_and(|k| k.starts_with("text/plain; version=0.0.4")));
    let req = |stack: &str, class: &str| {
        sample(
            &m,
            &format!(
                "switchyard_requests_total{{listener=\"public\",service=\"web\",stack=\"{stack}\",code_class=\"{class}\"}}"
            ),
        )
    };
    assert_eq!(req("blue", "2xx"), Some(7.0));
    assert_eq!(req("blue", "5xx"), None);
    assert_eq!(req("green", "5xx"), Some(4.0));
    assert_eq!(req("dead", "5xx"), Some(3.0));
    let ss = |name: &str, stack: &str| {
        sample(&m, &format!("{name}{{service=\"web\",stack=\"{stack}\"}}"))
    };
    assert_eq!(
        ss("switchyard_request_duration_seconds_count", "blue"),
        Some(7.0)
    );
    assert_eq!(
        ss("switchyard_request_duration_seconds_count", "green"),
        Some(4.0)
    );
    assert_eq!(
        ss("switchyard_request_duration_seconds_count", "dead"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            "switchyard_request_duration_seconds_bucket{service=\"web\",stack=\"blue\",le=\"+Inf\"}"
        ),
        Some(7.0)
    );
    assert_eq!(ss("switchyard_request_bytes_total", "blue"), Some(21.0));
    assert!(ss("switchyard_response_bytes_total", "blue").is_some_and(|b| b > 0.0));
    // One connection to each reachable endpoint (the client kept one connection alive).
    assert_eq!(
        ss("switchyard_upstream_connect_duration_seconds_count", "blue"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "switchyard_proxy_errors_total{service=\"web\",stack=\"dead\",cause=\"connect-failed\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &m,
            "switchyard_stack_weight{service=\"web\",stack=\"blue\",version=\"v1\"}"
        ),
        Some(100.0)
    );
    let ep = format!(
        "switchyard_endpoint_healthy{{service=\"web\",stack=\"blue\",endpoint=\"{}\"}}",
        ok.addr
    );
    assert_eq!(sample(&m, &ep), Some(1.0));
    assert_eq!(
        sample(&m, "switchyard_routing_snapshot_generation"),
        Some(1.0)
    );
    promtool_check(&m);
    proxy.stop();
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let up = Upstream::start("v1").await;
    let text = support::with_control(&config(
        &[("blue", "v1", 100, vec![up.addr])],
        "",
        "[metrics]\nenabled = false\n",
    ));
    let proxy = support::Proxy::start(&text);
    let (status, body, _) = scrape(proxy.control).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not_found"), "{body}");
    proxy.stop();
}

/// Starts the binary with `SWITCHYARD_LOG_FORMAT` (the `--log-format` flag's variable), makes it
/// log (a weight change logs "generation applied"), and returns its stderr.
async fn log_of(format: &str) -> String {
    let up = Upstream::start("v1").await;
    let text = config(
        &[
            ("blue", "v1", 100, vec![up.addr]),
            ("green", "v2", 0, vec![up.addr]),
        ],
        "",
        "",
    );
    let proxy = support::Proxy::start_with_env(&text, &[("SWITCHYARD_LOG_FORMAT", format)]);
    let body = serde_json::json!({"weights": {"blue": 50, "green": 50}});
    let (status, v) = support::api(
        proxy.control,
        "PUT",
        "/v1/services/web/weights",
        None,
        Some(&body),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let dir = proxy.kill9();
    std::fs::read_to_string(dir.path().join("stderr.log")).expect("stderr")
}

#[tokio::test]
async fn log_format_json_writes_one_object_per_line_and_text_has_no_colours_off_a_terminal() {
    let json = log_of("json").await;
    let lines: Vec<serde_json::Value> = json
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "generation applied"),
        "{json}"
    );
    let text = log_of("text").await;
    assert!(text.contains("generation applied"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escapes on a non-terminal: {text:?}"
    );
}
