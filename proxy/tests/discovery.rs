//! DNS discovery end to end: a real DNS responder on a loopback UDP port whose answers the test
//! changes, real upstreams on several loopback addresses, the real proxy.

mod support;

use hickory_proto::rr::RecordType;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use support::dns::Dns;
use support::{Client, LISTENER, Proxy, Upstream, start_proxy, trace, wait};
use switchyard_proxy::{ResolutionOutcome, ShownHealth};

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, last)
}

/// One service `app` with one DNS stack `blue`.
fn config(dns: &Dns, source: &str, min_refresh: &str, stack_extra: &str) -> String {
    format!(
        "{LISTENER}\n[dns]\nnameservers = [\"{}\"]\nmin_refresh = \"{min_refresh}\"\nmax_refresh = \"10s\"\ntimeout = \"1s\"\n\n[[services]]\nname = \"app\"\nlisteners = [\"public\"]\n\n[[services.stacks]]\nname = \"blue\"\nweight = 1\ndns = {source}\n{stack_extra}\n",
        dns.addr
    )
}

/// Upstreams on 127.0.0.2, .3 and .4, all on the same port (as A/AAAA discovery needs).
async fn upstreams() -> Vec<Upstream> {
    let first = Upstream::start_at("u2", &format!("{}:0", ip(2)), false).await;
    let port = first.addr.port();
    let mut all = vec![first];
    for (name, last) in [("u3", 3), ("u4", 4)] {
        all.push(Upstream::start_at(name, &format!("{}:{port}", ip(last)), false).await);
    }
    all
}

fn addrs(proxy: &Proxy) -> Vec<SocketAddr> {
    let st = proxy.handle.status();
    let mut v: Vec<SocketAddr> = st
        .stack("app", "blue")
        .map(|s| s.endpoints.iter().map(|e| e.address).collect())
        .unwrap_or_default();
    v.sort();
    v
}

async fn wait_addrs(proxy: &Proxy, want: &[SocketAddr]) {
    let mut want = want.to_vec();
    want.sort();
    wait(&format!("endpoints {want:?}"), || {
        (addrs(proxy) == want).then_some(())
    })
    .await;
}

async fn bodies(proxy: &Proxy, n: usize) -> Vec<String> {
    let mut c = Client::new(proxy.addr);
    let mut out = Vec::new();
    for _ in 0..n {
        let r = c.get("app.test", "/").await.expect("proxy answers");
        assert_eq!(r.status, 200, "{r:?}");
        out.push(r.body);
    }
    out.sort();
    out.dedup();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_follow_the_dns_answers() {
    trace();
    let dns = Dns::start().await;
    dns.set_ttl(0);
    let ups = upstreams().await;
    let port = ups[0].addr.port();
    dns.set_a("app.test", &[ip(2)]);
    let source = format!("{{ name = \"app.test\", port = {port} }}");
    let proxy = start_proxy(&config(&dns, &source, "50ms", "")).await;
    // Resolved before the first snapshot: the proxy routes at once.
    assert_eq!(addrs(&proxy), vec![ups[0].addr]);
    assert_eq!(bodies(&proxy, 4).await, vec!["u2"]);
    let st = proxy.handle.status();
    let d = st
        .stack("app", "blue")
        .and_then(|s| s.dns.clone())
        .expect("dns status");
    assert_eq!(
        (d.kind, d.source.as_str()),
        ("a", format!("app.test:{port}").as_str())
    );
    assert_eq!(d.last_outcome, Some(ResolutionOutcome::Found));
    assert_eq!(d.ttl_secs, Some(0));
    assert!(d.last_resolution_unix_ms.is_some());

    dns.set_a("app.test", &[ip(2), ip(3)]);
    wait_addrs(&proxy, &[ups[0].addr, ups[1].addr]).await;
    assert_eq!(bodies(&proxy, 10).await, vec!["u2", "u3"]);

    dns.set_a("app.test", &[ip(3)]);
    wait_addrs(&proxy, &[ups[1].addr]).await;
    let before = ups[0].traffic();
    assert_eq!(bodies(&proxy, 10).await, vec!["u3"]);
    assert_eq!(
        ups[0].traffic(),
        before,
        "a removed endpoint gets no requests"
    );
    assert!(dns.queries(RecordType::A) >= 3);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_endpoints_keep_their_state_across_dns_changes() {
    trace();
    let dns = Dns::start().await;
    dns.set_ttl(0);
    let ups = upstreams().await;
    let port = ups[0].addr.port();
    ups[0].set_health(support::HealthMode::Fail);
    dns.set_a("app.test", &[ip(2), ip(3)]);
    let source = format!("{{ name = \"app.test\", port = {port} }}");
    let check = "[services.stacks.health_check]\npath = \"/health\"\ninterval = \"20ms\"\nhealthy_threshold = 1\nunhealthy_threshold = 2\n";
    let proxy = start_proxy(&config(&dns, &source, "50ms", check)).await;
    proxy
        .wait_endpoint("app", "blue", ups[0].addr, "u2 unhealthy", |e| {
            e.state == ShownHealth::Unhealthy
        })
        .await;
    proxy
        .wait_endpoint("app", "blue", ups[1].addr, "u3 healthy", |e| {
            e.state == ShownHealth::Healthy
        })
        .await;
    bodies(&proxy, 6).await;
    let old = proxy.handle.endpoints("app", "blue");
    let served = proxy
        .endpoint("app", "blue", ups[1].addr)
        .expect("u3")
        .requests_total;
    assert_eq!(served, 6);

    dns.set_a("app.test", &[ip(2), ip(3), ip(4)]);
    wait_addrs(&proxy, &[ups[0].addr, ups[1].addr, ups[2].addr]).await;
    let new = proxy.handle.endpoints("app", "blue");
    for o in &old {
        let n = new
            .iter()
            .find(|n| n.addr() == o.addr())
            .expect("still there");
        assert!(Arc::ptr_eq(o, n), "{} keeps its state", o.addr());
    }
    let u2 = proxy.endpoint("app", "blue", ups[0].addr).expect("u2");
    assert_eq!(
        u2.state,
        ShownHealth::Unhealthy,
        "health is kept, not reset to unknown"
    );
    assert!(
        proxy
            .endpoint("app", "blue", ups[1].addr)
            .expect("u3")
            .requests_total
            >= served
    );
    // The new endpoint starts unknown and is checked before it takes traffic.
    proxy
        .wait_endpoint("app", "blue", ups[2].addr, "u4 healthy", |e| {
            e.state == ShownHealth::Healthy
        })
        .await;
    assert_eq!(bodies(&proxy, 10).await, vec!["u3", "u4"]);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srv_answers_give_ports_and_weights() {
    trace();
    let dns = Dns::start().await;
    dns.set_ttl(30);
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    dns.set_srv(
        "_http._tcp.app.test",
        &[
            (10, 1, a.addr.port(), "a.hosts.test"),
            (10, 3, b.addr.port(), "b.hosts.test"),
            // A higher priority value is a backup: not used.
            (20, 1, c.addr.port(), "c.hosts.test"),
        ],
    );
    for t in ["a.hosts.test", "b.hosts.test", "c.hosts.test"] {
        dns.set_a(t, &[ip(1)]);
    }
    let source = "{ srv = \"_http._tcp.app.test\" }";
    let proxy = start_proxy(&config(&dns, source, "1s", "")).await;
    assert_eq!(addrs(&proxy), {
        let mut v = vec![a.addr, b.addr];
        v.sort();
        v
    });
    let st = proxy.handle.status();
    let stack = st.stack("app", "blue").expect("stack");
    let shares: Vec<(SocketAddr, usize)> = stack
        .endpoints
        .iter()
        .map(|e| (e.address, e.shares))
        .collect();
    assert!(
        shares.contains(&(a.addr, 1)) && shares.contains(&(b.addr, 3)),
        "{shares:?}"
    );
    assert_eq!(stack.dns.as_ref().map(|d| d.ttl_secs), Some(Some(30)));
    bodies(&proxy, 40).await;
    assert_eq!((a.traffic(), b.traffic(), c.traffic()), (10, 30, 0));
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_lookup_keeps_the_last_set_and_empty_answers_count_when_repeated() {
    trace();
    let dns = Dns::start().await;
    dns.set_ttl(0);
    let ups = upstreams().await;
    let port = ups[0].addr.port();
    dns.set_a("app.test", &[ip(2)]);
    let source = format!("{{ name = \"app.test\", port = {port} }}");
    // Empty answers are retried after min_refresh: 1s leaves a wide window to see the first.
    let proxy = start_proxy(&config(&dns, &source, "1s", "")).await;
    assert_eq!(addrs(&proxy), vec![ups[0].addr]);

    dns.set_servfail(true);
    let failed = wait("two failed lookups", || {
        let st = proxy.handle.status();
        let d = st.stack("app", "blue")?.dns.clone()?;
        (d.consecutive_failures >= 2).then_some(d)
    })
    .await;
    assert_eq!(failed.last_outcome, Some(ResolutionOutcome::Failed));
    assert_eq!(
        addrs(&proxy),
        vec![ups[0].addr],
        "a failure keeps the last set"
    );
    assert_eq!(bodies(&proxy, 3).await, vec!["u2"]);

    dns.set_servfail(false);
    dns.set_a("app.test", &[]);
    wait("an empty answer", || {
        let st = proxy.handle.status();
        let d = st.stack("app", "blue")?.dns.clone()?;
        (d.last_outcome == Some(ResolutionOutcome::Empty)).then_some(())
    })
    .await;
    assert_eq!(
        addrs(&proxy),
        vec![ups[0].addr],
        "one empty answer keeps the set"
    );
    wait_addrs(&proxy, &[]).await;
    let mut c = Client::new(proxy.addr);
    let r = c.get("app.test", "/").await.expect("proxy answers");
    assert_eq!(
        (r.status, r.error.as_deref()),
        (503, Some("no-healthy-endpoint"))
    );
    proxy.stop().await;
}
