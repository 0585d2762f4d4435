//! Serving the API on an already-bound listener, with graceful shutdown.
//!
//! The caller binds (so tests pass `127.0.0.1:0` and read the port) and keeps the
//! [`ControlHandle`]; when `shutdown` turns true the server stops accepting and lets requests
//! in flight finish. Accept errors are handled by `axum::serve` (logged, then a short pause).

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::api::router;
use crate::state::ControlState;

/// The running control API server.
#[derive(Debug)]
pub struct ControlHandle {
    task: JoinHandle<std::io::Result<()>>,
}

impl ControlHandle {
    /// Waits for the server to finish after shutdown; re-raises its panic if it panicked.
    pub async fn join(self) -> std::io::Result<()> {
        match self.task.await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}

/// Serves the API on `listener` until `shutdown` turns true (or its sender is dropped).
pub fn spawn_control(
    listener: TcpListener,
    state: ControlState,
    shutdown: watch::Receiver<bool>,
) -> ControlHandle {
    serve_on(listener, state, shutdown)
}

/// Serves the API over TLS (`[control] tls`) on `listener` until `shutdown` turns true.
pub fn spawn_control_tls(
    listener: TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    state: ControlState,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<ControlHandle> {
    Ok(serve_on(
        crate::tls::TlsListener::new(listener, tls)?,
        state,
        shutdown,
    ))
}

fn serve_on<L>(
    listener: L,
    state: ControlState,
    mut shutdown: watch::Receiver<bool>,
) -> ControlHandle
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let address = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| format!("{a:?}"));
    let span = tracing::info_span!("control", listen = %address);
    let app = router(state);
    let task = tokio::spawn(
        async move {
            tracing::info!("control api serving");
            let stop = async move {
                // A dropped sender means the owner is gone: stop as well.
                let _ = shutdown.wait_for(|stop| *stop).await;
            };
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await;
            tracing::info!("control api stopped");
            result
        }
        .instrument(span),
    );
    ControlHandle { task }
}
