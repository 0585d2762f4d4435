//! Thread-per-core workers: N OS threads, each running its own current-thread tokio runtime
//! that accepts and serves its own connections, so a request never moves between threads.
//!
//! A worker's index is kept in a thread-local set when its thread starts; the upstream pools
//! (`crate::pool`) keep one shard of idle connections per worker and use it to pick the shard,
//! so a pooled connection is only used on the runtime whose reactor owns its socket. Threads
//! that are not workers (the main runtime, tests) read index 0.
//!
//! Workers serve connections only: the snapshot writer, health checks and discovery stay on
//! the runtime that called `spawn_proxy_on`. [`Workers::stop`] ends every worker's runtime,
//! dropping what still runs on it (after the proxy's drain).

use std::cell::Cell;
use std::future::Future;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker running on this thread; 0 on any other thread.
#[inline]
pub(crate) fn current() -> usize {
    INDEX.with(Cell::get)
}

struct Worker {
    handle: Handle,
    stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<()>,
}

/// Running worker threads (`switchyard-worker-<i>`), each with a current-thread runtime.
pub struct Workers {
    workers: Vec<Worker>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("count", &self.workers.len())
            .finish()
    }
}

impl Workers {
    /// Starts `count` worker threads (at least one).
    pub fn start(count: usize) -> std::io::Result<Self> {
        let mut workers = Vec::with_capacity(count.max(1));
        for index in 0..count.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let handle = rt.handle().clone();
            let (stop, stop_rx) = oneshot::channel::<()>();
            let (stopped_tx, stopped) = oneshot::channel();
            std::thread::Builder::new()
                .name(format!("switchyard-worker-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(index));
                    // Either outcome means stop: asked to, or the owner is gone.
                    let _ = rt.block_on(stop_rx);
                    // Whatever still runs here (connections past the drain deadline) is
                    // dropped with the runtime.
                    drop(rt);
                    // The owner may not wait for the end.
                    let _ = stopped_tx.send(());
                })?;
            workers.push(Worker {
                handle,
                stop,
                stopped,
            });
        }
        Ok(Self { workers })
    }

    /// How many workers run.
    pub fn len(&self) -> usize {
        self.workers.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.workers.is_empty()
    }

    /// Spawns `task` on worker `index` (modulo the number of workers).
    pub(crate) fn spawn<F>(&self, index: usize, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.workers[index % self.workers.len()].handle.spawn(task)
    }

    /// Ends every worker's runtime and waits until each thread has dropped it.
    pub async fn stop(self) {
        let mut waits = Vec::with_capacity(self.workers.len());
        for w in self.workers {
            // A worker whose thread is gone already has nothing to stop.
            let _ = w.stop.send(());
            waits.push(w.stopped);
        }
        for w in waits {
            // Err: the thread ended without saying so (it panicked); nothing is left to wait for.
            let _ = w.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn each_worker_runs_its_tasks_on_its_own_thread_with_its_index() {
        let workers = Workers::start(2).expect("workers");
        let mut seen = Vec::new();
        for i in 0..4 {
            let got = workers
                .spawn(i, async {
                    (current(), std::thread::current().name().map(str::to_owned))
                })
                .await
                .expect("task");
            seen.push(got);
        }
        let name = |i: usize| Some(format!("switchyard-worker-{i}"));
        assert_eq!(
            seen,
            vec![(0, name(0)), (1, name(1)), (0, name(0)), (1, name(1))]
        );
        assert_eq!(current(), 0);
        workers.stop().await;
    }
}
