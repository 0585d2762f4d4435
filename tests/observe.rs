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

/// A test CA and a leaf for `localhost` it signed, written to `dir` as `leaf.crt`/`leaf.key`.
fn tls_files(dir: &Path) -> rustls::RootCertStore {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("ca");
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    leaf.not_after = rcgen::date_time_ymd(2031, 3, 14);
    let cert = leaf.signed_by(&key, &ca).expect("sign");
    std::fs::write(dir.join("leaf.crt"), cert.pem()).expect("write");
    std::fs::write(dir.join("leaf.key"), key.serialize_pem()).expect("write");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).expect("root");
    roots
}

/// An HTTP/1.1 client over TLS (ALPN `http/1.1`), kept open by the caller.
async fn tls_client(
    addr: SocketAddr,
    roots: rustls::RootCertStore,
) -> hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>> {
    // Either outcome leaves a provider installed (another test may have installed it first).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut cfg = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(
            rustls_pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("http handshake");
    tokio::spawn(conn);
    let req = hyper::Request::get("/")
        .header("host", "localhost")
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("request");
    let r = sender.send_request(req).await.expect("response");
    assert_eq!(r.status(), 200);
    sender
}

#[tokio::test]
async fn connection_tls_certificate_control_and_process_metrics_are_exact() {
    let up = Upstream::start("v1").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let roots = tls_files(dir.path());
    let mut text = config(&[("blue", "v1", 100, vec![up.addr])], "", "");
    text = text.replacen(
        "listeners = [\"public\"]",
        "listeners = [\"public\", \"secure\"]",
        1,
    );
    text = format!(
        "[[listeners]]\nname = \"secure\"\nbind = \"127.0.0.1:0\"\ntls = {{ certs = [{{ cert = \"leaf.crt\", key = \"leaf.key\" }}] }}\n\n{text}"
    );
    let proxy = support::Proxy::start_in(dir, &text);
    let mut plain = Vec::new();
    for _ in 0..2 {
        let mut c = Client::connect(proxy.addr("public")).await;
        assert_eq!(c.get("/").await.status, 200);
        plain.push(c);
    }
    // One HTTP/2 connection with prior knowledge (h2c) on the plain listener.
    let tcp = tokio::net::TcpStream::connect(proxy.addr("public"))
        .await
        .expect("connect");
    let (mut h2, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .expect("h2 handshake");
    let h2_conn = tokio::spawn(conn);
    let req = hyper::Request::get(format!("http://{}/", proxy.addr("public")))
        .body(http_body_util::Full::new(Bytes::new()))
        .expect("request");
    assert_eq!(
        h2.send_request(req).await.expect("h2 response").status(),
        200
    );
    let mut secure = Vec::new();
    for _ in 0..3 {
        secure.push(tls_client(proxy.addr("secure"), roots.clone()).await);
    }
    // Plain text where a TLS handshake is expected: one failed handshake.
    let refused = support::raw_exchange(proxy.addr("secure"), b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(!refused.contains("200"), "{refused}");

    for (path, status) in [
        ("/v1/services", 200),
        ("/v1/services/web", 200),
        ("/v1/services/nope", 404),
        ("/v1/services/nope", 404),
        ("/no/such/route", 404),
    ] {
        let (s, v) = support::api(proxy.control, "GET", path, None, None).await;
        assert_eq!(s, status, "{path}: {v}");
    }

    let (status, m, _) = scrape(proxy.control).await;
    assert_eq!(status, 200, "{m}");
    let at = |s: &str| sample(&m, s);
    assert_eq!(
        at("switchyard_downstream_connections_accepted_total{listener=\"public\"}"),
        Some(3.0)
    );
    assert_eq!(
        at("switchyard_downstream_connections_accepted_total{listener=\"secure\"}"),
        Some(4.0)
    );
    assert_eq!(
        at("switchyard_downstream_connections{listener=\"public\",protocol=\"http1\"}"),
        Some(2.0)
    );
    assert_eq!(
        at("switchyard_downstream_connections{listener=\"secure\",protocol=\"http1\"}"),
        Some(3.0)
    );
    assert_eq!(
        at("switchyard_downstream_connections{listener=\"public\",protocol=\"http2\"}"),
        Some(1.0)
    );
    assert_eq!(
        at("switchyard_downstream_connections{listener=\"secure\",protocol=\"http2\"}"),
        Some(0.0)
    );
    assert_eq!(
        at("switchyard_tls_handshakes_total{listener=\"secure\"}"),
        Some(3.0)
    );
    assert_eq!(
        at("switchyard_tls_handshake_errors_total{listener=\"secure\"}"),
        Some(1.0)
    );
    // A plain listener has no TLS series.
    assert_eq!(
        at("switchyard_tls_handshakes_total{listener=\"public\"}"),
        None
    );
    let route = |r: &str, s: u16| {
        at(&format!(
            "switchyard_control_requests_total{{route=\"{r}\",status=\"{s}\"}}"
        ))
    };
    assert_eq!(route("/v1/services", 200), Some(1.0));
    assert_eq!(route("/v1/services/{service}", 200), Some(1.0));
    assert_eq!(route("/v1/services/{service}", 404), Some(2.0));
    assert_eq!(route("unmatched", 404), Some(1.0));
    assert!(
        !m.contains("route=\"/v1/services/nope\""),
        "raw paths are never labels"
    );
    let not_after = switchyard_certs::inspect(&proxy.dir.path().join("leaf.crt"))
        .expect("inspect")
        .not_after
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs_f64();
    let expiry = at("switchyard_tls_certificate_expiry_seconds{name=\"localhost\"}")
        .expect("certificate expiry");
    assert!(
        (expiry - not_after).abs() < 86_400.0,
        "{expiry} vs {not_after}"
    );
    assert!(
        at("process_resident_memory_bytes").is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert!(at("process_open_fds").is_some_and(|v| v > 0.0), "{m}");
    assert!(at("process_cpu_seconds_total").is_some(), "{m}");
    promtool_check(&m);

    // A closed connection leaves the gauge.
    drop(plain.pop());
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let (_, m, _) = scrape(proxy.control).await;
        let open = sample(
            &m,
            "switchyard_downstream_connections{listener=\"public\",protocol=\"http1\"}",
        );
        if open == Some(1.0) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{open:?}");
        // A poll interval, bounded by the deadline above; the gauge is what is awaited.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop((secure, h2));
    // Closed here: a graceful HTTP/2 shutdown waits for the client's answer to its PING, which
    // a client whose runtime is blocked in `stop` could not give.
    h2_conn.abort();
    // Cancelled, or ended already: either way the connection is closed.
    let _ = h2_conn.await;
    assert!(proxy.stop().success());
}

/// Polls `/metrics` until `name` reads `want` (bounded), and returns the exposition.
async fn wait_sample(control: SocketAddr, name: &str, want: f64) -> String {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let (_, m, _) = scrape(control).await;
        if sample(&m, name) == Some(want) {
            return m;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} never reached {want}:\n{m}"
        );
        // A poll interval, bounded by the deadline above; the sample is what is awaited.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_keep_alive_connection_idle_past_a_second_is_counted_dormant_until_it_closes() {
    let up = Upstream::start("v1").await;
    let text = support::with_control(&config(&[("blue", "v1", 100, vec![up.addr])], "", ""));
    let proxy = support::Proxy::start(&text);
    let dormant = "switchyard_downstream_connections_dormant{listener=\"public\"}";
    let (_, m, _) = scrape(proxy.control).await;
    assert_eq!(sample(&m, dormant), Some(0.0), "{m}");
    let mut c = Client::connect(proxy.addr("public")).await;
    assert_eq!(c.get("/").await.status, 200);
    // Idle past its dormant time (a second): parked, and still an open connection.
    let m = wait_sample(proxy.control, dormant, 1.0).await;
    assert_eq!(
        sample(
            &m,
            "switchyard_downstream_connections{listener=\"public\",protocol=\"http1\"}"
        ),
        Some(1.0),
        "{m}"
    );
    promtool_check(&m);
    // Woken by its next request and served; dormant again a second after, and counted once.
    assert_eq!(c.get("/").await.status, 200);
    let m = wait_sample(proxy.control, dormant, 1.0).await;
    assert_eq!(
        sample(
            &m,
            "switchyard_downstream_connections{listener=\"public\",protocol=\"http1\"}"
        ),
        Some(1.0),
        "{m}"
    );
    // Closed by its client: the lot sees the close and lets it go.
    drop(c);
    wait_sample(proxy.control, dormant, 0.0).await;
    wait_sample(
        proxy.control,
        "switchyard_downstream_connections{listener=\"public\",protocol=\"http1\"}",
        0.0,
    )
    .await;
    assert!(proxy.stop().success());
}

/// A parked connection's facts leave their shared block while it sleeps; the lot closing it
/// at its idle deadline must still take it off the open-connections gauge.
#[tokio::test]
async fn a_dormant_connection_closed_at_its_idle_deadline_leaves_the_open_gauge() {
    let up = Upstream::start("v1").await;
    let text = support::with_control(&config(
        &[("blue", "v1", 100, vec![up.addr])],
        "",
        "[timeouts]\nidle = \"3s\"\n",
    ));
    let proxy = support::Proxy::start(&text);
    let open = "switchyard_downstream_connections{listener=\"public\",protocol=\"http1\"}";
    let dormant = "switchyard_downstream_connections_dormant{listener=\"public\"}";
    let mut c = Client::connect(proxy.addr("public")).await;
    assert_eq!(c.get("/").await.status, 200);
    let m = wait_sample(proxy.control, dormant, 1.0).await;
    assert_eq!(sample(&m, open), Some(1.0), "{m}");
    // The client holds on; only the lot can close it, at the end of its idle time.
    wait_sample(proxy.control, dormant, 0.0).await;
    let m = wait_sample(proxy.control, open, 0.0).await;
    promtool_check(&m);
    drop(c);
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn config_reloads_and_deployments_are_counted_by_result() {
    let blue = Upstream::start("v1").await;
    let green = Upstream::start("v2").await;
    let text = config(&[("blue", "v1", 100, vec![blue.addr])], "", "");
    let proxy = support::Proxy::start(&text);
    let (_, m, _) = scrape(proxy.control).await;
    assert_eq!(
        sample(&m, "switchyard_config_reloads_total{result=\"ok\"}"),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, "switchyard_deployments_total{result=\"succeeded\"}"),
        Some(0.0)
    );
    proxy.signal("HUP");
    wait_sample(
        proxy.control,
        "switchyard_config_reloads_total{result=\"ok\"}",
        1.0,
    )
    .await;
    std::fs::write(&proxy.config_path, "[[listeners]]\nname = 7\n").expect("write");
    proxy.signal("HUP");
    let m = wait_sample(
        proxy.control,
        "switchyard_config_reloads_total{result=\"failed\"}",
        1.0,
    )
    .await;
    assert_eq!(
        sample(&m, "switchyard_config_reloads_total{result=\"ok\"}"),
        Some(1.0)
    );

    // One deployment rolled back by its pre-integration check, then one that succeeds.
    let deploy = |body: serde_json::Value| {
        let control = proxy.control;
        async move {
            let (status, v) = support::api(
                control,
                "POST",
                "/v1/services/web/deployments",
                None,
                Some(&body),
            )
            .await;
            assert_eq!(status, 201, "{v}");
            let id = v["id"].as_u64().expect("id");
            support::wait_json(
                control,
                &format!("/v1/services/web/deployments/{id}"),
                None,
                "the end of the deployment",
                |v| {
                    matches!(
                        v["phase"].as_str(),
                        Some("succeeded" | "rolled_back" | "failed")
                    )
                },
            )
            .await
        }
    };
    let v = deploy(serde_json::json!({"stack": "green", "version": "v2",
        "source": {"endpoints": [green.addr.to_string()]},
        "pre_integration": [{"http": {"path": "/", "expect_status": 418}}]}))
    .await;
    assert_eq!(v["phase"], "rolled_back", "{v:#}");
    let m = wait_sample(
        proxy.control,
        "switchyard_deployment_phase{service=\"web\",phase=\"rolled_back\"}",
        1.0,
    )
    .await;
    assert_eq!(
        sample(&m, "switchyard_deployments_total{result=\"rolled_back\"}"),
        Some(1.0)
    );
    let v = deploy(serde_json::json!({"stack": "green", "version": "v2",
        "source": {"endpoints": [green.addr.to_string()]}}))
    .await;
    assert_eq!(v["phase"], "succeeded", "{v:#}");
    let (_, m, _) = scrape(proxy.control).await;
    let phase = |p: &str| {
        sample(
            &m,
            &format!("switchyard_deployment_phase{{service=\"web\",phase=\"{p}\"}}"),
        )
    };
    assert_eq!(phase("succeeded"), Some(1.0));
    assert_eq!(phase("rolled_back"), Some(0.0));
    assert_eq!(phase("shifting"), Some(0.0));
    assert_eq!(
        sample(&m, "switchyard_deployments_total{result=\"succeeded\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "switchyard_deployments_total{result=\"rolled_back\"}"),
        Some(1.0)
    );
    assert_eq!(
        sample(&m, "switchyard_deployments_total{result=\"failed\"}"),
        Some(0.0)
    );
    promtool_check(&m);
    assert!(proxy.stop().success());
}

#[tokio::test]
async fn each_endpoint_keeps_its_own_figures_across_a_rebuild() {
    let ok = Upstream::start("ok").await;
    let failing = Upstream::start_with("failing", 1.0, Duration::ZERO).await;
    let text = |w: u32| {
        config(
            &[
                ("blue", "v1", w, vec![ok.addr, failing.addr]),
                ("green", "v2", 100 - w, vec![ok.addr]),
            ],
            "health_check = { kind = \"none\" }\noutlier_detection = { enabled = false }\n",
            "",
        )
    };
    let (proxy, addr) = start_proxy(&text(100)).await;
    let plane = switchyard::ProxyPlane::new(proxy.clone(), true).expect("metrics");
    let plane: &dyn DataPlane = &plane;
    let mut c = Client::connect(addr).await;
    let statuses = send_pinned(&mut c, "blue", 10, b"").await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5);
    assert_eq!(statuses.iter().filter(|s| **s == 500).count(), 5);
    // A weight change rebuilds the snapshot; each endpoint keeps its figures.
    let cfg = switchyard_config::parse(&text(50), Path::new("observe.toml")).expect("valid");
    plane.apply(Arc::new(cfg)).await.expect("applied");

    let eps = plane.endpoints("web", "blue");
    let figures = |addr: SocketAddr| {
        let e = eps
            .iter()
            .find(|e| e.address == addr.to_string())
            .expect("endpoint");
        e.detail.as_ref().expect("detail")["figures"].clone()
    };
    let good = figures(ok.addr);
    assert_eq!(good["requests"], 5, "{good}");
    assert_eq!(good["responses"], serde_json::json!([5, 0, 0, 0]), "{good}");
    assert_eq!(good["error_rate"], 0.0);
    let bad = figures(failing.addr);
    assert_eq!(bad["requests"], 5, "{bad}");
    assert_eq!(bad["responses"], serde_json::json!([0, 0, 0, 5]), "{bad}");
    assert_eq!(bad["error_rate"], 1.0);
    assert!(bad["latency"]["p99"].as_f64().is_some(), "{bad}");
    // The stack's own figures are the sum of its endpoints'.
    let blue = plane
        .stack_figures("web", "blue", Window::Last1m)
        .expect("blue");
    assert_eq!((blue.requests, blue.responses), (10, [5, 0, 0, 5]));
    proxy.shutdown().await;
}
