//! Loopback load bench for the control-plane and health figures of `benches/RESULTS.md`:
//!
//! 1. `weights`: the real binary (one worker thread) serves a bounded keep-alive load, quiet
//!    and while the control API changes weights 100 times per second (`Prefer:
//!    return=minimal`, as a deploy tool would); then control writes as fast as one client can
//!    send them, under the same load.
//! 2. `health`: an in-process proxy with one stack of 1,000 endpoints serves the same load,
//!    quiet, then while an endpoint's health flips every 10 ms.
//!
//! Everything is on 127.0.0.1, every loop is bounded in time and count. `cargo bench --bench
//! load` runs the full version (4 s per phase; the weights' quiet and busy phases alternate five
//! times and the median ratio is the figure); `cargo test --benches` runs a 0.3 s smoke
//! version to prove it works. Run it as `taskset -c 0 cargo bench --bench load` so the proxy
//! (pinned to CPU 1 when `taskset` exists) and the load do not share a core; with
//! `LOAD_BENCH_NO_PIN=1` nothing is pinned and the scheduler places every thread.

#[path = "../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::{Client, Upstream};
use tokio::time::Instant;

const CONNECTIONS: usize = 32;

struct Figures {
    requests: u64,
    errors: u64,
    secs: f64,
    p99_us: u64,
}

impl Figures {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
}

/// `CONNECTIONS` keep-alive clients for `secs`, bounded by a request cap as well.
async fn load(addr: SocketAddr, host: &str, secs: f64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let host = host.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut lat = Vec::with_capacity(1 << 16);
            let mut errors = 0u64;
            for _ in 0..5_000_000u32 {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                match c
                    .try_request("GET", "/", &[("host", &host)], Bytes::new())
                    .await
                {
                    Ok(r) if r.status == 200 => lat.push(t.elapsed().as_micros() as u64),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        c = Client::connect(addr).await;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        all.extend(l);
        errors += e;
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let p99_us = all
        .get(all.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or(0);
    Figures {
        requests: all.len() as u64,
        errors,
        secs,
        p99_us,
    }
}

fn row(name: &str, f: &Figures, base: Option<&Figures>) {
    let delta = base.map_or(String::from("-"), |b| {
        format!("{:+.1}%", (f.rps() / b.rps() - 1.0) * 100.0)
    });
    println!(
        "{name:<34} {:>10.0} req/s  p99 {:>6} us  errors {:>3}  vs quiet {delta}",
        f.rps(),
        f.p99_us,
        f.errors
    );
}

async fn weights(secs: f64) {
    let up = Upstream::start("v").await;
    let text = support::config(
        &[
            ("blue", "v1", 50, vec![up.addr]),
            ("green", "v2", 50, vec![up.addr]),
        ],
        "",
        "[runtime]\nworker_threads = 1\n",
    );
    let proxy = support::Proxy::start(&text);
    let pin = std::env::var_os("LOAD_BENCH_NO_PIN").is_none();
    if pin
        && std::process::Command::new("taskset")
            .args(["-a", "-p", "-c", "1"])
            .arg(proxy.child.id().to_string())
            .output()
            .is_ok_and(|o| o.status.success())
    {
        println!("(proxy pinned to CPU 1)");
    }
    let addr = proxy.addr("public");

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let churn = |interval: Option<Duration>| {
        let (stop, writes, control) = (stop.clone(), writes.clone(), proxy.control);
        stop.store(false, Ordering::Relaxed);
        writes.store(0, Ordering::Relaxed);
        tokio::spawn(async move {
            let mut api = Client::connect(control).await;
            let mut tick = interval.map(tokio::time::interval);
            for i in 0..1_000_000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if let Some(t) = tick.as_mut() {
                    t.tick().await;
                }
                let body = if i % 2 == 0 {
                    r#"{"weights":{"blue":60,"green":40}}"#
                } else {
                    r#"{"weights":{"blue":50,"green":50}}"#
                };
                // What a deploy tool changing weights sends: the new revision is enough.
                let r = api
                    .request(
                        "PUT",
                        "/v1/services/web/weights",
                        &[
                            ("content-type", "application/json"),
                            ("prefer", "return=minimal"),
                        ],
                        Bytes::from_static(body.as_bytes()),
                    )
                    .await;
                assert_eq!(
                    r.status,
                    204,
                    "weights PUT: {}",
                    String::from_utf8_lossy(&r.body)
                );
                writes.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    // Quiet and busy phases alternate, so a machine whose speed drifts (other tenants) moves
    // both alike; the median of the rounds' ratios is the figure.
    let rounds = if secs >= 1.0 { 5 } else { 1 };
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let quiet = load(addr, "bench.test", secs).await;
        row(&format!("weights: quiet ({round}/{rounds})"), &quiet, None);
        let t = churn(Some(Duration::from_millis(10)));
        let busy = load(addr, "bench.test", secs).await;
        stop.store(true, Ordering::Relaxed);
        t.await.expect("churn task");
        row(
            &format!("weights: 100 PUT/s ({round}/{rounds})"),
            &busy,
            Some(&quiet),
        );
        println!(
            "  ({} weight changes applied, {:.0}/s)",
            writes.load(Ordering::Relaxed),
            writes.load(Ordering::Relaxed) as f64 / busy.secs
        );
        ratios.push(busy.rps() / quiet.rps());
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "weights: 100 PUT/s vs quiet, median of {rounds} rounds: {:+.1}% (rounds {})",
        (ratios[ratios.len() / 2] - 1.0) * 100.0,
        ratios
            .iter()
            .map(|r| format!("{:+.1}%", (r - 1.0) * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    );

    let quiet = load(addr, "bench.test", secs).await;
    let t = churn(None);
    let flat = load(addr, "bench.test", secs).await;
    stop.store(true, Ordering::Relaxed);
    t.await.expect("churn task");
    row("weights: PUT as fast as possible", &flat, Some(&quiet));
    println!(
        "  (control writes under load: {:.0}/s, each durable before acknowledged)",
        writes.load(Ordering::Relaxed) as f64 / flat.secs
    );
    assert!(proxy.stop().success());
}

async fn health(secs: f64) {
    let mut ups = Vec::new();
    for _ in 0..1000 {
        ups.push(Upstream::start("v").await);
    }
    let text = support::config(
        &[("blue", "v1", 1, ups.iter().map(|u| u.addr).collect())],
        "",
        "",
    );
    let config = Arc::new(
        switchyard_config::parse(&text, std::path::Path::new("bench.toml")).expect("config"),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let bound = vec![switchyard_proxy::BoundListener {
        name: switchyard_config::Name::new("public").expect("name"),
        listener: l,
        tls: None,
    }];
    let proxy = switchyard_proxy::spawn_proxy(config, bound)
        .await
        .expect("proxy");
    let quiet = load(addr, "bench.test", secs).await;
    row("health: 1000 endpoints, quiet", &quiet, None);
    let stop = Arc::new(AtomicBool::new(false));
    let flips = Arc::new(AtomicU64::new(0));
    let flipper = {
        let (stop, flips, proxy) = (stop.clone(), flips.clone(), proxy.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut down: Option<Arc<switchyard_proxy::EndpointState>> = None;
            for i in 0..1_000_000usize {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                tick.tick().await;
                let eps = proxy.endpoints("web", "blue");
                if let Some(d) = down.take() {
                    d.set_health(switchyard_proxy::Health::Healthy);
                }
                let e = eps[(i * 7919) % eps.len()].clone();
                e.set_health(switchyard_proxy::Health::Unhealthy);
                down = Some(e);
                flips.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(d) = down {
                d.set_health(switchyard_proxy::Health::Healthy);
            }
        })
    };
    let churn = load(addr, "bench.test", secs).await;
    stop.store(true, Ordering::Relaxed);
    flipper.await.expect("flipper");
    row(
        "health: an endpoint flips every 10 ms",
        &churn,
        Some(&quiet),
    );
    println!("  ({} flips)", flips.load(Ordering::Relaxed));
    proxy.shutdown().await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    // Full: 4 s phases (five rounds of quiet and busy for the weights); smoke: 0.3 s, one round.
    let secs = if full { 4.0 } else { 0.3 };
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        weights(secs).await;
        health(secs).await;
    });
}
