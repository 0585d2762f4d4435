//! Thread-per-core workers of the real binary (`[runtime] worker_threads = 2`): both workers
//! accept connections of the public listener, keep-alive client connections carry many
//! requests, and upstream connections are pooled per worker and reused. (A hot upgrade with
//! two workers is in `tests/upgrade.rs`.)

mod support;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use support::{Client, Proxy};
use tokio::net::TcpListener;
use tokio::task::block_in_place;

/// An upstream answering every request with 200 on keep-alive HTTP/1.1, counting the TCP
/// connections it accepted and the requests it answered.
struct CountingUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingUpstream {
    async fn start() -> Self {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let connections = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (c, r) = (connections.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |_req| {
                        r.fetch_add(1, Ordering::SeqCst);
                        async {
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(
                                Bytes::from_static(b"pooled"),
                            )))
                        }
                    });
                    // A client closing its connection ends it; nothing to report.
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            connections,
            requests,
            task,
        }
    }
}

impl Drop for CountingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The value of the sample `name{labels}` in a Prometheus exposition, 0 when absent.
fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name_and_labels} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

const CLIENTS: usize = 32;
const REQUESTS_PER_CLIENT: usize = 25;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_both_accept_and_serve_keep_alive_clients_on_pooled_upstream_connections() {
    let up = CountingUpstream::start().await;
    // No health check: the upstream counts only the proxy's request connections.
    let config = format!(
        "{}\n[[services]]\nname = \"web\"\nlisteners = [\"public\"]\n\n[[services.stacks]]\nname = \"a\"\nweight = 1\nendpoints = [\"{}\"]\nhealth_check = {{ kind = \"none\" }}\n\n[runtime]\nworker_threads = 2\nscheduler = \"thread-per-core\"\n",
        support::PUBLIC_LISTENER,
        up.addr,
    );
    let proxy = block_in_place(|| Proxy::start(&config));
    let addr = proxy.addr("public");

    // Many keep-alive clients at once, each sending its requests on its one connection.
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                for _ in 0..REQUESTS_PER_CLIENT {
                    let r = c.get("/").await;
                    assert_eq!(r.status, 200);
                    assert_eq!(&r.body[..], b"pooled");
                }
            })
        })
        .collect();
    for c in clients {
        c.await.expect("client");
    }
    let total = (CLIENTS * REQUESTS_PER_CLIENT) as u64;
    assert_eq!(up.requests.load(Ordering::SeqCst), total);
    // Pooled: an upstream connection per request in flight at most, never one per request.
    // (At most one request per client connection is in flight.)
    let opened = up.connections.load(Ordering::SeqCst);
    assert!(
        (1..=CLIENTS as u64).contains(&opened),
        "{opened} upstream connections for {total} requests"
    );

    // Sequential requests on one more connection reuse the pool: no new upstream connection.
    let mut c = Client::connect(addr).await;
    for _ in 0..50 {
        assert_eq!(c.get("/").await.status, 200);
    }
    assert_eq!(up.connections.load(Ordering::SeqCst), opened);

    let mut m = Client::connect(proxy.control).await;
    let text = String::from_utf8_lossy(&m.get("/metrics").await.body).into_owned();
    let w0 = sample(
        &text,
        "switchyard_worker_connections_accepted_total{worker=\"0\"}",
    );
    let w1 = sample(
        &text,
        "switchyard_worker_connections_accepted_total{worker=\"1\"}",
    );
    // The kernel spreads 33 new connections over the two workers' sockets by their hash:
    // both get some (all on one has a chance of 2^-32).
    assert!(w0 > 0.0 && w1 > 0.0, "{text}");
    assert_eq!(w0 + w1, (CLIENTS + 1) as f64, "{text}");
    assert_eq!(
        sample(
            &text,
            "switchyard_downstream_connections_accepted_total{listener=\"public\"}"
        ),
        (CLIENTS + 1) as f64
    );
    let status = block_in_place(|| proxy.stop());
    assert!(status.success());
}
