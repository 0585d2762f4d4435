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

// TODO(#5): TLS on the control listener with the certs crate, as `[control] tls` allows.
/// Serves the API on `listener` until `shutdown` turns true (or its sender is dropped).
pub fn spawn_control(
    listener: TcpListener,
    state: ControlState,
    mut shutdown: watch::Receiver<bool>,
) -> ControlHandle {
    let address = listener
        .local_addr()
        .map_or_else(|_| "unknown".to_owned(), |a| a.to_string());
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
