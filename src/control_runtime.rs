//! The control plane's own runtime: one thread for the control API, the desired-state writer
//! (and its fsyncs) and the deployment drivers, so control traffic never takes CPU from the
//! event loop that serves requests (with `worker_threads = 1`, the proxy's only thread).

use tokio::net::TcpListener;
use tokio::runtime::{Builder, EnterGuard, Runtime};

/// A one-thread runtime, shut down in the background when dropped (it may be dropped inside
/// the main runtime, where a blocking shutdown is not allowed).
pub(crate) struct ControlRuntime(Option<Runtime>);

impl ControlRuntime {
    /// Starts the runtime's thread (`switchyard-control`).
    pub(crate) fn start() -> std::io::Result<Self> {
        let rt = Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("switchyard-control")
            .enable_all()
            .build()?;
        Ok(Self(Some(rt)))
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

    #[tokio::test(flavor = "current_thread")]
    async fn tasks_spawned_inside_run_on_the_control_thread() {
        let rt = ControlRuntime::start().expect("runtime");
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
        let rt = ControlRuntime::start().expect("runtime");
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
