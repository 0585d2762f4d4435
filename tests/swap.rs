//! Swapping weights under load: the snapshot changes a thousand times while 32 keep-alive
//! connections send requests, and no request fails.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use support::{Client, Upstream, config};
use switchyard_proxy::{BoundListener, spawn_proxy};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weights_flip_a_thousand_times_under_load_without_a_failed_request() {
    let blue = Upstream::start("blue").await;
    let green = Upstream::start("green").await;
    let text_for = |b: u32, g: u32| {
        config(
            &[
                ("blue", "v1", b, vec![blue.addr]),
                ("green", "v2", g, vec![green.addr]),
            ],
            "",
            "",
        )
    };
    let parse = |t: String| {
        Arc::new(switchyard_config::parse(&t, Path::new("swap.toml")).expect("valid config"))
    };
    let configs = [parse(text_for(100, 0)), parse(text_for(0, 100))];

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bound = vec![BoundListener {
        name: switchyard_config::Name::new("public").expect("name"),
        listener,
        tls: None,
    }];
    let proxy = spawn_proxy(configs[0].clone(), bound).await.expect("proxy");

    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..32 {
        let (stop, ok) = (stop.clone(), ok.clone());
        clients.push(tokio::spawn(async move {
            let mut c = Client::connect(addr).await;
            let mut failures = Vec::new();
            // Bounded in count as well as by the stop flag.
            for _ in 0..200_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match c.try_request("GET", "/", &[], bytes::Bytes::new()).await {
                    Ok(r) if r.status == 200 => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(r) => failures.push(format!("status {} {:?}", r.status, r.error())),
                    Err(e) => {
                        failures.push(format!("connection error {e}"));
                        break;
                    }
                }
            }
            failures
        }));
    }

    let flips = tokio::time::timeout(Duration::from_secs(60), async {
        for i in 0..1000 {
            let generation = proxy
                .apply(configs[(i + 1) % 2].clone())
                .await
                .expect("apply");
            assert!(generation >= (i as u64) + 2);
            // Spread the flips over about five seconds of load.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    flips.expect("1000 flips within the failure bound");

    let mut failures = Vec::new();
    for c in clients {
        failures.extend(c.await.expect("client task"));
    }
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        failures.first()
    );
    assert!(ok.load(Ordering::Relaxed) > 1000);
    assert!(
        blue.requests() > 0 && green.requests() > 0,
        "both stacks served: blue {} green {}",
        blue.requests(),
        green.requests()
    );
    proxy.shutdown().await;
}

#[tokio::test]
async fn an_unavailable_stack_share_goes_to_the_others_in_proportion() {
    let a = Upstream::start("a").await;
    let b = Upstream::start("b").await;
    let c = Upstream::start("c").await;
    let text = config(
        &[
            ("a", "v1", 2, vec![a.addr]),
            ("b", "v2", 1, vec![b.addr]),
            ("c", "v3", 1, vec![c.addr]),
        ],
        // The test sets health by hand: no check (not even the default TCP one) may undo it.
        "health_check = { kind = \"none\" }",
        "",
    );
    let cfg =
        Arc::new(switchyard_config::parse(&text, Path::new("share.toml")).expect("valid config"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let bound = vec![BoundListener {
        name: switchyard_config::Name::new("public").expect("name"),
        listener,
        tls: None,
    }];
    let proxy = spawn_proxy(cfg, bound).await.expect("proxy");
    for e in proxy.endpoints("web", "a") {
        e.set_health(switchyard_proxy::Health::Unhealthy);
    }
    let mut client = Client::connect(addr).await;
    for _ in 0..400 {
        assert_eq!(client.get("/").await.status, 200);
    }
    assert_eq!(a.requests(), 0);
    // Half of a's share each (an expected 200 of 400; the bound is five standard deviations).
    assert!(
        (150..=250).contains(&b.requests()),
        "b {} c {}",
        b.requests(),
        c.requests()
    );
    assert_eq!(b.requests() + c.requests(), 400);
    proxy.shutdown().await;
}
