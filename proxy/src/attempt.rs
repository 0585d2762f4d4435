//! One attempt of a request on one endpoint: take a pooled connection or open one, send, and
//! wait for the response head within the service's response timeout. Used by the live request
//! path (`crate::forward`, which decides about retries) and by shadow copies (`crate::shadow`).

use crate::body::UpstreamBody;
use crate::endpoint::EndpointState;
use crate::error::Cause;
use crate::headers::SetField;
use crate::pool;
use crate::snapshot::{ServiceRoute, StackRoute};
use crate::upstream::body::ResponseBody;
use crate::upstream::conn::Conn;
use crate::upstream::exchange::{self, Resend};
use http::{Request, Response};
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

/// What a failed attempt leaves: the cause, and whether the request may be sent again (then it
/// is as it was: nothing of it reached the endpoint).
pub(crate) type AttemptError = (Cause, Resend);

/// A connection to `ep` for one attempt: a pooled one, else a new one (TCP, and TLS when the
/// stack says so, within the service's connect timeout). A failed connect sent nothing: the
/// request may go to another endpoint.
pub(crate) async fn connection(
    svc: &ServiceRoute,
    stack: &StackRoute,
    ep: &EndpointState,
    idle: Duration,
) -> Result<Box<Conn>, AttemptError> {
    if let Some(c) = ep.pool().take(idle) {
        return Ok(c);
    }
    // Boxed: the connect future (TCP + TLS) is large and rarely taken; inline it would grow
    // every request's future.
    match Box::pin(pool::connect(
        ep.addr(),
        stack.tls.as_ref(),
        svc.connect_timeout,
    ))
    .await
    {
        Ok((c, took)) => {
            stack.stats.record_connect(took);
            Ok(c)
        }
        Err(e) => {
            debug!(endpoint = %ep.addr(), error = %e, "connect failed");
            let cause = if e.is_tls() {
                Cause::UpstreamTls
            } else {
                Cause::ConnectFailed
            };
            // Not sent at all: the request is untouched, body included.
            Err((cause, Resend::Refused))
        }
    }
}

/// What a failed exchange with `ep` leaves of an attempt.
pub(crate) fn failed(f: exchange::Failed, ep: &EndpointState) -> AttemptError {
    if f.cause == Cause::RequestBodyTimeout {
        // The client stalled mid-body: the upstream connection is closed with the aborted
        // request, and nothing is retried.
        debug!(endpoint = %ep.addr(), "request body timed out");
    }
    // A timeout (`Cause::UpstreamTimeout`) closed the connection with the exchange.
    (f.cause, f.resend)
}

/// One attempt: [`connection`], then the exchange (`crate::upstream::exchange::send`: `set`
/// are the fields the proxy sets, see `crate::headers::Forwarding`; the request's head and its
/// body are borrowed). On failure, says whether the request may be sent again. The live path
/// (`crate::forward`) makes the same two steps itself, so the response passes through one
/// future fewer.
pub(crate) async fn send<B>(
    svc: &ServiceRoute,
    stack: &StackRoute,
    ep: &Arc<EndpointState>,
    req: &mut Request<B>,
    body: &mut UpstreamBody,
    set: &[SetField<'_>],
    idle: Duration,
) -> Result<Response<ResponseBody>, AttemptError> {
    let conn = connection(svc, stack, ep, idle).await?;
    exchange::send(conn, req, body, set, ep, svc.response_timeout)
        .await
        .map_err(|f| failed(f, ep))
}
