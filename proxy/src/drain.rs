//! Graceful shutdown of a listener's connections: what hyper-util's `GracefulShutdown` does,
//! with a cheaper watch on the request path.
//!
//! hyper-util's watcher polls a `watch::Receiver::changed` future every time the connection's
//! task is polled, and each such poll takes the channel's waiter lock (several times a request,
//! and a lock all connections share). Here a connection registers for the signal once, on its
//! first poll, and afterwards reads one atomic flag per poll; Switchyard's own connections
//! ([`SelfDraining`]) register only once they ask, when they first wait for their client
//! ([`wake_me_on_drain`]). That suffices because the watched connection is the whole of its
//! task (see `crate::listener`): the waker registered wakes that same task, which then polls
//! this future and sees the flag. Counting open
//! connections and waiting for them to finish work as in hyper-util: each connection holds a
//! receiver of one `watch` channel.

use hyper_util::server::graceful::GracefulConnection;
use std::cell::Cell;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::watch;

/// A connection that can be asked to finish gracefully: hyper-util's connections (its trait is
/// sealed, so tests implement this one).
pub(crate) trait Graceful: Future {
    /// The connection checks the drain flag itself and asks to be woken by it only when it
    /// waits for its client ([`wake_me_on_drain`]): [`Watcher::watch`] then registers with
    /// the drain's channel only for a connection that asked (about 400 instructions and
    /// several locked ones saved for each connection that never waits idle: one whose
    /// request is there when it is accepted and which closes after its answer).
    const ASKS: bool = false;

    /// Starts the graceful shutdown (finish the request in flight, take no other).
    fn start_shutdown(self: Pin<&mut Self>);
}

thread_local! {
    /// Set by a connection polled by [`Watcher::watch`] on this thread that is about to wait
    /// for its client: see [`wake_me_on_drain`].
    static ASKED: Cell<bool> = const { Cell::new(false) };
}

/// Called by a [`SelfDraining`] connection, inside its poll, when it checked the drain flag
/// and is about to wait for its client: [`Watcher::watch`], polling it, then makes sure the
/// drain wakes its task. A connection that is waiting for anything else (its upstream, a
/// request's body) sees the flag when it next checks, without being woken.
pub(crate) fn wake_me_on_drain() {
    ASKED.with(|a| a.set(true));
}

impl<C: GracefulConnection> Graceful for C {
    fn start_shutdown(self: Pin<&mut Self>) {
        GracefulConnection::graceful_shutdown(self);
    }
}

pin_project_lite::pin_project! {
    /// A connection that watches the drain flag itself ([`Watcher::draining`]): Switchyard's
    /// HTTP/1 connections check it whenever they are idle, so asking them is a no-op.
    pub(crate) struct SelfDraining<F> {
        #[pin]
        conn: F,
    }
}

impl<F> SelfDraining<F> {
    pub(crate) fn new(conn: F) -> Self {
        Self { conn }
    }
}

impl<F: Future> Future for SelfDraining<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<F::Output> {
        self.project().conn.poll(cx)
    }
}

impl<F: Future> Graceful for SelfDraining<F> {
    const ASKS: bool = true;

    fn start_shutdown(self: Pin<&mut Self>) {}
}

/// The shutdown signal of one listener's connections.
#[derive(Debug)]
pub(crate) struct Drain {
    tx: watch::Sender<()>,
    draining: Arc<AtomicBool>,
}

/// One connection's side of a [`Drain`].
#[derive(Debug)]
pub(crate) struct Watcher {
    rx: watch::Receiver<()>,
    draining: Arc<AtomicBool>,
}

impl Drain {
    /// A signal nobody watches yet.
    pub(crate) fn new() -> Self {
        let (tx, _) = watch::channel(());
        Self {
            tx,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// A watcher for one more connection.
    pub(crate) fn watcher(&self) -> Watcher {
        Watcher {
            rx: self.tx.subscribe(),
            draining: self.draining.clone(),
        }
    }

    /// Connections watched now (their watchers not dropped yet).
    pub(crate) fn count(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Asks every watched connection to finish gracefully, then waits until all have ended.
    pub(crate) async fn shutdown(self) {
        // The flag first: a connection woken by the signal must see it.
        self.draining.store(true, Ordering::Release);
        // No connection left to tell is not an error.
        let _ = self.tx.send(());
        self.tx.closed().await;
    }
}

impl Drop for Drain {
    /// A drain dropped without [`Drain::shutdown`] also asks its connections to finish, as
    /// hyper-util's does (its watchers see the channel close); they are woken by the close.
    fn drop(&mut self) {
        self.draining.store(true, Ordering::Release);
    }
}

impl Watcher {
    /// The flag set when the drain starts, for connections that check it themselves
    /// ([`SelfDraining`]); the watcher still wakes them when it is set.
    pub(crate) fn draining(&self) -> Arc<AtomicBool> {
        self.draining.clone()
    }

    /// Ready once the drain starts (or the [`Drain`] is gone): for a connection waiting outside
    /// [`Watcher::watch`] (a dormant one, see `crate::listener`).
    pub(crate) async fn drained(&mut self) {
        if !self.draining.load(Ordering::Acquire) {
            let _ = self.rx.changed().await;
        }
    }

    /// Runs the connection `make` makes, starting its graceful shutdown once the [`Drain`] is
    /// shut down. Must be the whole of the task that runs it (see the module's documentation).
    /// The connection is made here, in place: a connection future passed in would be stored
    /// twice in this one (once as the argument, once pinned), and a task's size is what every
    /// idle connection costs.
    pub(crate) async fn watch<C: Graceful>(&mut self, make: impl FnOnce() -> C) -> C::Output {
        let Watcher { rx, draining } = self;
        let mut conn = pin!(make());
        let mut signal = pin!(rx.changed());
        let mut registered = false;
        let mut shut = false;
        poll_fn(|cx| {
            loop {
                if !shut {
                    let signalled = if registered || C::ASKS {
                        draining.load(Ordering::Acquire)
                    } else {
                        // Registers this task's waker with the channel, once.
                        registered = true;
                        signal.as_mut().poll(cx).is_ready() || draining.load(Ordering::Acquire)
                    };
                    if signalled {
                        shut = true;
                        conn.as_mut().start_shutdown();
                    }
                }
                if !C::ASKS {
                    return conn.as_mut().poll(cx);
                }
                ASKED.with(|a| a.set(false));
                let polled = conn.as_mut().poll(cx);
                if polled.is_pending() && !registered && !shut && ASKED.with(|a| a.replace(false)) {
                    // The connection waits for its client: from now on the drain wakes it.
                    registered = true;
                    // The channel has counted every signal since this watcher subscribed: one
                    // sent after the connection checked the flag is ready here, and the
                    // connection is polled again to see the flag.
                    if signal.as_mut().poll(cx).is_ready() || draining.load(Ordering::Acquire) {
                        continue;
                    }
                }
                return polled;
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Context, Poll};

    /// A connection that ends once asked to shut down, counting its polls.
    struct Conn {
        asked: bool,
        polls: Arc<AtomicUsize>,
    }

    impl Future for Conn {
        type Output = Result<(), ()>;
        fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Self::Output> {
            self.polls.fetch_add(1, Ordering::Relaxed);
            if self.asked {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }
    }

    impl Graceful for Conn {
        fn start_shutdown(mut self: Pin<&mut Self>) {
            self.asked = true;
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_woken_and_shut_down_when_the_drain_starts() {
        let drain = Drain::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let conn = Conn {
            asked: false,
            polls: polls.clone(),
        };
        let mut watcher = drain.watcher();
        let task = tokio::spawn(async move { watcher.watch(|| conn).await });
        // Until the task has polled once (and registered), nothing can wake it.
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while polls.load(Ordering::Relaxed) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("first poll");
        assert_eq!(drain.count(), 1);
        tokio::time::timeout(std::time::Duration::from_secs(5), drain.shutdown())
            .await
            .expect("every connection ended");
        let result = task.await.expect("task");
        assert_eq!(result, Ok(()));
    }

    #[tokio::test]
    async fn a_dropped_drain_shuts_its_connections_down() {
        let drain = Drain::new();
        let polls = Arc::new(AtomicUsize::new(0));
        let conn = Conn {
            asked: false,
            polls: polls.clone(),
        };
        let mut watcher = drain.watcher();
        let task = tokio::spawn(async move { watcher.watch(|| conn).await });
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while polls.load(Ordering::Relaxed) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("first poll");
        drop(drain);
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("ended")
            .expect("task");
        assert_eq!(result, Ok(()));
    }

    #[tokio::test]
    async fn a_connection_watched_after_the_drain_started_is_shut_down_at_once() {
        let drain = Drain::new();
        let mut watcher = drain.watcher();
        drain.draining.store(true, Ordering::Release);
        let _ = drain.tx.send(());
        let conn = Conn {
            asked: false,
            polls: Arc::new(AtomicUsize::new(0)),
        };
        let result = tokio::time::timeout(std::time::Duration::from_secs(5), async move {
            watcher.watch(|| conn).await
        })
        .await
        .expect("ended");
        assert_eq!(result, Ok(()));
    }

    /// A connection of the kind that watches the drain flag itself: ends once it sees the flag,
    /// asks to be woken by the drain on its polls from the `ask_from`th on, and runs `meanwhile`
    /// on its first poll, after it checked the flag.
    struct Asking {
        draining: Arc<AtomicBool>,
        polls: Arc<AtomicUsize>,
        ask_from: Arc<AtomicUsize>,
        waker: Arc<std::sync::Mutex<Option<std::task::Waker>>>,
        meanwhile: Option<Box<dyn FnOnce() + Send>>,
    }

    impl Future for Asking {
        type Output = Result<(), ()>;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
            let n = self.polls.fetch_add(1, Ordering::Relaxed) + 1;
            if self.draining.load(Ordering::Acquire) {
                return Poll::Ready(Ok(()));
            }
            if let Some(f) = self.meanwhile.take() {
                f();
            }
            if n >= self.ask_from.load(Ordering::Relaxed) {
                wake_me_on_drain();
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    fn asking(drain: &Drain, ask_from: usize) -> Asking {
        Asking {
            draining: drain.draining.clone(),
            polls: Arc::new(AtomicUsize::new(0)),
            ask_from: Arc::new(AtomicUsize::new(ask_from)),
            waker: Arc::default(),
            meanwhile: None,
        }
    }

    async fn polled(polls: &AtomicUsize, n: usize) {
        tokio::time::timeout(std::time::Duration::from_secs(5), async {
            while polls.load(Ordering::Relaxed) < n {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("polled");
    }

    #[tokio::test]
    async fn a_connection_that_asked_is_woken_when_the_drain_starts() {
        let drain = Drain::new();
        let conn = asking(&drain, 1);
        let polls = conn.polls.clone();
        let mut watcher = drain.watcher();
        let task = tokio::spawn(async move { watcher.watch(|| SelfDraining::new(conn)).await });
        polled(&polls, 1).await;
        tokio::time::timeout(std::time::Duration::from_secs(5), drain.shutdown())
            .await
            .expect("every connection ended");
        assert_eq!(task.await.expect("task"), Ok(()));
        assert_eq!(
            polls.load(Ordering::Relaxed),
            2,
            "woken once, and then done"
        );
    }

    #[tokio::test]
    async fn a_connection_that_has_not_asked_is_left_to_see_the_flag_itself() {
        let drain = Drain::new();
        let conn = asking(&drain, usize::MAX);
        let (polls, ask_from, waker) = (
            conn.polls.clone(),
            conn.ask_from.clone(),
            conn.waker.clone(),
        );
        let mut watcher = drain.watcher();
        let task = tokio::spawn(async move { watcher.watch(|| SelfDraining::new(conn)).await });
        polled(&polls, 1).await;
        let shutdown = tokio::spawn(drain.shutdown());
        // Not registered with the drain's channel: the drain does not wake it.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(polls.load(Ordering::Relaxed), 1);
        assert!(!task.is_finished() && !shutdown.is_finished());
        // Woken by what it waits for, it sees the flag and ends, and the drain with it.
        ask_from.store(0, Ordering::Relaxed);
        waker.lock().unwrap().take().expect("waker").wake();
        assert_eq!(task.await.expect("task"), Ok(()));
        tokio::time::timeout(std::time::Duration::from_secs(5), shutdown)
            .await
            .expect("drain ended")
            .expect("drain task");
    }

    #[tokio::test]
    async fn a_drain_that_starts_while_a_connection_decides_to_wait_still_ends_it() {
        let drain = Drain::new();
        let mut conn = asking(&drain, 1);
        // The drain's flag is set after the connection checked it and before it asked; no
        // signal is sent, so only the check made when registering can end it.
        let flag = drain.draining.clone();
        conn.meanwhile = Some(Box::new(move || flag.store(true, Ordering::Release)));
        let mut watcher = drain.watcher();
        let mut watched = pin!(watcher.watch(|| SelfDraining::new(conn)));
        // Nothing else would wake it: it must end within the poll in which it asked.
        let first = poll_fn(|cx| Poll::Ready(watched.as_mut().poll(cx))).await;
        assert_eq!(first, Poll::Ready(Ok(())));
    }
}
