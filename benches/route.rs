//! Hot-path micro benchmarks: route lookup among 10,000 host routes, and stack + endpoint
//! selection. Both call the public API of the proxy crate on a snapshot built by the proxy.

use criterion::{BenchmarkId, Criterion, black_box, criterion_group, criterion_main};
use http::HeaderMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use switchyard_proxy::{Snapshot, spawn_proxy};

fn config_with_hosts(n: usize) -> String {
    let mut s = String::from("[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n");
    for i in 0..n {
        let _ = write!(
            s,
            "\n[[services]]\nname = \"svc-{i}\"\nlisteners = [\"public\"]\nhosts = [\"host-{i}.example.test\"]\n\
             [[services.stacks]]\nname = \"blue\"\nweight = 90\nendpoints = [\"127.0.0.1:{p1}\", \"127.0.0.1:{p2}\"]\n\
             [[services.stacks]]\nname = \"green\"\nweight = 10\nendpoints = [\"127.0.0.1:{p3}\"]\n",
            p1 = 10_000 + i % 50_000,
            p2 = 10_001 + i % 50_000,
            p3 = 10_002 + i % 50_000,
        );
    }
    s
}

fn snapshot(rt: &tokio::runtime::Runtime, hosts: usize) -> Arc<Snapshot> {
    let config = switchyard_config::parse(&config_with_hosts(hosts), Path::new("bench.toml"))
        .expect("valid config");
    rt.block_on(async {
        let proxy = spawn_proxy(Arc::new(config), Vec::new())
            .await
            .expect("proxy");
        proxy.snapshot()
    })
}

/// One service `web` with sticky users (`x-user`) over a 95/5 canary.
fn sticky_snapshot(rt: &tokio::runtime::Runtime) -> Arc<Snapshot> {
    let text = "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n\
        [[services]]\nname = \"web\"\nlisteners = [\"public\"]\nsticky = { header = \"x-user\" }\n\
        [[services.stacks]]\nname = \"blue\"\nweight = 95\nendpoints = [\"127.0.0.1:10000\", \"127.0.0.1:10001\"]\n\
        [[services.stacks]]\nname = \"green\"\nweight = 5\nendpoints = [\"127.0.0.1:10002\"]\n";
    let config = switchyard_config::parse(text, Path::new("bench.toml")).expect("valid config");
    rt.block_on(async {
        let proxy = spawn_proxy(Arc::new(config), Vec::new())
            .await
            .expect("proxy");
        proxy.snapshot()
    })
}

fn route_lookup(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut g = c.benchmark_group("route_lookup");
    for hosts in [10usize, 10_000] {
        let snap = snapshot(&rt, hosts);
        let host = format!("host-{}.example.test:8080", hosts / 2);
        g.bench_with_input(BenchmarkId::new("exact_host", hosts), &host, |b, host| {
            b.iter(|| {
                snap.route(
                    black_box(0),
                    Some(black_box(host.as_bytes())),
                    black_box("/api/users"),
                )
                .is_some()
            })
        });
        let upper = host.to_uppercase();
        g.bench_with_input(
            BenchmarkId::new("mixed_case_host", hosts),
            &upper,
            |b, host| {
                b.iter(|| {
                    snap.route(
                        black_box(0),
                        Some(black_box(host.as_bytes())),
                        black_box("/"),
                    )
                    .is_some()
                })
            },
        );
        g.bench_with_input(
            BenchmarkId::new("miss", hosts),
            &"nowhere.test",
            |b, host| {
                b.iter(|| {
                    snap.route(
                        black_box(0),
                        Some(black_box(host.as_bytes())),
                        black_box("/"),
                    )
                    .is_none()
                })
            },
        );
    }
    g.finish();
}

fn selection(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let snap = snapshot(&rt, 1);
    let svc = snap.service("svc-0").expect("service").clone();
    let empty = HeaderMap::new();
    let mut pinned = HeaderMap::new();
    pinned.insert("x-switchyard-stack", "green".parse().expect("value"));
    let mut g = c.benchmark_group("select");
    g.bench_function("weighted_stack_and_endpoint", |b| {
        b.iter(|| svc.choose(black_box(&empty)).is_ok())
    });
    g.bench_function("pinned_stack_and_endpoint", |b| {
        b.iter(|| svc.choose(black_box(&pinned)).is_ok())
    });
    let sticky = sticky_snapshot(&rt);
    let web = sticky.service("web").expect("service").clone();
    let mut user = HeaderMap::new();
    user.insert("x-user", "user-1234567".parse().expect("value"));
    g.bench_function("sticky_stack_and_endpoint", |b| {
        b.iter(|| web.choose(black_box(&user)).is_ok())
    });
    g.finish();
}

// criterion_group! expands to an undocumented function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, route_lookup, selection);
}

criterion_main!(group::benches);
