//! Upstream connections: connecting (plain or TLS) with a deadline, and a bounded, lock-free
//! pool of idle HTTP/1.1 connections per endpoint.
//!
//! The pool is a fixed-capacity `ArrayQueue` per worker (`crate::worker`): taking and returning
//! a connection is one atomic operation, never a lock. A connection's socket is registered with
//! the reactor of the runtime that opened it, so with thread-per-core workers each worker keeps
//! its own queue and only ever takes its own connections back. A connection goes back only
//! after its response was read to its end (`crate::upstream::body`), and one that the endpoint
//! closed, sent unasked bytes on, or that idled too long is dropped on the way out.

use crate::upstream::conn::{Conn, Io};
use crossbeam_queue::ArrayQueue;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

struct Idle {
    conn: Box<Conn>,
    since: Instant,
}

/// Idle connections of one endpoint, one queue per worker.
pub(crate) struct Pool {
    shards: Box<[ArrayQueue<Idle>]>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("idle", &self.idle()).finish()
    }
}

impl Pool {
    /// A pool keeping up to `capacity` idle connections for each of `workers` workers.
    pub(crate) fn new(capacity: usize, workers: usize) -> Self {
        Self {
            shards: (0..workers.max(1))
                .map(|_| ArrayQueue::new(capacity.max(1)))
                .collect(),
        }
    }

    /// The calling worker's queue.
    #[inline]
    fn shard(&self) -> &ArrayQueue<Idle> {
        match self.shards.len() {
            1 => &self.shards[0],
            n => &self.shards[crate::worker::current() % n],
        }
    }

    /// Connections waiting in the pool now, over every worker.
    pub(crate) fn idle(&self) -> usize {
        self.shards.iter().map(ArrayQueue::len).sum()
    }

    /// An idle connection of the calling worker that is still open and was idle less than
    /// `max_idle`.
    pub(crate) fn take(&self, max_idle: Duration) -> Option<Box<Conn>> {
        let idle = self.shard();
        while let Some(mut c) = idle.pop() {
            if c.since.elapsed() < max_idle && c.conn.is_open() {
                return Some(c.conn);
            }
        }
        None
    }

    /// Returns a connection whose last response was read to its end (on the worker that opened
    /// it: a response body is read where its request was served); dropped (and so closed)
    /// when the worker's queue is full.
    pub(crate) fn put(&self, conn: Box<Conn>) {
        // A full pool means enough idle connections already: this one is closed by the drop.
        let _ = self.shard().push(Idle {
            conn,
            since: Instant::now(),
        });
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("connect to {addr} timed out")]
    Timeout { addr: SocketAddr },
    #[error("connect to {addr} failed")]
    Io {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("tls handshake with {addr} failed")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl ConnectError {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Self::Tls { .. })
    }
}

/// TLS towards an endpoint: the client config and the server name to present.
#[derive(Clone)]
pub(crate) struct UpstreamTls {
    pub(crate) config: Arc<rustls::ClientConfig>,
    pub(crate) server_name: rustls::pki_types::ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// Opens a new connection to `addr` within `timeout`; also returns how long that took.
pub(crate) async fn connect(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<(Box<Conn>, Duration), ConnectError> {
    let start = Instant::now();
    let io = connect_io(addr, tls, timeout).await?;
    Ok((Conn::new(io), start.elapsed()))
}

/// Opens the byte stream to `addr` (TCP, then TLS when `tls` is set) within `timeout`.
pub(crate) async fn connect_io(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    timeout: Duration,
) -> Result<Io, ConnectError> {
    let work = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|source| ConnectError::Io { addr, source })?;
        // Small requests and responses must not wait for Nagle.
        let _ = tcp.set_nodelay(true);
        match tls {
            None => Ok(Io::Plain(tcp)),
            Some(t) => {
                let conn = tokio_rustls::TlsConnector::from(t.config.clone());
                let stream = conn
                    .connect(t.server_name.clone(), tcp)
                    .await
                    .map_err(|source| ConnectError::Tls { addr, source })?;
                Ok(Io::Tls(Box::new(stream)))
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| ConnectError::Timeout { addr })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::Workers;

    #[tokio::test(flavor = "current_thread")]
    async fn a_worker_takes_back_only_the_connections_it_pooled() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Keeps the accepted ends open, so the pooled connections stay usable.
        let held = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let pool = Arc::new(Pool::new(4, 2));
        let workers = Workers::start(2).expect("workers");
        let max_idle = Duration::from_secs(30);
        let p = pool.clone();
        workers
            .spawn(0, async move {
                let (conn, _) = connect(addr, None, Duration::from_secs(5))
                    .await
                    .expect("connect");
                p.put(conn);
            })
            .await
            .expect("worker 0");
        assert_eq!(pool.idle(), 1);
        let p = pool.clone();
        let on_1 = workers
            .spawn(1, async move { p.take(max_idle).is_some() })
            .await
            .expect("worker 1");
        assert!(!on_1, "worker 1 took worker 0's connection");
        let p = pool.clone();
        let on_0 = workers
            .spawn(0, async move { p.take(max_idle).is_some() })
            .await
            .expect("worker 0");
        assert!(on_0, "worker 0 lost its connection");
        assert_eq!(pool.idle(), 0);
        workers.stop().await;
        held.abort();
    }
}
