//! Listeners: the accept loop, optional TLS termination, and serving HTTP/1.1 and HTTP/2 (h2c
//! with prior knowledge on plain listeners, ALPN `h2` on TLS listeners) with the proxy's limits.
//!
//! An accept error is logged and followed by a short pause; it never ends the loop. On shutdown
//! the loop stops accepting and every connection is asked to finish gracefully within the drain
//! deadline. On a hand-over to a new process (`ProxyHandle::hand_over`) the loop stops
//! accepting (the new process accepts on the same socket) and connections first finish on
//! their own: each HTTP/1 response carries `Connection: close`, so a keep-alive client's next
//! request opens a new connection to the new process and no request meets a connection closed
//! under it; only connections still open after half the drain deadline are shut down
//! gracefully (idle ones closed, HTTP/2 sent GOAWAY) within the other half.
//!
//! With thread-per-core workers (`crate::worker`) each worker runs accept loops of its own on
//! its own sockets of a listener's `SO_REUSEPORT` group (`spread`), and a
//! connection is served entirely on the worker that accepted it.

use crate::body::ProxyBody;
use crate::drain::{Drain, SelfDraining};
use crate::forward::{self, ConnInfo};
use crate::handle::Shared;
use crate::server::{self, RequestBody, Served, Wake, head::HeadLimits};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::time::Duration;
use switchyard_config::{Limits, Name, Timeouts};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{Instrument, debug, debug_span, info, warn};

mod lot;
mod spread;
pub(crate) use spread::start_listeners;

/// A listener bound by the caller, handed to the proxy.
pub struct BoundListener {
    /// The listener's name in the configuration.
    pub name: Name,
    /// The bound socket.
    pub listener: TcpListener,
    /// TLS termination, for HTTPS listeners.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Connection counters of one listener, read by the metrics collector.
#[derive(Debug, Default)]
pub(crate) struct ConnCounters {
    /// Connections accepted.
    pub(crate) accepted: AtomicU64,
    /// Connections open, by protocol ([`PROTOCOLS`]); a plain-HTTP connection counts from its
    /// first request (its protocol is not known before).
    pub(crate) open: [AtomicU64; 2],
    /// TLS handshakes completed.
    pub(crate) handshakes: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub(crate) handshake_errors: AtomicU64,
    /// Plain connections parked in the listener's lots now (dormant, without a task).
    pub(crate) dormant: AtomicU64,
}

/// Protocol labels of [`ConnCounters::open`].
pub(crate) const PROTOCOLS: [&str; 2] = ["http1", "http2"];

/// An open connection: what the request path knows of it, and its place in its listener's
/// gauge (counted once its protocol is known, uncounted when dropped with the connection's
/// service). One allocation per connection, shared by its service's clones.
struct OpenConn {
    shared: Arc<Shared>,
    info: ConnInfo,
    /// 0 unknown, else the index in [`PROTOCOLS`] plus one.
    protocol: AtomicU8,
}

impl OpenConn {
    fn counters(&self) -> Option<&ConnCounters> {
        self.shared.connections.get(self.info.listener)
    }

    /// Counts the connection under `h2` or HTTP/1 the first time it is called.
    #[inline]
    fn mark(&self, h2: bool) {
        if self.protocol.load(Ordering::Relaxed) != 0 {
            return;
        }
        let i = usize::from(h2);
        if self
            .protocol
            .compare_exchange(0, i as u8 + 1, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            if let Some(c) = self.counters() {
                c.open[i].fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl Drop for OpenConn {
    fn drop(&mut self) {
        closed(
            &self.shared,
            self.info.listener,
            self.protocol.load(Ordering::Relaxed),
        );
    }
}

/// Takes a connection counted under `protocol` (0: not yet counted) off `listener`'s
/// open-connections gauge.
fn closed(shared: &Shared, listener: usize, protocol: u8) {
    if protocol != 0 {
        if let Some(c) = shared.connections.get(listener) {
            c.open[usize::from(protocol - 1)].fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The HTTP/2 server's settings.
fn h2_settings(limits: &Limits, timeouts: &Timeouts) -> Http2Settings {
    Http2Settings {
        max_concurrent_streams: limits.h2_max_concurrent_streams,
        max_pending_reset_streams: limits.h2_max_pending_reset_streams,
        max_header_list_size: u32::try_from(limits.max_request_header_bytes).unwrap_or(u32::MAX),
        keep_alive_interval: timeouts.idle,
        keep_alive_timeout: H2_PING_TIMEOUT,
        preface_timeout: timeouts.request_header,
    }
}

use server::http2::Settings as Http2Settings;

/// How long an HTTP/2 keep-alive ping may go unanswered before its connection is closed.
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The HTTP/1.1 server's settings.
fn h1_settings(limits: &Limits, timeouts: &Timeouts) -> server::Settings {
    server::Settings {
        limits: HeadLimits {
            max_fields: limits.max_headers,
            max_bytes: limits.max_request_header_bytes,
        },
        request_header: timeouts.request_header,
        idle: timeouts.idle,
        dormant_after: Some(DORMANT_AFTER),
    }
}

/// Idle time after which a kept-alive HTTP/1.1 connection (plain or TLS) drops its serving
/// future and waits for its next bytes in what is left of its task (see [`http1`] and
/// `server::Served::Dormant`): the next request then pays for a new serving future (about a
/// microsecond), and the idle connection holds a few hundred bytes instead of several KiB.
const DORMANT_AFTER: Duration = Duration::from_secs(1);

/// What answers one connection's requests: the request path with the connection's facts.
#[derive(Clone)]
struct Service {
    open: Arc<OpenConn>,
}

impl Service {
    /// The request's future, on the snapshot of now. Not an async layer of its own (each costs
    /// copies of the response on its way back): a hand-over's `Connection: close` is the HTTP/1.1
    /// server's to add (`server::Handler::closing`).
    fn answer<'a>(
        &'a self,
        req: &'a mut http::Request<RequestBody>,
    ) -> impl Future<Output = http::Response<ProxyBody>> + 'a {
        let open = &*self.open;
        open.mark(req.version() >= http::Version::HTTP_2);
        let snap = open.shared.snapshot.load_full();
        forward::handle(snap, &open.shared.settings, &open.info, req)
    }
}

impl server::Handler for Service {
    type Body = ProxyBody;

    fn call<'a>(
        &'a self,
        req: &'a mut http::Request<RequestBody>,
    ) -> impl Future<Output = http::Response<ProxyBody>> {
        self.answer(req)
    }

    fn closing(&self) -> bool {
        // A hand-over to another process: clients reconnect to it after their answer.
        self.open.shared.handing_over.load(Ordering::Relaxed)
    }
}

type ConnError = Box<dyn std::error::Error + Send + Sync>;

/// Serves one client connection: HTTP/1.1 by Switchyard's own server, switching to its HTTP/2
/// server when a plain connection (`h2c`) opens with the HTTP/2 preface. Returns the
/// stream when it went dormant (`h1.dormant_after`).
async fn serve<IO>(
    io: IO,
    service: &Service,
    h1: server::Settings,
    h2: &Http2Settings,
    draining: &AtomicBool,
    h2c: bool,
    wake: Option<Wake>,
) -> Result<Option<(IO, Wake)>, ConnError>
where
    IO: server::Stream,
{
    match server::serve(io, service, h1, draining, h2c, wake).await? {
        Served::Done => Ok(None),
        Served::Dormant { io, wake } => Ok(Some((io, wake))),
        Served::H2 { io, read } => {
            // Boxed: an HTTP/2 connection's future is large and rare on plain listeners. It
            // watches `draining` itself, as the HTTP/1.1 server does.
            Box::pin(server::http2::serve(
                server::Rewind::new(read, io),
                service,
                h2,
                draining,
            ))
            .await?;
            Ok(None)
        }
    }
}

/// What a connection's task holds besides its stream, and a parked connection keeps for its
/// next task: its service, its drain watcher and its hand-over sender (`alive`: the accept
/// loop's hand-over waits until every connection has dropped its own).
struct ConnParts {
    service: Service,
    watcher: crate::drain::Watcher,
    _alive: tokio::sync::mpsc::Sender<()>,
}

impl ConnParts {
    /// The parts as a parked connection keeps them: the facts out of their allocation when
    /// nothing else holds them, so that a parked connection's memory is its slot in the lot's
    /// array, not also a small block among the allocator's busy pages (which such blocks,
    /// one per idle connection, keep from being given back).
    fn into_parked(self) -> ParkedParts {
        let open = match Arc::try_unwrap(self.service.open) {
            Ok(open) => Facts::Owned(Asleep {
                shared: open.shared.clone(),
                listener: open.info.listener,
                peer: open.info.peer,
                tls: open.info.tls,
                // The open-connections gauge is now the parked facts' to decrement.
                protocol: open.protocol.swap(0, Ordering::Relaxed),
            }),
            Err(shared) => Facts::Shared(shared),
        };
        ParkedParts {
            open,
            watcher: self.watcher,
            alive: self._alive,
        }
    }
}

/// A parked connection's [`ConnParts`] (see [`ConnParts::into_parked`]).
struct ParkedParts {
    open: Facts,
    watcher: crate::drain::Watcher,
    alive: tokio::sync::mpsc::Sender<()>,
}

/// A parked connection's facts: by value, or still shared.
enum Facts {
    Owned(Asleep),
    Shared(Arc<OpenConn>),
}

/// An [`OpenConn`] while its connection is parked: without its `X-Forwarded-For` value (40
/// bytes of a slot in the lot), which is made again from the peer's address when it wakes.
/// Like [`OpenConn`], it takes its connection off the open-connections gauge when dropped.
struct Asleep {
    shared: Arc<Shared>,
    listener: usize,
    peer: std::net::SocketAddr,
    tls: bool,
    /// As [`OpenConn::protocol`].
    protocol: u8,
}

impl Drop for Asleep {
    fn drop(&mut self) {
        closed(&self.shared, self.listener, self.protocol);
    }
}

impl ParkedParts {
    /// The parts again, for the connection's next task.
    fn into_parts(self) -> ConnParts {
        let open = match self.open {
            Facts::Owned(mut open) => Arc::new(OpenConn {
                shared: open.shared.clone(),
                info: ConnInfo {
                    listener: open.listener,
                    peer: open.peer,
                    peer_ip: crate::headers::peer_value(open.peer.ip()),
                    tls: open.tls,
                },
                // The gauge is the awake facts' again.
                protocol: AtomicU8::new(std::mem::take(&mut open.protocol)),
            }),
            Facts::Shared(shared) => shared,
        };
        ConnParts {
            service: Service { open },
            watcher: self.watcher,
            _alive: self.alive,
        }
    }
}

/// Where a listener's dormant plain connections wait (see `lot`).
type Lot = lot::LotHandle<ParkedParts>;

/// An HTTP/1.1 connection (plain, or TLS after its handshake), served until it closes. A
/// kept-alive connection idle for `h1.dormant_after` goes dormant: its serving future (boxed,
/// about 4.3 KiB plain and 7.7 KiB over TLS: room for a request's) is dropped. A plain one is
/// then parked in the listener's `lot` and this task ends; otherwise the rest of the task
/// (about 600 bytes) waits for the client's next bytes (then serves again), the end of the
/// idle time or the drain (then closes). `h2c`: a fresh plain connection may open with the
/// HTTP/2 preface. `wake`: a connection taken up again from the lot, with its idle deadline.
#[allow(clippy::manual_async_fn)] // an `async fn` keeps its arguments twice (about 150 bytes)
fn http1<IO: server::Stream>(
    mut io: IO,
    mut parts: ConnParts,
    (h1, h2): (server::Settings, Arc<Http2Settings>),
    h2c: bool,
    mut wake: Option<Wake>,
    lot: Option<Lot>,
) -> impl Future<Output = ()> + Send {
    async move {
        let draining = parts.watcher.draining();
        loop {
            let service = &parts.service;
            let served = parts
                .watcher
                .watch(|| {
                    SelfDraining::new(Box::pin(serve(
                        io,
                        service,
                        h1,
                        &h2,
                        &draining,
                        h2c && wake.is_none(),
                        wake.take(),
                    )))
                })
                .await;
            let w = match served {
                Ok(None) => return,
                Ok(Some((t, w))) => {
                    io = t;
                    wake.insert(w)
                }
                Err(e) => {
                    debug!(error = %e, "connection ended with an error");
                    return;
                }
            };
            debug!("connection dormant");
            if let Some(lot) = &lot {
                match io.into_tcp() {
                    Ok(tcp) => {
                        lot.park(tcp, w.deadline(), parts.into_parked());
                        return;
                    }
                    Err(back) => io = back,
                }
            }
            let readable = tokio::select! {
                biased;
                () = parts.watcher.drained() => false,
                r = io.readable() => r.is_ok(),
                _ = w.idle_over() => false,
            };
            if !readable {
                debug!("dormant connection closed");
                if IO::CLOSE_NOTIFY {
                    // TLS: its close_notify, as a connection closing in its task sends it.
                    let _ = tokio::time::timeout(
                        CLOSE_WAIT,
                        tokio::io::AsyncWriteExt::shutdown(&mut io),
                    )
                    .await;
                }
                return;
            }
            debug!("dormant connection woken");
        }
    }
}

/// Starts the lot of a plain listener's accept loop. A connection woken there is served
/// again in a task of its own on this runtime. Without a lot (its readiness queue could not
/// be made), dormant connections wait in their tasks.
fn spawn_lot(
    graceful: &Drain,
    (h1, h2): (server::Settings, Arc<Http2Settings>),
    shared: Arc<Shared>,
    (index, name): (usize, &Name),
) -> Option<Lot> {
    let mut own = graceful.watcher();
    // Each worker's lot of the listener adds its own.
    let gauge = move |delta: i64| {
        if let Some(c) = shared.connections.get(index) {
            if delta >= 0 {
                c.dormant.fetch_add(delta.unsigned_abs(), Ordering::Relaxed);
            } else {
                c.dormant.fetch_sub(delta.unsigned_abs(), Ordering::Relaxed);
            }
        }
    };
    let listener = name.clone();
    let wake = move |lot: &Lot, tcp, idle_until, parts: ParkedParts| {
        let parts = parts.into_parts();
        let span = debug_span!("conn", listener = %listener, peer = %parts.service.open.info.peer);
        let task = http1(
            tcp,
            parts,
            (h1, h2.clone()),
            false,
            Some(Wake::until(idle_until)),
            Some(lot.clone()),
        );
        spawn_boxed(task.instrument(span));
    };
    lot::spawn(async move { own.drained().await }, wake, gauge)
        .inspect_err(|e| warn!(listener = %name, error = %e, "no lot for dormant connections: they keep their tasks"))
        .ok()
}

/// Spawns a connection's task with its future boxed: the runtime moves a spawned future
/// about nine times on its way into the task (each a copy of its whole size, about 570 bytes
/// plain and 4 KiB over TLS), and a box is moved as a pointer.
fn spawn_boxed<F: Future<Output = ()> + Send + 'static>(task: F) {
    tokio::spawn(Box::pin(task));
}

/// How long a dormant TLS connection's close waits for its close_notify to go out.
const CLOSE_WAIT: Duration = Duration::from_millis(500);

type TlsStream = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// An HTTPS connection's task: the handshake, then HTTP/2 (ALPN `h2`) or HTTP/1.1
/// ([`http1`]). The handshake and HTTP/2 are boxed, so an idle HTTP/1.1 connection's task keeps
/// no room for them.
async fn secure(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    handshake_timeout: Duration,
    service: Service,
    (h1, h2): (server::Settings, Arc<Http2Settings>),
    mut watcher: crate::drain::Watcher,
    alive: tokio::sync::mpsc::Sender<()>,
) {
    let Some(stream) = Box::pin(handshake(acceptor, tcp, handshake_timeout, &service.open)).await
    else {
        return;
    };
    let alpn_h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    service.open.mark(alpn_h2);
    if alpn_h2 {
        let draining = watcher.draining();
        let served =
            Box::pin(watcher.watch(|| {
                SelfDraining::new(server::http2::serve(stream, &service, &h2, &draining))
            }))
            .await;
        if let Err(e) = served {
            debug!(error = %e, "connection ended with an error");
        }
    } else {
        let parts = ConnParts {
            service,
            watcher,
            _alive: alive,
        };
        http1(stream, parts, (h1, h2), false, None, None).await;
    }
}

/// The TLS handshake of one connection within `timeout`; `None` when it failed (counted and
/// logged here).
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    timeout: Duration,
    open: &OpenConn,
) -> Option<TlsStream> {
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => {
            if let Some(c) = open.counters() {
                c.handshakes.fetch_add(1, Ordering::Relaxed);
            }
            Some(stream)
        }
        Ok(Err(e)) => {
            if let Some(c) = open.counters() {
                c.handshake_errors.fetch_add(1, Ordering::Relaxed);
            }
            debug!(error = %e, "tls handshake failed");
            None
        }
        Err(_) => {
            if let Some(c) = open.counters() {
                c.handshake_errors.fetch_add(1, Ordering::Relaxed);
            }
            debug!("tls handshake timed out");
            None
        }
    }
}

/// The accept loop of listener `index`, its connections spawned on the runtime that runs it.
pub(crate) fn listener_task(
    index: usize,
    bound: BoundListener,
    shared: Arc<Shared>,
    limits: Limits,
    timeouts: Timeouts,
    mut shutdown: watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    // No span around the loop: entering one on every poll (the filter's lock included) cost
    // about 200 instructions per accepted connection. Its events name the listener instead.
    let name = bound.name;
    async move {
        let h2 = Arc::new(h2_settings(&limits, &timeouts));
        let h1 = h1_settings(&limits, &timeouts);
        let graceful = Drain::new();
        let (alive_tx, mut alive_rx) = tokio::sync::mpsc::channel::<()>(1);
        let tls = bound.tls.map(tokio_rustls::TlsAcceptor::from);
        let lot = match tls {
            None => spawn_lot(&graceful, (h1, h2.clone()), shared.clone(), (index, &name)),
            Some(_) => None,
        };
        // Small responses must not wait for Nagle. Set on the listening socket, accepted ones
        // inherit it (Linux): no system call per connection. Set on each connection only if
        // the listener refused.
        let nodelay_inherited = socket2::SockRef::from(&bound.listener)
            .set_tcp_nodelay(true)
            .is_ok();
        // One wait for the shutdown for the whole loop, asked only when no connection is
        // waiting (a new wait per connection took the channel's locks twice). A flood of
        // connections still lets it through: the runtime's budget makes `accept` pending
        // after 128 in a row.
        let mut stop = std::pin::pin!(shutdown.wait_for(|s| *s));
        loop {
            let accepted = tokio::select! {
                biased;
                r = bound.listener.accept() => r,
                _ = &mut stop => break,
            };
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if !nodelay_inherited {
                let _ = tcp.set_nodelay(true);
            }
            let counters = shared.connections.get(index);
            if let Some(c) = counters {
                c.accepted.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(c) = shared.worker_accepted.get(crate::worker::current()) {
                c.fetch_add(1, Ordering::Relaxed);
            }
            let service = Service {
                open: Arc::new(OpenConn {
                    shared: shared.clone(),
                    info: ConnInfo {
                        listener: index,
                        peer,
                        peer_ip: crate::headers::peer_value(peer.ip()),
                        tls: tls.is_some(),
                    },
                    protocol: AtomicU8::new(0),
                }),
            };
            let alive = alive_tx.clone();
            let watcher = graceful.watcher();
            let h2 = h2.clone();
            let span = debug_span!("conn", listener = %name, %peer);
            let Some(acceptor) = tls.clone() else {
                let parts = ConnParts {
                    service,
                    watcher,
                    _alive: alive,
                };
                let task = http1(tcp, parts, (h1, h2), true, None, lot.clone());
                spawn_boxed(task.instrument(span));
                continue;
            };
            let handshake_timeout = timeouts.request_header;
            let task = secure(
                acceptor,
                tcp,
                handshake_timeout,
                service,
                (h1, h2),
                watcher,
                alive,
            );
            spawn_boxed(task.instrument(span));
        }
        info!(
            listener = %name,
            connections = graceful.count(),
            "stopped accepting; draining"
        );
        drop(alive_tx);
        let mut drain = timeouts.drain;
        if shared.handing_over.load(Ordering::Relaxed) {
            // Every connection task holds a sender: `recv` ends when the last one is done.
            let own = tokio::time::timeout(drain / 2, alive_rx.recv()).await;
            if own.is_ok() {
                info!(listener = %name, "every connection finished");
                return;
            }
            drain -= drain / 2;
        }
        if tokio::time::timeout(drain, graceful.shutdown())
            .await
            .is_err()
        {
            warn!(listener = %name, "drain deadline reached with connections still open");
        }
    }
}
