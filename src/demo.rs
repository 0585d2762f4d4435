//! The built-in demo upstream (`switchyard demo-upstream`) and the embedded demo set-up
//! (`switchyard demo`).
//!
//! The demo upstream answers every path with JSON naming its version, the path, the host and
//! the headers it received, so tests and people can see exactly what the proxy forwarded.
//! `/health` answers 200 (or 503 while a named file does not exist). It can fail a fraction of
//! requests with 500, add latency, and log a line per request to stdout (exiting when stdout
//! is gone, as many servers do on a broken pipe).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::debug;

/// The checked-in demo configuration.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");

/// Behaviour of a demo upstream.
#[derive(Debug, Clone)]
pub struct DemoUpstream {
    /// Version reported in every answer.
    pub version: String,
    /// Fraction of requests (0.0..=1.0) answered with 500, `/health` excluded.
    pub fail_rate: f64,
    /// Delay before answering.
    pub latency: Duration,
}

/// Extra behaviour of a demo upstream run as a process (`switchyard demo-upstream`).
#[derive(Debug, Clone, Default)]
pub struct DemoExtras {
    /// Print one line per request to stdout; exit when it cannot be written.
    pub log_requests: bool,
    /// `/health` answers 503 until this file exists.
    pub healthy_when: Option<std::path::PathBuf>,
}

/// A running demo upstream.
pub struct DemoUpstreamHandle {
    /// Requests answered so far (all paths).
    pub requests: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl DemoUpstreamHandle {
    /// Stops the server.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Serves the demo upstream on an already-bound listener.
pub fn spawn_demo_upstream(listener: TcpListener, cfg: DemoUpstream) -> DemoUpstreamHandle {
    spawn_demo_upstream_with(listener, cfg, DemoExtras::default())
}

/// [`spawn_demo_upstream`] with [`DemoExtras`].
pub fn spawn_demo_upstream_with(
    listener: TcpListener,
    cfg: DemoUpstream,
    extras: DemoExtras,
) -> DemoUpstreamHandle {
    let requests = Arc::new(AtomicU64::new(0));
    let counter = requests.clone();
    let cfg = Arc::new((cfg, extras));
    let task = tokio::spawn(async move {
        loop {
            let (tcp, _) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    debug!(error = %e, "demo upstream accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let cfg = cfg.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let cfg = cfg.clone();
                    let counter = counter.clone();
                    async move {
                        let (cfg, extras) = &*cfg;
                        Ok::<_, Infallible>(answer(cfg, extras, &counter, req).await)
                    }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    DemoUpstreamHandle { requests, task }
}

async fn answer(
    cfg: &DemoUpstream,
    extras: &DemoExtras,
    counter: &AtomicU64,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let n = counter.fetch_add(1, Ordering::Relaxed);
    if extras.log_requests {
        use std::io::Write;
        let line = format!("{} {}", req.method(), req.uri());
        if writeln!(std::io::stdout(), "{line}").is_err() {
            // The reader of our output is gone: end, as a server writing to a closed pipe does.
            std::process::exit(1);
        }
    }
    if req.uri().path() == "/health" && extras.healthy_when.as_ref().is_some_and(|f| !f.exists()) {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not ready\n")));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return r;
    }
    if !cfg.latency.is_zero() {
        tokio::time::sleep(cfg.latency).await;
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into(),
            )
        })
        .collect();
    let method = req.method().to_string();
    let body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len(),
        Err(_) => 0,
    };
    let fail = path != "/health" && cfg.fail_rate > 0.0 && {
        // Deterministic spread: every 1/fail_rate-th request fails.
        let period = (1.0 / cfg.fail_rate).round().max(1.0) as u64;
        n % period == period - 1
    };
    let status = if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let body = serde_json::json!({
        "version": cfg.version,
        "method": method,
        "path": path,
        "host": host,
        "body_bytes": body_len,
        "headers": headers,
    });
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}
