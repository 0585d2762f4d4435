//! Several instances on one etcd: how fast a write acknowledged by instance A is served by
//! instance B, and how many control writes per second go through etcd.
//!
//! A real etcd (tests/support/etcd.rs) and two real `switchyard` instances on 127.0.0.1.
//! Propagation: the weights flip between blue and green through A; from each acknowledgement
//! B's proxy is polled (a new keep-alive request after the other) until it serves the new
//! version. Writes: sequential weight changes through A for a bounded time. `cargo bench
//! --bench etcd` runs 200 changes and 5 s of writes; `cargo test --benches` runs 5 changes
//! and 0.3 s to prove it works (skipped without etcd, failing under `CI=true`).

#[path = "../tests/support/mod.rs"]
mod support;

use bytes::Bytes;
use std::time::Duration;
use support::etcd::{self, Etcd, store_table};
use support::{BlueGreen, Client, Proxy};
use tokio::time::Instant;

async fn put_weights(c: &mut Client, blue: u32, green: u32) {
    let body = format!("{{\"weights\":{{\"blue\":{blue},\"green\":{green}}}}}");
    let r = c
        .request(
            "PUT",
            "/v1/services/web/weights",
            &[("content-type", "application/json")],
            Bytes::from(body),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

fn quantile(sorted: &[u64], q: f64) -> u64 {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run(changes: usize, write_secs: f64) {
    let etcd = Etcd::start(1);
    let bg = BlueGreen::start().await;
    let text = format!(
        "{}\n{}",
        bg.config(100, 0, "hosts = [\"web.test\"]\n", ""),
        store_table(&etcd, "/switchyard/bench/")
    );
    let a = Proxy::start(&text);
    let b = Proxy::start(&text);
    let mut control = Client::connect(a.control).await;
    let mut proxy_b = Client::connect(b.addr("public")).await;
    let mut lat_us = Vec::with_capacity(changes);
    for i in 0..changes {
        let (blue, green, version) = if i % 2 == 0 {
            (0, 100, "green")
        } else {
            (100, 0, "blue")
        };
        put_weights(&mut control, blue, green).await;
        let acked = Instant::now();
        let deadline = acked + Duration::from_secs(10);
        loop {
            let r = proxy_b
                .request("GET", "/", &[("host", "web.test")], Bytes::new())
                .await;
            if r.version() == version {
                break;
            }
            assert!(Instant::now() < deadline, "B never served {version}");
        }
        lat_us.push(acked.elapsed().as_micros() as u64);
    }
    lat_us.sort_unstable();
    println!(
        "etcd propagation A->B over {changes} weight changes: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        quantile(&lat_us, 0.5) as f64 / 1000.0,
        quantile(&lat_us, 0.99) as f64 / 1000.0,
        *lat_us.last().expect("at least one change") as f64 / 1000.0
    );

    let (writes, secs) = writes_for(&mut control, write_secs).await;
    println!(
        "control writes through etcd (one client, sequential): {writes} in {secs:.2} s = {:.0}/s",
        writes as f64 / secs
    );
    assert!(a.stop().success());
    assert!(b.stop().success());

    // The same writes against one instance on its state folder, in the same build.
    let local = Proxy::start(&bg.config(100, 0, "hosts = [\"web.test\"]\n", ""));
    let mut control = Client::connect(local.control).await;
    let (writes, secs) = writes_for(&mut control, write_secs).await;
    println!(
        "control writes, local store (same build, for comparison): {writes} in {secs:.2} s = {:.0}/s",
        writes as f64 / secs
    );
    assert!(local.stop().success());
}

/// Sequential weight changes for `secs` (bounded in count too): (writes, seconds taken).
async fn writes_for(control: &mut Client, secs: f64) -> (u64, f64) {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let mut writes = 0u64;
    for i in 0..1_000_000u32 {
        if Instant::now() >= end {
            break;
        }
        let w = i % 100;
        put_weights(control, w, 100 - w).await;
        writes += 1;
    }
    (writes, started.elapsed().as_secs_f64())
}

fn main() {
    if !etcd::available() {
        return;
    }
    let full = std::env::args().any(|a| a == "--bench");
    let (changes, secs) = if full { (200, 5.0) } else { (5, 0.3) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(changes, secs));
}
