//! The lot: where a listener's dormant plain connections wait for their next bytes without a
//! task each.
//!
//! A kept-alive HTTP/1.1 connection idle for a second goes dormant (`server::Served::Dormant`).
//! Over TLS its task keeps waiting (the session's state is in the task). A plain connection has
//! nothing left to keep but its socket, its idle deadline and what its next task needs (`P`:
//! the connection's service, drain watcher and hand-over sender), so it is parked here and its
//! task and timer end. Its socket leaves the runtime's reactor (whose state for a socket is
//! 256 bytes) for the lot's own readiness queue (an `epoll` instance on Linux, through `mio`),
//! where it is named by its slot's number and costs no memory of the process's. The lot's
//! thread waits on that queue until the earliest idle deadline:
//! - bytes (or a close) on a parked socket: the socket goes back to the runtime's reactor and
//!   `wake` serves it again, in a new task on the runtime, with what is left of its idle time;
//! - its idle deadline: it is closed;
//! - the drain (or the runtime gone): every parked connection is closed and the thread ends.
//!
//! A parking costs three system calls (the socket leaves the reactor, the lot's queue takes it,
//! the lot's thread is woken) and a wake two, once per second of idleness at most. A parked
//! connection costs its slot (a few dozen bytes) and its deadline's entry, plus what `P` points
//! to, instead of a task of several hundred bytes, a timer and the reactor's state.

use mio::unix::SourceFd;
use mio::{Events, Interest, Registry, Token};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, warn};

/// A running lot's handle: parks connections in it.
pub(crate) struct LotHandle<P> {
    tx: mpsc::Sender<Parked<P>>,
    bell: Arc<Bell>,
}

impl<P> Clone for LotHandle<P> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            bell: self.bell.clone(),
        }
    }
}

/// Wakes the lot's thread: for new arrivals, or to end (`closing`).
struct Bell {
    waker: mio::Waker,
    closing: AtomicBool,
}

impl Bell {
    fn ring(&self) {
        if let Err(e) = self.waker.wake() {
            warn!(error = %e, "the lot's thread could not be woken");
        }
    }
}

/// Rings the lot's bell to end it when dropped: when the drain comes, or with its task when
/// the runtime shuts down.
struct Closer(Arc<Bell>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.closing.store(true, Ordering::Release);
        self.0.ring();
    }
}

/// A parked connection: its socket is out of the runtime's reactor.
struct Parked<P> {
    tcp: std::net::TcpStream,
    idle_until: Instant,
    payload: P,
}

impl<P: Send + 'static> LotHandle<P> {
    /// Parks `tcp` (dormant: its last read found nothing) until bytes arrive, `idle_until`
    /// or the drain. When the lot is ending (the listener drains), the connection is closed.
    pub(crate) fn park(&self, tcp: TcpStream, idle_until: Instant, payload: P) {
        if self.bell.closing.load(Ordering::Acquire) {
            debug!("dormant connection closed: the listener drains");
            return;
        }
        // Out of the runtime's reactor (its state for the socket is freed); still non-blocking.
        let tcp = match tcp.into_std() {
            Ok(tcp) => tcp,
            Err(e) => {
                debug!(error = %e, "dormant connection closed: it could not leave the reactor");
                return;
            }
        };
        let parked = Parked {
            tcp,
            idle_until,
            payload,
        };
        if self.tx.send(parked).is_err() {
            debug!("dormant connection closed: the listener drains");
            return;
        }
        self.bell.ring();
    }
}

/// The bell's token in the lot's queue (a slot's token is its number).
const BELL: Token = Token(usize::MAX);

/// Starts a lot for the current runtime: a thread of its own, and a task that ends it when
/// `drained` is ready (the listener drains or is gone) or the runtime shuts down. `wake` takes
/// up a connection that became readable (from the lot's thread, in the runtime's context: a
/// task it spawns runs on the runtime), with its idle deadline and the lot's handle to park it
/// again; `gauge` is told each change in the number of connections parked (a metric's). Fails
/// when the lot's readiness queue or thread cannot be made.
pub(crate) fn spawn<P, D, W, G>(drained: D, wake: W, gauge: G) -> io::Result<LotHandle<P>>
where
    P: Send + 'static,
    D: Future<Output = ()> + Send + 'static,
    W: FnMut(&LotHandle<P>, TcpStream, Instant, P) + Send + 'static,
    G: Fn(i64) + Send + 'static,
{
    let queue = mio::Poll::new()?;
    let bell = Arc::new(Bell {
        waker: mio::Waker::new(queue.registry(), BELL)?,
        closing: AtomicBool::new(false),
    });
    let (tx, rx) = mpsc::channel();
    let handle = LotHandle {
        tx,
        bell: bell.clone(),
    };
    let runtime = tokio::runtime::Handle::current();
    let span = tracing::Span::current();
    let lot = Lot {
        queue,
        rx,
        handle: handle.clone(),
        wake,
        gauge,
    };
    std::thread::Builder::new()
        .name("lot".into())
        .stack_size(LOT_STACK)
        .spawn(move || {
            let _runtime = runtime.enter();
            let _span = span.enter();
            lot.run();
        })?;
    let closer = Closer(bell);
    tokio::spawn(async move {
        let _closer = closer;
        drained.await;
    });
    Ok(handle)
}

/// The lot's thread's stack: it runs `wake`, which builds a connection's task (boxed).
const LOT_STACK: usize = 256 * 1024;

/// Readiness events taken from the lot's queue at a time.
const EVENTS: usize = if cfg!(test) { 4 } else { 256 };

/// What the lot's thread owns.
struct Lot<P, W, G> {
    queue: mio::Poll,
    rx: mpsc::Receiver<Parked<P>>,
    /// Given to `wake`, to park a woken connection again.
    handle: LotHandle<P>,
    wake: W,
    gauge: G,
}

impl<P, W, G> Lot<P, W, G>
where
    W: FnMut(&LotHandle<P>, TcpStream, Instant, P),
    G: Fn(i64),
{
    /// The lot's loop (see the module's documentation), until the bell rings its end.
    fn run(mut self) {
        let mut slots = Slots::default();
        let mut events = Events::with_capacity(EVENTS);
        let mut told = 0usize;
        loop {
            if slots.live != told {
                (self.gauge)(slots.live as i64 - told as i64);
                told = slots.live;
            }
            let timeout = slots
                .next_deadline()
                .map(|at| at.saturating_duration_since(Instant::now()));
            if let Err(e) = self.queue.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                warn!(error = %e, "the lot's readiness queue failed: its dormant connections are closed");
                break;
            }
            if self.handle.bell.closing.load(Ordering::Acquire) {
                break;
            }
            for event in &events {
                if event.token() == BELL {
                    continue;
                }
                if let Some(p) = slots.take_ready(self.queue.registry(), event.token().0) {
                    self.serve(p);
                }
            }
            // New arrivals (the bell rang for them, or rings after this look).
            while let Ok(p) = self.rx.try_recv() {
                debug!("dormant connection parked");
                if let Err((e, p)) = slots.insert(self.queue.registry(), p) {
                    // Served in a task again, as before it went dormant.
                    debug!(error = %e, "dormant connection not parked");
                    self.serve(p);
                }
            }
            slots.expire(Instant::now());
        }
        if slots.live > 0 {
            debug!(
                connections = slots.live,
                "dormant connections closed: the listener drains"
            );
        }
        (self.gauge)(-(told as i64));
    }

    /// Hands a connection back to the runtime's reactor and to `wake`.
    fn serve(&mut self, p: Parked<P>) {
        match TcpStream::from_std(p.tcp) {
            Ok(tcp) => {
                debug!("dormant connection woken");
                (self.wake)(&self.handle, tcp, p.idle_until, p.payload);
            }
            Err(e) => debug!(error = %e, "dormant connection closed: the reactor refused it"),
        }
    }
}

/// The parked connections, by slot, and their idle deadlines in order.
struct Slots<P> {
    slots: Chunked<Slot<P>>,
    free: Vec<usize>,
    /// Deadline, slot, generation: an entry whose slot was emptied or reused since is stale
    /// and skipped (rebuilt away once stale ones outnumber the live).
    deadlines: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    live: usize,
    /// The next parking's generation.
    next_generation: u64,
}

struct Slot<P> {
    /// The generation of the connection parked here (or last parked, when empty).
    generation: u64,
    parked: Option<Parked<P>>,
}

/// Slots in chunks of [`CHUNK`]: a crowd of parkings adds chunks, where one array would be
/// moved to another twice its size at each doubling (at ten thousand idle connections, 1.3 MB
/// copied, and the old array's pages left with the allocator).
struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

/// Slots per chunk (a few in tests, so that they cross chunks).
const CHUNK: usize = if cfg!(test) { 3 } else { 256 };

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Self {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    fn len(&self) -> usize {
        self.len
    }

    fn push(&mut self, value: T) {
        match self.chunks.last_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    fn get(&self, k: usize) -> Option<&T> {
        self.chunks.get(k / CHUNK)?.get(k % CHUNK)
    }

    fn get_mut(&mut self, k: usize) -> Option<&mut T> {
        self.chunks.get_mut(k / CHUNK)?.get_mut(k % CHUNK)
    }

    fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flatten()
    }
}

/// Slot `k`, which must exist (as a `Vec`'s index).
impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;

    fn index(&self, k: usize) -> &T {
        &self.chunks[k / CHUNK][k % CHUNK]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, k: usize) -> &mut T {
        &mut self.chunks[k / CHUNK][k % CHUNK]
    }
}

/// Slots beyond which an empty lot gives its memory back (after a crowd of idle connections
/// has gone). Small in tests, which cannot open thousands of sockets.
const KEEP_SLOTS: usize = if cfg!(test) { 4 } else { 1024 };

impl<P> Default for Slots<P> {
    fn default() -> Self {
        Self {
            slots: Chunked::default(),
            free: Vec::new(),
            deadlines: BinaryHeap::new(),
            live: 0,
            next_generation: 0,
        }
    }
}

impl<P> Slots<P> {
    /// Parks `p`, its socket's read readiness (or close) queued in `registry` under its slot's
    /// number. A socket readable already is queued at once. Gives `p` back when the queue
    /// refuses it.
    fn insert(&mut self, registry: &Registry, p: Parked<P>) -> Result<(), (io::Error, Parked<P>)> {
        let generation = self.next_generation;
        self.next_generation += 1;
        let k = self.free.pop().unwrap_or_else(|| {
            self.slots.push(Slot {
                generation,
                parked: None,
            });
            self.slots.len() - 1
        });
        let fd = p.tcp.as_raw_fd();
        if let Err(e) = registry.register(&mut SourceFd(&fd), Token(k), Interest::READABLE) {
            self.free.push(k);
            return Err((e, p));
        }
        let slot = &mut self.slots[k];
        slot.generation = generation;
        self.deadlines.push(Reverse((p.idle_until, k, generation)));
        slot.parked = Some(p);
        self.live += 1;
        if self.deadlines.len() > 2 * self.live + 64 {
            self.compact();
        }
        Ok(())
    }

    /// The connection parked in slot `k`, named by a readiness event, taken out and out of
    /// `registry`'s queue. A slot's socket leaves the queue when it is taken out (or closed),
    /// so an event names the slot's present connection.
    fn take_ready(&mut self, registry: &Registry, k: usize) -> Option<Parked<P>> {
        let generation = self.slots.get(k)?.generation;
        let p = self.take(k, generation)?;
        if let Err(e) = registry.deregister(&mut SourceFd(&p.tcp.as_raw_fd())) {
            // Its later events would name a slot that may be reused: a spurious wake of the
            // connection parked there, which then waits in its task.
            debug!(error = %e, "a woken dormant connection stays in the lot's queue");
        }
        Some(p)
    }

    /// The connection parked in slot `k`, taken out, if it is still the one of `generation`
    /// (a dropped one is closed, and so leaves the readiness queue).
    fn take(&mut self, k: usize, generation: u64) -> Option<Parked<P>> {
        let slot = self.slots.get_mut(k)?;
        if slot.generation != generation {
            return None;
        }
        let p = slot.parked.take()?;
        self.free.push(k);
        self.live -= 1;
        if self.live == 0 && self.slots.len() > KEEP_SLOTS {
            // Deadline entries name generations no slot will have again.
            self.slots = Chunked::default();
            self.free = Vec::new();
            self.deadlines = BinaryHeap::new();
        }
        Some(p)
    }

    /// The earliest idle deadline of a parked connection, stale entries dropped on the way.
    fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&Reverse((at, k, generation))) = self.deadlines.peek() {
            let slot = &self.slots[k];
            if slot.generation == generation && slot.parked.is_some() {
                return Some(at);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Closes the connections whose idle time is over at `now`.
    fn expire(&mut self, now: Instant) {
        let mut closed = 0usize;
        while let Some(&Reverse((at, k, generation))) = self.deadlines.peek() {
            if at > now {
                break;
            }
            self.deadlines.pop();
            // Dropped: closed.
            if self.take(k, generation).is_some() {
                closed += 1;
            }
        }
        if closed > 0 {
            debug!(connections = closed, "dormant connection closed: idle");
        }
    }

    /// Rebuilds the deadlines from the live connections alone.
    fn compact(&mut self) {
        self.deadlines = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(k, s)| {
                s.parked
                    .as_ref()
                    .map(|p| Reverse((p.idle_until, k, s.generation)))
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::mpsc;

    const WAIT: Duration = Duration::from_secs(10);

    /// A woken connection (`None` when it was parked again), its deadline and payload.
    type Woken = (Option<TcpStream>, Instant, u32);

    /// A lot whose woken connections come out of the receiver, or are parked again after their
    /// bytes are read (`repark`, as a served connection would go dormant again), with a drain
    /// to pull.
    fn lot(
        repark: bool,
    ) -> (
        LotHandle<u32>,
        mpsc::UnboundedReceiver<Woken>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        lot_counted(repark, Arc::new(AtomicI64::new(0)))
    }

    /// [`lot`], its gauge adding to `parked`.
    fn lot_counted(
        repark: bool,
        parked: Arc<AtomicI64>,
    ) -> (
        LotHandle<u32>,
        mpsc::UnboundedReceiver<Woken>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let (woken_tx, woken) = mpsc::unbounded_channel();
        let (drain, drained) = tokio::sync::oneshot::channel::<()>();
        let handle = spawn(
            async move {
                // A dropped sender drains too.
                let _ = drained.await;
            },
            move |lot: &LotHandle<u32>, mut tcp: TcpStream, at, p| {
                if !repark {
                    // The test may have stopped listening: nothing to tell then.
                    let _ = woken_tx.send((Some(tcp), at, p));
                    return;
                }
                let (lot, woken_tx) = (lot.clone(), woken_tx.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    if matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {
                        lot.park(tcp, at, p);
                    }
                    let _ = woken_tx.send((None, at, p));
                });
            },
            move |delta| {
                parked.fetch_add(delta, Ordering::Relaxed);
            },
        )
        .expect("a lot");
        (handle, woken, drain)
    }

    /// Waits (bounded) until `parked` reads `want`.
    async fn counted(parked: &AtomicI64, want: i64) {
        tokio::time::timeout(WAIT, async {
            while parked.load(Ordering::Relaxed) != want {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the gauge reads {}, not {want}",
                parked.load(Ordering::Relaxed)
            )
        });
    }

    #[tokio::test]
    async fn the_gauge_follows_the_connections_parked() {
        let parked = Arc::new(AtomicI64::new(0));
        let (lot, mut woken, drain) = lot_counted(false, parked.clone());
        let far = Instant::now() + Duration::from_secs(60);
        let mut clients = park_all(&lot, 3, |_| far).await;
        counted(&parked, 3).await;
        clients[1].write_all(b"x").await.expect("write");
        assert_eq!(next(&mut woken).await.2, 1);
        counted(&parked, 2).await;
        drain.send(()).expect("the lot listens");
        counted(&parked, 0).await;
    }

    /// `n` connected pairs: (client, server side).
    async fn pairs(n: usize) -> Vec<(TcpStream, TcpStream)> {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut out = Vec::new();
        for _ in 0..n {
            let client = TcpStream::connect(addr).await.expect("connect");
            let (server, _) = listener.accept().await.expect("accept");
            // Tokio takes a fresh stream for readable until a read finds nothing, as a dormant
            // connection's last read did.
            let found = server.try_read(&mut [0u8; 1]);
            assert!(matches!(found, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock));
            out.push((client, server));
        }
        out
    }

    /// Parks `n` fresh connections in `lot` (payload: their index, deadline: `deadline(i)`)
    /// and returns their clients.
    async fn park_all(
        lot: &LotHandle<u32>,
        n: usize,
        deadline: impl Fn(usize) -> Instant,
    ) -> Vec<TcpStream> {
        let mut clients = Vec::new();
        for (i, (client, server)) in pairs(n).await.into_iter().enumerate() {
            lot.park(server, deadline(i), i as u32);
            clients.push(client);
        }
        clients
    }

    /// Whether the client sees its connection closed (within the wait).
    async fn closed(client: &mut TcpStream) -> bool {
        let mut buf = [0u8; 16];
        matches!(
            tokio::time::timeout(WAIT, client.read(&mut buf)).await,
            Ok(Ok(0))
        )
    }

    async fn next(woken: &mut mpsc::UnboundedReceiver<Woken>) -> Woken {
        tokio::time::timeout(WAIT, woken.recv())
            .await
            .expect("woken in time")
            .expect("the lot runs")
    }

    #[tokio::test]
    async fn each_parked_connection_is_woken_by_its_own_bytes_with_its_deadline_and_payload() {
        let (lot, mut woken, _drain) = lot(false);
        let far = Instant::now() + Duration::from_secs(60);
        let mut clients = park_all(&lot, 20, |i| far + Duration::from_secs(i as u64)).await;
        // Out of order, one at a time: only the one written to wakes.
        for i in [7usize, 0, 19, 3] {
            clients[i].write_all(b"GET").await.expect("write");
            let (tcp, at, p) = next(&mut woken).await;
            assert_eq!(p, i as u32);
            assert_eq!(at, far + Duration::from_secs(i as u64));
            // The stream serves again: its bytes are there, and an answer goes back.
            let mut tcp = tcp.expect("a stream");
            let mut buf = [0u8; 3];
            tcp.read_exact(&mut buf).await.expect("read");
            assert_eq!(&buf, b"GET");
            tcp.write_all(b"ok").await.expect("write");
            let mut back = [0u8; 2];
            clients[i].read_exact(&mut back).await.expect("answer");
            assert_eq!(&back, b"ok");
        }
        assert!(woken.try_recv().is_err(), "woken without bytes");
    }

    #[tokio::test]
    async fn a_crowd_parked_at_once_stays_parked_until_written_to() {
        let (lot, mut woken, _drain) = lot(false);
        let far = Instant::now() + Duration::from_secs(60);
        // More than a task's cooperative budget (128) in one go.
        let mut clients = park_all(&lot, 150, |_| far).await;
        clients[149].write_all(b"x").await.expect("write");
        let (_, _, p) = next(&mut woken).await;
        assert_eq!(p, 149, "the first wake is the one written to");
        assert!(woken.try_recv().is_err(), "woken without bytes");
    }

    #[tokio::test]
    async fn more_connections_readable_at_once_than_one_look_at_the_queue_takes_all_wake() {
        let (lot, mut woken, _drain) = lot(false);
        let far = Instant::now() + Duration::from_secs(60);
        let n = 5 * EVENTS + 1;
        let mut clients = park_all(&lot, n, |_| far).await;
        // Parked before the writes: the lot has taken them in once it answers one wake.
        clients[0].write_all(b"x").await.expect("write");
        assert_eq!(next(&mut woken).await.2, 0);
        for c in &mut clients[1..] {
            c.write_all(b"x").await.expect("write");
        }
        let mut seen: Vec<u32> = Vec::new();
        for _ in 1..n {
            seen.push(next(&mut woken).await.2);
        }
        seen.sort_unstable();
        assert_eq!(seen, (1..n as u32).collect::<Vec<_>>());
        assert!(woken.try_recv().is_err(), "woken twice");
    }

    #[tokio::test]
    async fn bytes_that_came_before_the_park_wake_it_at_once() {
        let (lot, mut woken, _drain) = lot(false);
        let (mut client, server) = pairs(1).await.pop().expect("a pair");
        client.write_all(b"early").await.expect("write");
        // Wait until the bytes are there, as they would be in a race with the park.
        server.readable().await.expect("readable");
        lot.park(server, Instant::now() + Duration::from_secs(60), 1);
        let (tcp, _, p) = next(&mut woken).await;
        assert_eq!(p, 1);
        let mut buf = [0u8; 5];
        tcp.expect("a stream")
            .read_exact(&mut buf)
            .await
            .expect("read");
        assert_eq!(&buf, b"early");
    }

    #[tokio::test]
    async fn a_client_that_closes_wakes_its_connection_to_see_the_close() {
        let (lot, mut woken, _drain) = lot(false);
        let (client, server) = pairs(1).await.pop().expect("a pair");
        lot.park(server, Instant::now() + Duration::from_secs(60), 4);
        drop(client);
        let (tcp, _, p) = next(&mut woken).await;
        assert_eq!(p, 4);
        let mut buf = [0u8; 8];
        assert_eq!(
            tcp.expect("a stream").read(&mut buf).await.expect("read"),
            0
        );
    }

    #[tokio::test]
    async fn a_parked_connection_closes_at_its_idle_deadline_and_only_then() {
        let (lot, mut woken, _drain) = lot(false);
        let mut conns = pairs(2).await;
        let (mut late, late_server) = conns.pop().expect("a pair");
        let (mut soon, soon_server) = conns.pop().expect("a pair");
        let now = Instant::now();
        lot.park(late_server, now + Duration::from_secs(120), 1);
        lot.park(soon_server, now + Duration::from_millis(300), 2);
        assert!(closed(&mut soon).await, "closed at its deadline");
        // The other is still parked: it wakes when written to.
        late.write_all(b"x").await.expect("write");
        let (_, _, p) = next(&mut woken).await;
        assert_eq!(p, 1);
        assert!(woken.try_recv().is_err());
    }

    #[tokio::test]
    async fn the_drain_closes_every_parked_connection_and_ends_the_lot() {
        let (lot, mut woken, drain) = lot(false);
        let far = Instant::now() + Duration::from_secs(60);
        let mut clients = park_all(&lot, 5, |_| far).await;
        // Parked before the drain: the lot has taken them in once it answers one wake.
        clients[0].write_all(b"x").await.expect("write");
        assert_eq!(next(&mut woken).await.2, 0);
        drain.send(()).expect("the lot listens");
        for c in &mut clients[1..] {
            assert!(closed(c).await, "closed by the drain");
        }
        // The lot is gone: a connection parked now is closed at once.
        let (mut client, server) = pairs(1).await.pop().expect("a pair");
        tokio::time::timeout(WAIT, async {
            while !lot.bell.closing.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("the lot ended");
        lot.park(server, Instant::now() + Duration::from_secs(60), 9);
        assert!(closed(&mut client).await);
    }

    #[tokio::test]
    async fn connections_woken_and_parked_again_many_times_still_close_at_their_deadline() {
        let (lot, mut woken, _drain) = lot(true);
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut clients = park_all(&lot, 10, |_| deadline).await;
        // Each wake parks it again with a stale deadline entry left behind: 200 of them, past
        // the point where the deadlines are rebuilt from the live connections.
        for round in 0..20 {
            for (i, c) in clients.iter_mut().enumerate() {
                c.write_all(b"y").await.expect("write");
                let (tcp, at, p) = next(&mut woken).await;
                assert!(tcp.is_none());
                assert_eq!(p, i as u32, "round {round}");
                assert_eq!(at, deadline);
            }
        }
        for c in &mut clients {
            assert!(closed(c).await, "closed at the deadline");
        }
    }

    /// Parks `n` fresh connections straight into `slots` with deadlines `base + 10 s - i s`;
    /// the clients are returned to keep the connections open.
    async fn fill(
        slots: &mut Slots<u32>,
        registry: &Registry,
        n: usize,
        base: Instant,
    ) -> Vec<TcpStream> {
        let mut keep = Vec::new();
        for (i, (client, server)) in pairs(n).await.into_iter().enumerate() {
            keep.push(client);
            let parked = Parked {
                tcp: server.into_std().expect("out of the reactor"),
                idle_until: base + Duration::from_secs(10 - i as u64),
                payload: i as u32,
            };
            assert!(slots.insert(registry, parked).is_ok(), "queued");
        }
        keep
    }

    #[tokio::test]
    async fn stale_deadlines_are_skipped_and_rebuilt_away() {
        let mut slots: Slots<u32> = Slots::default();
        let queue = mio::Poll::new().expect("a readiness queue");
        let base = Instant::now();
        let _keep = fill(&mut slots, queue.registry(), 3, base).await;
        assert_eq!(slots.next_deadline(), Some(base + Duration::from_secs(8)));
        // The earliest (slot 2, generation 2) taken out: its entry is stale, the next one counts.
        // Taken as a readable one is (out of the queue too), to be parked again below.
        let p = slots.take_ready(queue.registry(), 2).expect("parked");
        assert_eq!(p.payload, 2);
        assert_eq!(slots.next_deadline(), Some(base + Duration::from_secs(9)));
        assert!(slots.take(2, 2).is_none());
        // Its slot reused for a later deadline: the old generation's entry stays stale, and a
        // late wake for the old generation takes nothing.
        let again = Parked {
            idle_until: base + Duration::from_secs(20),
            ..p
        };
        assert!(slots.insert(queue.registry(), again).is_ok());
        assert!(slots.take(2, 2).is_none());
        assert_eq!(slots.live, 3);
        slots.expire(base + Duration::from_secs(10));
        assert_eq!(slots.live, 1);
        assert_eq!(slots.next_deadline(), Some(base + Duration::from_secs(20)));
        slots.compact();
        assert_eq!(slots.deadlines.len(), 1);
        assert!(slots.take(2, 3).is_some(), "the new generation is taken");
    }

    #[test]
    fn chunked_slots_grow_a_chunk_at_a_time_and_keep_their_numbers() {
        let mut c: Chunked<usize> = Chunked::default();
        assert!(c.get(0).is_none());
        for k in 0..3 * CHUNK + 1 {
            c.push(k);
            assert_eq!(c.len(), k + 1);
        }
        assert_eq!(c.chunks.len(), 4);
        assert!(c.chunks.iter().all(|chunk| chunk.capacity() == CHUNK));
        for k in 0..c.len() {
            assert_eq!(c.get(k), Some(&k));
        }
        assert!(c.get(c.len()).is_none());
        *c.get_mut(CHUNK).expect("slot") = 99;
        assert_eq!(c.get(CHUNK), Some(&99));
        c[CHUNK + 1] = 98;
        assert_eq!(c[CHUNK + 1], 98);
        assert_eq!(c[3 * CHUNK], 3 * CHUNK);
        assert!(c.get_mut(c.len()).is_none());
        assert_eq!(
            c.iter()
                .copied()
                .enumerate()
                .filter(|(k, v)| k != v)
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn an_emptied_lot_past_its_kept_slots_gives_its_memory_back() {
        let mut slots: Slots<u32> = Slots::default();
        let queue = mio::Poll::new().expect("a readiness queue");
        let base = Instant::now();
        let n = KEEP_SLOTS + 2;
        let _keep = fill(&mut slots, queue.registry(), n, base).await;
        for k in 0..n - 1 {
            assert!(slots.take(k, k as u64).is_some());
        }
        assert_eq!(slots.slots.len(), n, "kept while one is parked");
        assert!(slots.take(n - 1, (n - 1) as u64).is_some());
        assert_eq!(slots.slots.chunks.capacity(), 0);
        assert_eq!(slots.deadlines.len(), 0);
        // A late wake for a slot that is gone takes nothing; parking starts over at slot 0 with
        // a generation never seen before.
        assert!(slots.take(n - 1, (n - 1) as u64).is_none());
        let _more = fill(&mut slots, queue.registry(), 1, base).await;
        assert!(slots.take(0, 0).is_none());
        assert!(slots.take(0, n as u64).is_some());
    }
}
