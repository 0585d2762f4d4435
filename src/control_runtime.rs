//! The control plane's own runtime: one thread for the control API, the desired-state writer
//! (and its fsyncs) and the deployment drivers, so control traffic never takes CPU from the
//! event loop that serves requests (with `worker_threads = 1`, the proxy's only thread).
//!
//! Its threads (the worker and the blocking pool's, where the state's fsyncs run) also run at
//! a lower scheduling priority: [`CONTROL_NICE`] above the process's. On a CPU the event loop
//! shares with them, the scheduler then lets a control write wait for the loop rather than
//! preempt it in the middle of a burst of requests: the write takes a little longer, the
//! requests do not. Under full load they still get a share of the CPU (about a tenth against
//! one busy worker), so the API stays usable. Children would inherit that priority, so the
//! caller lowers it only once `switchyard_control::launcher` forks them elsewhere.

use tokio::net::TcpListener;
use tokio::runtime::{Builder, EnterGuard, Runtime};

/// A one-thread runtime, shut down in the background when dropped (it may be dropped inside
/// the main runtime, where a blocking shutdown is not allowed).
pub(crate) struct ControlRuntime(Option<Runtime>);

impl ControlRuntime {
    /// Starts the runtime's thread (`switchyard-control`); `nicer`: its threads run
    /// [`CONTROL_NICE`] steps nicer than the caller.
    pub(crate) fn start(nicer: bool) -> std::io::Result<Self> {
        let mut b = Builder::new_multi_thread();
        b.worker_threads(1)
            .thread_name("switchyard-control")
            .enable_all();
        if nicer {
            // Absolute, from the caller's: a thread the runtime starts from one of its own
            // (the blocking pool's) inherits the lowered value already.
            let nice = nice_of_this_thread().map_or(CONTROL_NICE, |n| n + CONTROL_NICE);
            b.on_thread_start(move || set_nice(nice.min(19)));
        }
        Ok(Self(Some(b.build()?)))
    }

    /// While the guard lives, `tokio::spawn` and new sockets land on the control runtime.
    pub(crate) fn enter(&self) -> EnterGuard<'_> {
        self.0
            .as_ref()
            .expect("the runtime is only taken on drop")
            .enter()
    }

    /// `listener` driven by the control runtime's reactor instead of the caller's. Call it
    /// inside [`enter`](Self::enter).
    pub(crate) fn adopt(listener: TcpListener) -> std::io::Result<TcpListener> {
        TcpListener::from_std(listener.into_std()?)
    }
}

/// How much nicer than the process the control plane's threads are (`nice`'s scale: the
/// scheduler's weight of a thread falls about 10 % per step; 19 is the floor).
pub(crate) const CONTROL_NICE: i32 = 10;

/// The calling thread's nice value.
fn nice_of_this_thread() -> std::io::Result<i32> {
    Ok(rustix::process::getpriority_process(Some(
        rustix::thread::gettid(),
    ))?)
}

/// Gives the calling thread the nice value `nice`. Linux keeps a nice value per thread, so
/// this changes this thread alone. Raising a nice value needs no privilege; if it fails all
/// the same (a sandbox refusing the call), the thread runs as it was.
fn set_nice(nice: i32) {
    if let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice) {
        tracing::warn!(error = %e, "cannot lower the control thread's priority; it runs as the proxy's");
    }
}

impl Drop for ControlRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice() -> i32 {
        nice_of_this_thread().expect("nice")
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_control_threads_are_nicer_than_the_thread_that_started_them() {
        let mine = nice();
        let rt = ControlRuntime::start(true).expect("runtime");
        let (worker, blocking) = {
            let _on = rt.enter();
            (
                tokio::spawn(async { nice() }),
                tokio::task::spawn_blocking(nice),
            )
        };
        let want = (mine + CONTROL_NICE).min(19);
        assert_eq!(worker.await.expect("task"), want);
        assert_eq!(blocking.await.expect("task"), want);
        assert_eq!(nice(), mine, "the caller's thread is left as it was");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn tasks_spawned_inside_run_on_the_control_thread() {
        let rt = ControlRuntime::start(false).expect("runtime");
        let task = {
            let _on = rt.enter();
            tokio::spawn(async { std::thread::current().name().map(str::to_owned) })
        };
        assert_eq!(
            task.await.expect("task").as_deref(),
            Some("switchyard-control")
        );
        // Dropped inside this runtime: no panic.
        drop(rt);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_adopted_listener_accepts_on_the_control_runtime() {
        let rt = ControlRuntime::start(false).expect("runtime");
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        let accepted = {
            let _on = rt.enter();
            let l = ControlRuntime::adopt(l).expect("adopt");
            tokio::spawn(async move {
                let (_s, _) = l.accept().await.expect("accept");
                std::thread::current().name().map(str::to_owned)
            })
        };
        let _c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        assert_eq!(
            accepted.await.expect("task").as_deref(),
            Some("switchyard-control")
        );
    }
}
