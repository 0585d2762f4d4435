//! Passive health (outlier detection) end to end, and what killing an endpoint under load costs.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use support::{Client, LISTENER, Proxy, Upstream, start_proxy, trace};
use switchyard_proxy::ShownHealth;

fn config(outlier: &str, eps: &[SocketAddr]) -> String {
    let eps: Vec<String> = eps.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "{LISTENER}\n[[services]]\nname = \"app\"\nlisteners = [\"public\"]\n{outlier}\n\n[[services.stacks]]\nname = \"blue\"\nweight = 1\nendpoints = [{}]\n",
        eps.join(", ")
    )
}

async fn statuses(proxy: &Proxy, n: usize) -> Vec<u16> {
    let mut c = Client::new(proxy.addr);
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(c.get("app.test", "/").await.expect("proxy answers").status);
    }
    out
}

fn state(proxy: &Proxy, addr: SocketAddr) -> switchyard_proxy::EndpointStatus {
    proxy.endpoint("app", "blue", addr).expect("endpoint")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_5xx_eject_an_endpoint_and_it_gets_no_requests() {
    trace();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    a.set_traffic_status(500);
    let od = "outlier_detection = { consecutive_failures = 3, base_ejection = \"60s\" }";
    let proxy = start_proxy(&config(od, &[a.addr, b.addr])).await;
    let got = statuses(&proxy, 60).await;
    // Round-robin: a answers requests 1, 3 and 5 with 500 and is out after the third.
    assert_eq!(a.traffic(), 3);
    assert_eq!(b.traffic(), 57);
    assert_eq!(got.iter().filter(|s| **s == 500).count(), 3);
    let e = state(&proxy, a.addr);
    assert_eq!(e.state, ShownHealth::Ejected);
    assert_eq!(e.ejections_total, 1);
    assert!(
        e.ejected_remaining_ms.is_some_and(|ms| ms > 50_000),
        "{e:?}"
    );
    assert_eq!(
        proxy
            .handle
            .status()
            .stack("app", "blue")
            .expect("stack")
            .ejected_endpoints,
        1
    );
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejected_endpoint_returns_when_its_time_is_up() {
    trace();
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    a.set_traffic_status(500);
    let od = "outlier_detection = { consecutive_failures = 2, base_ejection = \"200ms\" }";
    let proxy = start_proxy(&config(od, &[a.addr, b.addr])).await;
    statuses(&proxy, 10).await;
    assert_eq!(state(&proxy, a.addr).state, ShownHealth::Ejected);
    a.set_traffic_status(200);
    let e = proxy
        .wait_endpoint("app", "blue", a.addr, "return", |e| {
            e.state == ShownHealth::Healthy
        })
        .await;
    assert_eq!(e.consecutive_failures, 0);
    let before = a.traffic();
    statuses(&proxy, 10).await;
    assert_eq!(a.traffic() - before, 5, "back in the rotation");
    // A second ejection in a row lasts twice as long.
    a.set_traffic_status(500);
    statuses(&proxy, 10).await;
    let e = state(&proxy, a.addr);
    assert_eq!((e.state, e.ejections_total), (ShownHealth::Ejected, 2));
    assert!(e.ejected_remaining_ms.is_some_and(|ms| ms > 200), "{e:?}");
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ejection_never_exceeds_the_stack_cap() {
    trace();
    let mut ups = Vec::new();
    for name in ["a", "b", "c", "d"] {
        let u = Upstream::start(name).await;
        u.set_traffic_status(500);
        ups.push(u);
    }
    let addrs: Vec<SocketAddr> = ups.iter().map(|u| u.addr).collect();
    let od = "outlier_detection = { consecutive_failures = 2, base_ejection = \"60s\", max_ejection_percent = 50 }";
    let proxy = start_proxy(&config(od, &addrs)).await;
    statuses(&proxy, 80).await;
    let st = proxy.handle.status();
    let st = st.stack("app", "blue").expect("stack");
    let ejected = st
        .endpoints
        .iter()
        .filter(|e| e.state == ShownHealth::Ejected)
        .count();
    assert_eq!((ejected, st.ejected_endpoints), (2, 2));
    assert_eq!(st.healthy_endpoints, 2);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_endpoint_is_never_ejected_at_the_default_cap() {
    trace();
    let a = Upstream::start("a").await;
    a.set_traffic_status(500);
    let proxy = start_proxy(&config("", &[a.addr])).await;
    let got = statuses(&proxy, 20).await;
    assert!(got.iter().all(|s| *s == 500));
    assert_eq!(state(&proxy, a.addr).state, ShownHealth::Healthy);
    assert_eq!(a.traffic(), 20);
    proxy.stop().await;
}

/// 2,000 requests over 4 keep-alive connections; one of two endpoints is killed after 500.
/// Connect failures are retried on the other endpoint, so only requests in flight at the dead
/// endpoint when it died can fail: at most one per client connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_endpoints_under_load_fails_few_requests() {
    trace();
    const CONNS: usize = 4;
    const PER_CONN: usize = 500;
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let proxy = Arc::new(start_proxy(&config("", &[a.addr, b.addr])).await);
    let sent = Arc::new(AtomicU64::new(0));
    let (kill_tx, kill_rx) = tokio::sync::oneshot::channel::<()>();
    let kill_tx = Arc::new(std::sync::Mutex::new(Some(kill_tx)));
    let mut clients = Vec::new();
    for _ in 0..CONNS {
        let (proxy, sent, kill_tx) = (proxy.clone(), sent.clone(), kill_tx.clone());
        clients.push(tokio::spawn(async move {
            let mut c = Client::new(proxy.addr);
            let mut failed = Vec::new();
            for _ in 0..PER_CONN {
                if sent.fetch_add(1, Ordering::SeqCst) == 500 {
                    if let Some(tx) = kill_tx.lock().expect("lock").take() {
                        let _ = tx.send(());
                    }
                }
                match c.get("app.test", "/").await {
                    Ok(r) if r.status == 200 => {}
                    Ok(r) => failed.push(format!("{} {:?}", r.status, r.error)),
                    Err(e) => failed.push(e),
                }
            }
            failed
        }));
    }
    let mut a = a;
    kill_rx.await.expect("kill signal");
    a.kill();
    let mut failed = Vec::new();
    for c in clients {
        failed.extend(c.await.expect("client task"));
    }
    let ok = CONNS * PER_CONN - failed.len();
    eprintln!(
        "kill one of two endpoints under load: {} of {} requests failed ({failed:?}); b answered {}",
        failed.len(),
        CONNS * PER_CONN,
        b.traffic()
    );
    assert!(failed.len() <= CONNS, "{failed:?}");
    assert!(b.traffic() as usize >= ok - 500);
    let e = proxy.endpoint("app", "blue", a.addr).expect("a");
    assert_eq!(
        e.state,
        ShownHealth::Ejected,
        "the dead endpoint is ejected: {e:?}"
    );
    match Arc::try_unwrap(proxy) {
        Ok(p) => p.stop().await,
        Err(_) => panic!("clients still hold the proxy"),
    }
}
