//! One attempt of a request on one endpoint: take a pooled connection or open one, send, and
//! wait for the response head within the service's response timeout. Used by the live request
//! path (`crate::forward`, which decides about retries) and by shadow copies (`crate::shadow`).

use crate::body::{RequestBodyTimeout, UpstreamBody};
use crate::endpoint::EndpointState;
use crate::error::Cause;
use crate::pool::{self, Sender};
use crate::snapshot::{ServiceRoute, StackRoute};
use http::{Request, Response};
use hyper::body::Incoming;
use std::time::Duration;
use tracing::debug;

/// One attempt. On failure, hands the request back when it was never sent.
pub(crate) async fn send(
    svc: &ServiceRoute,
    stack: &StackRoute,
    ep: &EndpointState,
    req: Request<UpstreamBody>,
    idle: Duration,
) -> Result<(Response<Incoming>, Sender), (Cause, Option<Request<UpstreamBody>>)> {
    let mut sender = loop {
        match ep.pool().take(idle) {
            Some(mut s) => {
                if s.ready().await.is_ok() {
                    break s;
                }
            }
            // Boxed: the connect future (TCP + TLS + handshake) is large and rarely
            // taken; inline it would grow every request's future.
            None => match Box::pin(pool::connect(
                ep.addr(),
                stack.tls.as_ref(),
                svc.connect_timeout,
            ))
            .await
            {
                Ok((s, took)) => {
                    stack.stats.record_connect(took);
                    break s;
                }
                Err(e) => {
                    debug!(endpoint = %ep.addr(), error = %e, "connect failed");
                    let cause = if e.is_tls() {
                        Cause::UpstreamTls
                    } else {
                        Cause::ConnectFailed
                    };
                    return Err((cause, Some(req)));
                }
            },
        }
    };
    match tokio::time::timeout(svc.response_timeout, sender.try_send_request(req)).await {
        Err(_) => Err((Cause::UpstreamTimeout, None)),
        Ok(Ok(resp)) => Ok((resp, sender)),
        Ok(Err(mut e)) => {
            if RequestBodyTimeout::is_cause_of(e.error()) {
                // The client stalled mid-body: the upstream connection is closed with the
                // aborted request (hyper ends it on a body error), and nothing is retried.
                debug!(endpoint = %ep.addr(), "request body timed out");
                return Err((Cause::RequestBodyTimeout, None));
            }
            debug!(endpoint = %ep.addr(), error = %e.error(), "upstream request failed");
            let req = e.take_message();
            Err((Cause::UpstreamError, req))
        }
    }
}
