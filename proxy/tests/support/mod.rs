//! Helpers of the proxy's integration tests: real upstream HTTP servers whose health endpoint
//! the test controls, a real DNS responder on a loopback UDP port whose answers the test
//! changes, a keep-alive client, and starting the proxy from configuration text.
#![allow(dead_code, unreachable_pub)]

pub mod dns;

use bytes::Bytes;
use http::{Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_proxy::{BoundListener, EndpointStatus, ProxyHandle, spawn_proxy};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

/// Upper bound of any wait: a failure bound, never a delay.
pub const WAIT: Duration = Duration::from_secs(20);

/// What an upstream's health endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthMode {
    /// Answer 200.
    Pass,
    /// Answer 503.
    Fail,
    /// Wait for a permit from the test (`release`), then answer with this status.
    Gated(u16),
    /// Never answer.
    Hang,
}

/// One health check as the upstream saw it.
#[derive(Debug, Clone)]
pub struct SeenCheck {
    pub version: Version,
    pub method: String,
    pub path: String,
    pub host: String,
    pub port: u16,
    /// Connection number on this upstream (same number: a reused connection).
    pub conn: u64,
}

/// State shared by an upstream's connections.
pub struct UpState {
    pub name: String,
    /// Requests other than health checks.
    pub traffic: AtomicU64,
    /// Health checks answered or started.
    pub checks: AtomicU64,
    /// Health checks whose connection was dropped before an answer (hung ones ended).
    pub abandoned: watch::Sender<Vec<Duration>>,
    conns: AtomicU64,
    mode: Mutex<HealthMode>,
    gate: Semaphore,
    traffic_status: AtomicU16,
    pub seen: Mutex<Vec<SeenCheck>>,
}

/// A real HTTP/1.1 upstream on 127.0.0.1; `/health` follows the test's mode, anything else
/// answers with its name (status 200 unless set otherwise).
pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<UpState>,
    tasks: Vec<JoinHandle<()>>,
}

async fn handle(
    state: Arc<UpState>,
    port: u16,
    conn: u64,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.uri().path() == "/health" {
        state.checks.fetch_add(1, Ordering::SeqCst);
        state.seen.lock().expect("seen").push(SeenCheck {
            version: req.version(),
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            host: req
                .headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            port,
            conn,
        });
        let mode = *state.mode.lock().expect("mode");
        let status = match mode {
            HealthMode::Pass => 200,
            HealthMode::Fail => 503,
            HealthMode::Gated(s) => {
                let permit = state.gate.acquire().await.expect("gate open");
                permit.forget();
                s
            }
            HealthMode::Hang => {
                let started = tokio::time::Instant::now();
                // Dropped (with this future) when the checker gives up and closes.
                struct Abandon(Arc<UpState>, tokio::time::Instant);
                impl Drop for Abandon {
                    fn drop(&mut self) {
                        let d = self.1.elapsed();
                        self.0.abandoned.send_modify(|v| v.push(d));
                    }
                }
                let _guard = Abandon(state.clone(), started);
                std::future::pending::<()>().await;
                unreachable!("pending never completes")
            }
        };
        let mut r = Response::new(Full::new(Bytes::from_static(b"health\n")));
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        return Ok(r);
    }
    state.traffic.fetch_add(1, Ordering::SeqCst);
    let mut r = Response::new(Full::new(Bytes::from(state.name.clone())));
    *r.status_mut() =
        StatusCode::from_u16(state.traffic_status.load(Ordering::SeqCst)).expect("status");
    Ok(r)
}

fn serve(
    listener: TcpListener,
    state: Arc<UpState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> JoinHandle<()> {
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        // Dropping the set (when this task is aborted) aborts every connection: a dead process.
        let mut conns = JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let conn = state.conns.fetch_add(1, Ordering::SeqCst);
            let state = state.clone();
            let tls = tls.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req| handle(state.clone(), port, conn, req));
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    None => {
                        let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                    }
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(stream).await {
                            let _ = http.serve_connection(TokioIo::new(s), svc).await;
                        }
                    }
                }
            });
            while conns.try_join_next().is_some() {}
        }
    })
}

/// A TLS acceptor with a fresh self-signed certificate for `localhost`.
fn self_signed() -> tokio_rustls::TlsAcceptor {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let key = rustls::pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der())
        .expect("key der");
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .expect("server config");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

impl Upstream {
    pub async fn start(name: &str) -> Self {
        Self::start_at(name, "127.0.0.1:0", false).await
    }

    /// An upstream serving HTTPS with a self-signed certificate.
    pub async fn start_tls(name: &str) -> Self {
        Self::start_at(name, "127.0.0.1:0", true).await
    }

    /// An upstream on a given address (e.g. another loopback address with the same port).
    pub async fn start_at(name: &str, bind: &str, tls: bool) -> Self {
        let listener = TcpListener::bind(bind).await.expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(UpState {
            name: name.to_owned(),
            traffic: AtomicU64::new(0),
            checks: AtomicU64::new(0),
            abandoned: watch::channel(Vec::new()).0,
            conns: AtomicU64::new(0),
            mode: Mutex::new(HealthMode::Pass),
            gate: Semaphore::new(0),
            traffic_status: AtomicU16::new(200),
            seen: Mutex::new(Vec::new()),
        });
        let task = serve(listener, state.clone(), tls.then(self_signed));
        Self {
            addr,
            state,
            tasks: vec![task],
        }
    }

    /// Serves the same upstream on a second port too (a separate check port).
    pub async fn also_listen(&mut self) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        self.tasks.push(serve(listener, self.state.clone(), None));
        addr
    }

    pub fn set_health(&self, m: HealthMode) {
        *self.state.mode.lock().expect("mode") = m;
    }

    /// Lets `n` gated health checks answer.
    pub fn release(&self, n: usize) {
        self.state.gate.add_permits(n);
    }

    pub fn set_traffic_status(&self, s: u16) {
        self.state.traffic_status.store(s, Ordering::SeqCst);
    }

    pub fn traffic(&self) -> u64 {
        self.state.traffic.load(Ordering::SeqCst)
    }

    pub fn checks(&self) -> u64 {
        self.state.checks.load(Ordering::SeqCst)
    }

    pub fn seen(&self) -> Vec<SeenCheck> {
        self.state.seen.lock().expect("seen").clone()
    }

    /// Stops listening and drops every connection, as a crashed process would.
    pub fn kill(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running proxy and its public address.
pub struct Proxy {
    pub handle: ProxyHandle,
    pub addr: SocketAddr,
}

/// Starts the proxy on `config` (which names one listener `public`, bound here).
pub async fn start_proxy(config: &str) -> Proxy {
    let config = switchyard_config::parse(config, Path::new("test.toml")).expect("valid config");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    let bound = BoundListener {
        name: switchyard_config::Name::new("public").expect("name"),
        listener,
        tls: None,
    };
    let handle = spawn_proxy(Arc::new(config), vec![bound])
        .await
        .expect("proxy starts");
    Proxy { handle, addr }
}

/// The usual head of a test configuration: one listener named `public`.
pub const LISTENER: &str = "[[listeners]]\nname = \"public\"\nbind = \"127.0.0.1:0\"\n";

impl Proxy {
    /// The status of one endpoint.
    pub fn endpoint(&self, service: &str, stack: &str, addr: SocketAddr) -> Option<EndpointStatus> {
        self.handle
            .status()
            .stack(service, stack)?
            .endpoints
            .iter()
            .find(|e| e.address == addr)
            .cloned()
    }

    /// Waits (bounded) until `f` holds for the endpoint's status.
    pub async fn wait_endpoint(
        &self,
        service: &str,
        stack: &str,
        addr: SocketAddr,
        what: &str,
        f: impl Fn(&EndpointStatus) -> bool,
    ) -> EndpointStatus {
        wait(what, || {
            self.endpoint(service, stack, addr).filter(|e| f(e))
        })
        .await
    }

    pub async fn stop(self) {
        self.handle.shutdown().await;
    }
}

/// Polls `f` until it gives a value, failing after [`WAIT`].
pub async fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let poll = async {
        loop {
            if let Some(v) = f() {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::time::timeout(WAIT, poll)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub error: Option<String>,
    pub body: String,
}

/// One keep-alive HTTP/1.1 client connection (reconnects when the proxy closed it).
pub struct Client {
    addr: SocketAddr,
    sender: Option<http1::SendRequest<Empty<Bytes>>>,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn connect(&mut self) -> std::io::Result<&mut http1::SendRequest<Empty<Bytes>>> {
        if self.sender.as_ref().is_none_or(|s| s.is_closed()) {
            let tcp = TcpStream::connect(self.addr).await?;
            let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(std::io::Error::other)?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        Ok(self.sender.as_mut().expect("just set"))
    }

    /// GET `path` on host `host`; `Err` when the connection to the proxy failed.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Reply, String> {
        let sender = self.connect().await.map_err(|e| e.to_string())?;
        sender.ready().await.map_err(|e| e.to_string())?;
        let req = Request::builder()
            .uri(path)
            .header(http::header::HOST, host)
            .body(Empty::new())
            .expect("request");
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                self.sender = None;
                return Err(e.to_string());
            }
        };
        let status = resp.status().as_u16();
        let error = resp
            .headers()
            .get("x-switchyard-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok(Reply {
            status,
            error,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}

/// Installs a test subscriber when `RUST_LOG` is set (for debugging a failing test).
pub fn trace() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}
