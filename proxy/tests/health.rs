//! Active health checks end to end: real upstreams whose `/health` the test drives, the real
//! proxy, real requests.

mod support;

use std::net::SocketAddr;
use support::{Client, HealthMode, LISTENER, Proxy, Upstream, start_proxy, trace, wait};
use switchyard_proxy::{CheckOutcome, ShownHealth};

/// One service `app` with the given stacks (`[[services.stacks]]` tables) and service extras.
fn config(service_extra: &str, stacks: &str) -> String {
    format!(
        "{LISTENER}\n[[services]]\nname = \"app\"\nlisteners = [\"public\"]\n{service_extra}\n{stacks}"
    )
}

fn stack(name: &str, weight: u32, eps: &[SocketAddr], extra: &str) -> String {
    let eps: Vec<String> = eps.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "\n[[services.stacks]]\nname = \"{name}\"\nweight = {weight}\nendpoints = [{}]\n{extra}\n",
        eps.join(", ")
    )
}

const CHECK: &str = "[services.health_check]\npath = \"/health\"\ninterval = \"20ms\"\ntimeout = \"5s\"\nhealthy_threshold = 2\nunhealthy_threshold = 3\n";

async fn get_n(proxy: &Proxy, n: usize) -> Vec<support::Reply> {
    let mut c = Client::new(proxy.addr);
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.get("app.test", "/").await.expect("proxy answers"));
    }
    out
}

async fn wait_state(proxy: &Proxy, stack: &str, addr: SocketAddr, h: ShownHealth) {
    proxy
        .wait_endpoint("app", stack, addr, &format!("{addr} {h:?}"), |e| {
            e.state == h
        })
        .await;
}

/// Starts two checked upstreams in one stack and waits until both are healthy.
async fn two_healthy() -> (Proxy, Upstream, Upstream) {
    trace();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let proxy = start_proxy(&config(CHECK, &stack("blue", 1, &[a.addr, b.addr], ""))).await;
    wait_state(&proxy, "blue", a.addr, ShownHealth::Healthy).await;
    wait_state(&proxy, "blue", b.addr, ShownHealth::Healthy).await;
    (proxy, a, b)
}

/// Lets one gated check through and waits until the endpoint has counted it.
async fn one_check(proxy: &Proxy, up: &Upstream, failures: u32, successes: u32) -> ShownHealth {
    up.release(1);
    let what = format!("check streaks {successes}/{failures} on {}", up.addr);
    let e = proxy
        .wait_endpoint("app", "blue", up.addr, &what, |e| {
            e.check.as_ref().is_some_and(|c| {
                c.consecutive_failures == failures && c.consecutive_successes == successes
            })
        })
        .await;
    e.state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_turns_unhealthy_after_exactly_the_threshold_and_gets_no_requests() {
    let (proxy, a, b) = two_healthy().await;
    a.set_health(HealthMode::Gated(503));
    // Checks already under way when the mode changed pass; wait for the first gated one.
    wait("a gated check", || {
        proxy.handle.status();
        (a.checks() > 0).then_some(())
    })
    .await;
    assert_eq!(one_check(&proxy, &a, 1, 0).await, ShownHealth::Healthy);
    assert_eq!(one_check(&proxy, &a, 2, 0).await, ShownHealth::Healthy);
    assert_eq!(one_check(&proxy, &a, 3, 0).await, ShownHealth::Unhealthy);

    let (a0, b0) = (a.traffic(), b.traffic());
    let replies = get_n(&proxy, 40).await;
    assert!(replies.iter().all(|r| r.status == 200 && r.body == "b"));
    assert_eq!(a.traffic(), a0, "an unhealthy endpoint gets no requests");
    assert_eq!(b.traffic(), b0 + 40);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_endpoint_returns_after_healthy_threshold_successes() {
    let (proxy, a, b) = two_healthy().await;
    a.set_health(HealthMode::Fail);
    wait_state(&proxy, "blue", a.addr, ShownHealth::Unhealthy).await;
    a.set_health(HealthMode::Gated(200));
    // Let failing checks finish: the next one to count is a gated success.
    proxy
        .wait_endpoint("app", "blue", a.addr, "failures counted", |e| {
            e.check
                .as_ref()
                .is_some_and(|c| c.consecutive_failures >= 3)
        })
        .await;
    let before = proxy
        .endpoint("app", "blue", a.addr)
        .expect("a")
        .check
        .expect("checked");
    // Wait until the gated check is waiting at the upstream.
    wait("a gated check arrives", || {
        let now = proxy.endpoint("app", "blue", a.addr)?.check?;
        (now.checks_total == before.checks_total && a.checks() > 0).then_some(())
    })
    .await;
    assert_eq!(one_check(&proxy, &a, 0, 1).await, ShownHealth::Unhealthy);
    assert_eq!(one_check(&proxy, &a, 0, 2).await, ShownHealth::Healthy);

    let (a0, b0) = (a.traffic(), b.traffic());
    get_n(&proxy, 40).await;
    assert_eq!((a.traffic() - a0, b.traffic() - b0), (20, 20));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_check_fails_at_its_timeout() {
    trace();
    let a = Upstream::start("a").await;
    a.set_health(HealthMode::Hang);
    let check = "[services.health_check]\npath = \"/health\"\ninterval = \"20ms\"\ntimeout = \"300ms\"\nunhealthy_threshold = 2\ninitial = \"healthy\"\n";
    let proxy = start_proxy(&config(check, &stack("blue", 1, &[a.addr], ""))).await;
    let e = proxy
        .wait_endpoint("app", "blue", a.addr, "unhealthy", |e| {
            // Health changes before the check's counters are published (see `health::record`):
            // wait for both, or a reading in between sees the new state with the old count.
            e.state == ShownHealth::Unhealthy
                && e.check
                    .as_ref()
                    .is_some_and(|c| c.consecutive_failures >= 2)
        })
        .await;
    let c = e.check.expect("checked");
    assert_eq!(c.last_outcome, Some(CheckOutcome::Timeout));
    assert_eq!(c.consecutive_failures, 2);
    // The upstream saw each hung check's connection closed, never before the timeout.
    let mut abandoned = a.state.abandoned.subscribe();
    let ended = tokio::time::timeout(support::WAIT, abandoned.wait_for(|v| v.len() >= 2))
        .await
        .expect("hung checks end")
        .expect("upstream alive")
        .clone();
    for d in ended {
        assert!(
            d >= std::time::Duration::from_millis(290),
            "ended after {d:?}"
        );
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_unhealthy_stack_gives_its_share_to_the_other_stack() {
    trace();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    a.set_health(HealthMode::Fail);
    let blue = stack(
        "blue",
        1,
        &[a.addr],
        CHECK
            .replace("services.health_check", "services.stacks.health_check")
            .as_str(),
    );
    let green = stack("green", 1, &[b.addr], "");
    let proxy = start_proxy(&config("", &format!("{blue}{green}"))).await;
    wait_state(&proxy, "blue", a.addr, ShownHealth::Unhealthy).await;
    let replies = get_n(&proxy, 30).await;
    assert!(replies.iter().all(|r| r.status == 200 && r.body == "b"));
    assert_eq!((a.traffic(), b.traffic()), (0, 30));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_healthy_stack_answers_503_unless_fail_open() {
    trace();
    let a = Upstream::start("a").await;
    a.set_health(HealthMode::Fail);
    let proxy = start_proxy(&config(CHECK, &stack("blue", 1, &[a.addr], ""))).await;
    wait_state(&proxy, "blue", a.addr, ShownHealth::Unhealthy).await;
    let replies = get_n(&proxy, 3).await;
    for r in &replies {
        assert_eq!(r.status, 503);
        assert_eq!(r.error.as_deref(), Some("no-healthy-endpoint"));
    }
    assert_eq!(a.traffic(), 0);
    proxy.stop().await;

    let proxy = start_proxy(&config(
        &format!("fail_open = true\n{CHECK}"),
        &stack("blue", 1, &[a.addr], ""),
    ))
    .await;
    wait_state(&proxy, "blue", a.addr, ShownHealth::Unhealthy).await;
    let replies = get_n(&proxy, 3).await;
    assert!(replies.iter().all(|r| r.status == 200 && r.body == "a"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_send_the_configured_request_line_host_and_port() {
    trace();
    let mut a = Upstream::start("a").await;
    let check_port = a.also_listen().await.port();
    let check = format!(
        "[services.health_check]\nrequest_line = \"GET /health HTTP/1.0\"\nhost = \"app.internal\"\nport = {check_port}\ninterval = \"20ms\"\nhealthy_threshold = 1\n"
    );
    let proxy = start_proxy(&config(&check, &stack("blue", 1, &[a.addr], ""))).await;
    wait_state(&proxy, "blue", a.addr, ShownHealth::Healthy).await;
    let seen = a.seen();
    assert!(!seen.is_empty());
    for s in &seen {
        assert_eq!(s.version, http::Version::HTTP_10);
        assert_eq!((s.method.as_str(), s.path.as_str()), ("GET", "/health"));
        assert_eq!(s.host, "app.internal");
        assert_eq!(s.port, check_port, "checks go to the check port only");
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_checks_reuse_their_connection() {
    trace();
    let a = Upstream::start("a").await;
    let proxy = start_proxy(&config(CHECK, &stack("blue", 1, &[a.addr], ""))).await;
    wait("five checks", || (a.checks() >= 5).then_some(())).await;
    let seen = a.seen();
    assert!(seen.iter().all(|s| s.version == http::Version::HTTP_11));
    assert!(seen.iter().all(|s| s.host == a.addr.to_string()));
    let conns: std::collections::HashSet<u64> = seen.iter().map(|s| s.conn).collect();
    assert_eq!(conns.len(), 1, "one kept connection: {seen:?}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_endpoints_are_checked_over_tls() {
    trace();
    let a = Upstream::start_tls("a").await;
    let ep = format!("https://{}", a.addr);
    let stacks = format!(
        "\n[[services.stacks]]\nname = \"blue\"\nweight = 1\nendpoints = [\"{ep}\"]\ntls = {{ insecure_skip_verify = true }}\n"
    );
    let proxy = start_proxy(&config(CHECK, &stacks)).await;
    wait_state(&proxy, "blue", a.addr, ShownHealth::Healthy).await;
    assert!(a.checks() >= 2);
    let replies = get_n(&proxy, 2).await;
    assert!(replies.iter().all(|r| r.status == 200 && r.body == "a"));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovered_endpoint_ramps_up_under_slow_start() {
    trace();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    // Both start healthy (no ramp for a stack's first endpoints); a window far longer than
    // the test, so a recovered endpoint is at the very start of its ramp.
    let extra = format!("slow_start = \"60s\"\n{CHECK}initial = \"healthy\"\n");
    let proxy = start_proxy(&config(&extra, &stack("blue", 1, &[a.addr, b.addr], ""))).await;
    let e = proxy.endpoint("app", "blue", a.addr).expect("a");
    assert_eq!(
        (e.state, e.slow_start_per_mille),
        (ShownHealth::Healthy, 1000)
    );

    a.set_health(HealthMode::Fail);
    wait_state(&proxy, "blue", a.addr, ShownHealth::Unhealthy).await;
    a.set_health(HealthMode::Pass);
    wait_state(&proxy, "blue", a.addr, ShownHealth::Healthy).await;
    let e = proxy.endpoint("app", "blue", a.addr).expect("a");
    assert!(e.slow_start_per_mille < 100, "just recovered: {e:?}");

    let (a0, b0) = (a.traffic(), b.traffic());
    get_n(&proxy, 100).await;
    let (da, db) = (a.traffic() - a0, b.traffic() - b0);
    assert_eq!(da + db, 100, "the stack keeps its whole share");
    // Without slow start a would take 50 of 100.
    assert!(da <= 10, "a ramping endpoint took {da} of 100");
    proxy.stop().await;
}
