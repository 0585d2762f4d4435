//! Shadow traffic: a copy of a share of a service's live requests also goes to its shadow
//! stack; the copy's answer is read, counted in that stack's figures and discarded.
//!
//! Invariants: the client only ever sees the live stack's answer, and a copy never delays or
//! fails the live request. The decision is made up front from the head (method, share, declared
//! body size, a place among the service's [`crate::traffic::SHADOW_IN_FLIGHT`] copies in
//! flight); the live body is teed as it passes (`crate::body::Tee`), never held back; the copy
//! waits for the whole body in a background task and goes out from there. A copy that cannot
//! be made is dropped and counted ([`crate::traffic::ShadowCounters`]). A service without a
//! shadow setting pays one branch per request (`forward`). Copies carry `x-switchyard-shadow:
//! 1`; in a service with a shadow setting, a client's own header of that name is removed. Requests whose live stack is the shadow stack (pinned to it, or weighted onto it) and
//! upgrade requests are not copied. Copies are not retried.
//!
//! Layer: below `forward` (which calls [`mirror`]), above `attempt`, `select` and `snapshot`.

use crate::attempt;
use crate::body::{Tee, Teed, UpstreamBody};
use crate::error::Cause;
use crate::headers::Forwarding;
use crate::select;
use crate::snapshot::{ServiceRoute, StackRoute};
use crate::traffic::ShadowSlot;
use crate::upstream::exchange::Resend;
use http::{HeaderName, HeaderValue, Request, header};
use http_body::Body;
use http_body_util::BodyExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::debug;

/// Marks a shadow copy, so endpoints can tell it from live traffic.
pub(crate) const X_SWITCHYARD_SHADOW: HeaderName = HeaderName::from_static("x-switchyard-shadow");

/// Mirrors the live request (`req`'s head as it goes upstream, with the proxy's fields in
/// `forwarding`, and `body`), routed to `live`, when the
/// service's shadow setting selects it: starts the copy's task and returns the body to send
/// live, teed when there is a body to copy. Otherwise returns `body` untouched. Either way a
/// client's own `x-switchyard-shadow` is removed, so the mark is the proxy's alone.
pub(crate) fn mirror<B>(
    svc: &Arc<ServiceRoute>,
    live: &StackRoute,
    listener: usize,
    idle: Duration,
    req: &mut Request<B>,
    forwarding: &Forwarding<'_>,
    body: UpstreamBody,
) -> UpstreamBody {
    let Some(sh) = svc.shadow.as_ref() else {
        return body;
    };
    req.headers_mut().remove(&X_SWITCHYARD_SHADOW);
    let shadow = &svc.stacks[sh.stack];
    if std::ptr::eq(live, shadow)
        || !sh.methods.contains(req.method())
        || req.headers().contains_key(header::UPGRADE)
        || (sh.percent < 100 && select::fast_random() % 100 >= u64::from(sh.percent))
    {
        return body;
    }
    // Bodies declared larger than the bound are not copied; an undeclared length is bounded by
    // the tee while it passes.
    if body.size_hint().lower() > sh.max_body {
        sh.counters
            .dropped_too_large
            .fetch_add(1, Ordering::Relaxed);
        return body;
    }
    let Some(slot) = sh.counters.admit() else {
        return body;
    };
    let mut head = Request::new(());
    *head.method_mut() = req.method().clone();
    *head.uri_mut() = req.uri().clone();
    *head.version_mut() = req.version();
    *head.headers_mut() = req.headers().clone();
    // The live request gets these from the encoder; the copy's head is a map of its own.
    forwarding.apply(head.headers_mut());
    head.headers_mut()
        .insert(X_SWITCHYARD_SHADOW, HeaderValue::from_static("1"));
    let (body, copy) = if body.is_end_stream() {
        (body, None)
    } else {
        let (tx, rx) = oneshot::channel();
        let teed = UpstreamBody::Teed {
            inner: Box::pin(body),
            tee: Tee::new(sh.max_body, tx),
        };
        (teed, Some(rx))
    };
    tokio::spawn(send_copy(
        svc.clone(),
        sh.stack,
        listener,
        idle,
        head,
        copy,
        slot,
    ));
    body
}

/// The copy's task: waits for the teed body, sends the copy to an endpoint of the shadow stack,
/// reads the answer to its end and records it in the stack's figures. Holds `slot` throughout.
async fn send_copy(
    svc: Arc<ServiceRoute>,
    stack: usize,
    listener: usize,
    idle: Duration,
    mut head: Request<()>,
    body: Option<oneshot::Receiver<Teed>>,
    slot: ShadowSlot,
) {
    let counters = slot.counters();
    let data = match body {
        None => None,
        Some(rx) => match rx.await {
            Ok(Some(data)) => Some(data),
            Ok(None) => {
                counters.dropped_too_large.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                counters.dropped_incomplete.fetch_add(1, Ordering::Relaxed);
                return;
            }
        },
    };
    counters.copies.fetch_add(1, Ordering::Relaxed);
    let stack = &svc.stacks[stack];
    let stats = &stack.stats;
    let start = Instant::now();
    stats.record_request();
    let Some(ep) = select::endpoint(&svc, stack, false).cloned() else {
        stats.record_failure(listener, Cause::NoHealthyEndpoint, start.elapsed());
        return;
    };
    let mut body = match data {
        None => UpstreamBody::Empty,
        Some(data) => {
            stats.record_bytes_in(data.len() as u64);
            UpstreamBody::Full { data: Some(data) }
        }
    };
    let _in_flight = ep.begin();
    let resp = match attempt::send(&svc, stack, &ep, &mut head, &mut body, &[], idle).await {
        Ok(x) => x,
        Err((cause, resend)) => {
            // As on the live path: a pooled connection the endpoint closed while idle is not
            // the endpoint's fault. Copies are not retried.
            if resend != Resend::Stale {
                ep.record(!cause.endpoint_failure());
            }
            debug!(endpoint = %ep.addr(), cause = cause.label(), "shadow copy failed");
            stats.record_failure(listener, cause, start.elapsed());
            return;
        }
    };
    let status = resp.status().as_u16();
    ep.record(status < 500);
    stats.record_status(listener, status, start.elapsed());
    let mut body = resp.into_body();
    let mut bytes = 0u64;
    let drained = tokio::time::timeout(svc.response_timeout, async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(f) => bytes += f.data_ref().map_or(0, |d| d.len() as u64),
                Err(_) => return false,
            }
        }
        true
    })
    .await;
    // A body read to its end has handed its connection back to the pool itself; one cut short
    // by the timeout or an error is dropped with it, and its connection closed.
    if !matches!(drained, Ok(true)) {
        debug!(endpoint = %ep.addr(), "shadow answer not read to its end");
    }
    stats.record_done(start.elapsed(), bytes);
}
