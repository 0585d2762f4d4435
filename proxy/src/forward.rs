//! The request path: route on the snapshot, choose a stack and an endpoint, rewrite headers,
//! send over a pooled connection, and stream the answer back (or tunnel an upgrade).
//!
//! It loads the snapshot once per request and takes no lock. A connect failure is retried once
//! on another endpoint of the same stack, as is a bodiless request of a safe method whose new
//! connection the endpoint reset or closed before any answer (a container restarting behind
//! its port proxy); one that a pooled connection lost before any answer (the endpoint's idle
//! close raced it) is retried once on another endpoint or, without one, the same. Nothing else
//! is retried, because the endpoint may have acted on it.

use crate::access_log::{AccessLog, Entry, Pending};
use crate::attempt;
use crate::body::{ProxyBody, UpstreamBody};
use crate::endpoint::EndpointState;
use crate::error::Cause;
use crate::headers::{self, Forwarding, Scan, SetField};
use crate::request_id;
use crate::select;
use crate::server::{OnUpgrade, RequestBody};
use crate::shadow;
use crate::snapshot::{ServiceRoute, Snapshot, StackRoute, StickyKey};
use crate::traffic::Done;
use crate::upstream::body::ResponseBody;
use crate::upstream::exchange::{self, Resend};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body::Body;
use http_body_util::BodyExt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tracing::debug;

/// What the request path needs besides the snapshot, fixed for the process.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) max_headers: usize,
    pub(crate) max_header_bytes: usize,
    pub(crate) upstream_idle: Duration,
    /// The access log, when `[access_log]` is configured.
    pub(crate) access_log: Option<AccessLog>,
}

/// What the request path knows about the client connection.
#[derive(Debug)]
pub(crate) struct ConnInfo {
    pub(crate) listener: usize,
    pub(crate) peer: SocketAddr,
    pub(crate) peer_ip: HeaderValue,
    pub(crate) tls: bool,
}

/// Handles one request end to end; the response carries the request's id (see
/// `crate::request_id`). With the access log on, the request's entry is filled on the way
/// and queued when the response ends.
///
/// The request is lent, not moved (see `crate::server::Handler`): its body is taken, and its
/// head is rewritten in place into the head that goes upstream. What can be done before the
/// first wait is done here, so the request's future is one async layer above the send.
pub(crate) fn handle<'a>(
    snap: Arc<Snapshot>,
    settings: &'a Settings,
    conn: &'a ConnInfo,
    req: &'a mut Request<RequestBody>,
) -> impl Future<Output = Response<ProxyBody>> + 'a {
    let scan = Scan::of(req.headers());
    let id = request_id::of(scan.request_id.as_ref());
    // Pending from the start: a request the client abandons before its response (its future
    // is dropped) is still logged, with status 499.
    let pending = settings.access_log.as_ref().map(|log| {
        Pending::new(
            log.entry(
                conn.listener,
                conn.peer,
                req.method(),
                req.uri(),
                id.clone(),
            ),
            log.clone(),
        )
    });
    answer(snap, settings, conn, req, scan, id, pending)
}

/// The request's future: routes and forwards it, or answers the cause when the proxy answers
/// itself; marks the response with the request's id and hands the log entry to its body.
///
/// One function, not a layer per step: each async layer costs copies of the response (about
/// 280 bytes) on its way back. The steps that do not wait are functions of their own.
///
/// Not an `async fn`: that would keep its arguments twice in the future (as arguments, and
/// moved into its body); the block uses them in place.
#[allow(clippy::too_many_arguments)] // one call site, `handle`
#[allow(clippy::manual_async_fn)]
fn answer<'a>(
    snap: Arc<Snapshot>,
    settings: &'a Settings,
    conn: &'a ConnInfo,
    req: &'a mut Request<RequestBody>,
    mut scan: Scan,
    id: HeaderValue,
    mut pending: Option<Pending>,
) -> impl Future<Output = Response<ProxyBody>> + 'a {
    async move {
        let start = Instant::now();
        let mut log = pending.as_mut().and_then(Pending::entry);
        let result = 'proxy: {
            let routed = match route(&snap, settings, conn, req, &scan, log.as_deref_mut()) {
                Ok(r) => r,
                Err(cause) => break 'proxy Err(cause),
            };
            let Routed {
                svc,
                stack,
                ep,
                upgrade,
                client_upgrade,
            } = routed;
            let body = std::mem::replace(req.body_mut(), RequestBody::Empty);
            // Read the first body frame before any endpoint is contacted: a malformed chunked
            // body fails here and never reaches an upstream.
            let mut body = if body.is_end_stream() {
                UpstreamBody::Empty
            } else {
                let counted = log.as_deref_mut().map(|e| {
                    let n = Arc::new(AtomicU64::new(0));
                    e.bytes_in = Some(n.clone());
                    n
                });
                match first_frame(body, svc, stack, counted).await {
                    Ok(b) => b,
                    Err(cause) => break 'proxy Err(cause),
                }
            };
            let forwarding = rewrite(svc, req, &mut scan, conn, &id, upgrade);
            let set = forwarding.fields();
            if svc.shadow.is_some() {
                body = shadow::mirror(
                    svc,
                    stack,
                    conn.listener,
                    settings.upstream_idle,
                    req,
                    &forwarding,
                    body,
                );
            }
            stack.stats.record_request();
            let sending = log.is_some().then(Instant::now);
            let sent = send_with_retry(
                svc,
                stack,
                ep,
                req,
                &mut body,
                &set,
                settings.upstream_idle,
                (conn.listener, start),
            )
            .await;
            if let Some(e) = log {
                e.upstream = sending.map(|t| t.elapsed());
                if let Ok((_, ep)) = &sent {
                    e.endpoint = Some(ep.clone());
                }
            }
            received(sent, svc, stack, conn.listener, start, client_upgrade)
        };
        let mut resp = match result {
            Ok(r) => r,
            Err(cause) => {
                if let Some(e) = pending.as_mut().and_then(Pending::entry) {
                    e.error = Some(cause);
                }
                cause.response()
            }
        };
        if let Some(e) = pending.as_mut().and_then(Pending::entry) {
            e.status = resp.status().as_u16();
        }
        let mut id = id;
        // Never indexed by HTTP/2's header compression (it has no effect on HTTP/1.1): a value
        // that is new in every response only churns the compression table.
        id.set_sensitive(true);
        resp.headers_mut().insert(headers::X_REQUEST_ID.clone(), id);
        if let Some(p) = pending {
            resp.body_mut().log(p);
        }
        resp
    }
}

/// Where a request goes.
struct Routed<'s> {
    svc: &'s Arc<ServiceRoute>,
    stack: &'s StackRoute,
    ep: &'s Arc<EndpointState>,
    /// The request asks for a protocol switch that the service allows.
    upgrade: bool,
    /// The client's side of that switch.
    client_upgrade: Option<OnUpgrade>,
}

/// Checks the head's limits and routes the request on the snapshot: its service, stack and
/// endpoint. `scan` is what one pass over the request's fields found.
fn route<'s>(
    snap: &'s Snapshot,
    settings: &Settings,
    conn: &ConnInfo,
    req: &mut Request<RequestBody>,
    scan: &Scan,
    mut log: Option<&mut Entry>,
) -> Result<Routed<'s>, Cause> {
    let h = req.headers();
    if h.len() > settings.max_headers || scan.block_size > settings.max_header_bytes {
        return Err(Cause::HeadersTooLarge);
    }
    let host = scan.host.as_ref().map(HeaderValue::as_bytes);
    let Ok(host) = headers::host_of(host, scan.hosts_repeated, req.uri()) else {
        return Err(Cause::BadRequest);
    };
    let Some(svc) = snap.route(conn.listener, host, req.uri().path()) else {
        return Err(Cause::NoRoute);
    };
    if let Some(e) = log.as_deref_mut() {
        e.service = Some(svc.clone());
    }
    let (stack, ep) = svc.choose(req.headers())?;
    if let Some(e) = log {
        e.stack = svc.stacks.iter().position(|s| std::ptr::eq(s, stack));
        e.endpoint = Some(ep.clone());
    }
    // Only the protocols the service allows are tunnelled; any other `Upgrade` (h2c above all)
    // is removed with the other hop-by-hop headers and the request goes on as a plain one.
    let upgrade = req.version() == Version::HTTP_11
        && scan.hop_by_hop
        && headers::wants_upgrade(req.headers())
        && svc.allows_upgrade(req.headers());
    let client_upgrade = if upgrade {
        crate::server::on_upgrade(req)
    } else {
        None
    };
    Ok(Routed {
        svc,
        stack,
        ep,
        upgrade,
        client_upgrade,
    })
}

/// The body to send upstream: the client's, with its first frame read (within the service's
/// request-body timeout). `counted`: the access log's count of the body's bytes.
async fn first_frame(
    mut body: RequestBody,
    svc: &ServiceRoute,
    stack: &StackRoute,
    counted: Option<Arc<AtomicU64>>,
) -> Result<UpstreamBody, Cause> {
    match tokio::time::timeout(svc.request_body_timeout, body.frame()).await {
        Err(_) => Err(Cause::RequestBodyTimeout),
        Ok(None) => Ok(UpstreamBody::Empty),
        Ok(Some(Ok(f))) => Ok(UpstreamBody::client(
            f,
            body,
            svc.request_body_timeout,
            stack.stats.clone(),
            counted,
        )),
        Ok(Some(Err(e))) => {
            debug!(error = %e, "request body framing");
            Err(Cause::BadRequest)
        }
    }
}

/// Rewrites the request's head in place into the one that goes upstream (hop-by-hop fields
/// removed, origin-form target, HTTP/1.1) and returns the fields the proxy sets.
fn rewrite<'a>(
    svc: &ServiceRoute,
    req: &mut Request<RequestBody>,
    scan: &mut Scan,
    conn: &'a ConnInfo,
    id: &'a HeaderValue,
    upgrade: bool,
) -> Forwarding<'a> {
    let host = scan.host.take().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    if scan.hop_by_hop {
        headers::strip_hop_by_hop(req.headers_mut(), upgrade);
    }
    let uri = req.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        // The origin form, from the parsed path as it is (no copy, no parse: every HTTP/2
        // request comes with a scheme and an authority).
        let parts = std::mem::take(req.uri_mut()).into_parts();
        *req.uri_mut() = parts
            .path_and_query
            .map_or_else(|| Uri::from_static("/"), Uri::from);
    }
    *req.version_mut() = Version::HTTP_11;
    Forwarding {
        host,
        keep_host: svc.preserve_host,
        peer_ip: &conn.peer_ip,
        tls: conn.tls,
        request_id: id,
    }
}

/// What the endpoint's answer (or the failure to get one) makes of the response: figures and
/// passive health recorded, hop-by-hop fields removed, a requested switch tunnelled.
fn received(
    sent: Result<Sent, Cause>,
    svc: &ServiceRoute,
    stack: &StackRoute,
    listener: usize,
    start: Instant,
    client_upgrade: Option<OnUpgrade>,
) -> Result<Response<ProxyBody>, Cause> {
    let (resp, ep) = match sent {
        Ok(x) => x,
        Err(cause) => {
            if !cause.client_fault() {
                stack.stats.record_failure(listener, cause, start.elapsed());
            }
            return Err(cause);
        }
    };
    let status = resp.status();
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return match client_upgrade {
            Some(client) if svc.allows_upgrade(resp.headers()) => {
                ep.record(true);
                let elapsed = start.elapsed();
                for stats in [&stack.stats, ep.stats()] {
                    stats.record_status(listener, status.as_u16(), elapsed);
                    stats.record_done(elapsed, 0);
                }
                Ok(tunnel(client, resp))
            }
            _ => {
                // A switch nobody asked for (or to another protocol): what the endpoint sends
                // next is not HTTP this proxy routes. Its connection is dropped, never pooled.
                debug!(endpoint = %ep.addr(), "unrequested protocol switch");
                drop(resp);
                ep.record(false);
                let elapsed = start.elapsed();
                for stats in [&stack.stats, ep.stats()] {
                    stats.record_failure(listener, Cause::UpstreamProtocol, elapsed);
                }
                Err(Cause::UpstreamProtocol)
            }
        };
    }
    ep.record(status.as_u16() < 500);
    let elapsed = start.elapsed();
    stack
        .stats
        .record_status(listener, status.as_u16(), elapsed);
    ep.stats().record_status(listener, status.as_u16(), elapsed);
    let done = Done::new(stack.stats.clone(), ep.stats().clone(), start);
    let (mut parts, body) = resp.into_parts();
    strip_response_headers(&mut parts.headers);
    Ok(Response::from_parts(
        parts,
        ProxyBody::upstream(body, Some(done)),
    ))
}

/// Joins the client's upgraded connection and the endpoint's switched one and answers the
/// client's 101. Bytes the endpoint sent right after its 101 go to the client first.
fn tunnel(client: OnUpgrade, mut resp: Response<ResponseBody>) -> Response<ProxyBody> {
    let upstream = resp.body_mut().take_switched();
    tokio::spawn(async move {
        let Some((mut u, early)) = upstream else {
            return;
        };
        match client.0.await {
            Ok(crate::server::Upgraded { io: mut c, read }) => {
                if !read.is_empty() {
                    if let Err(e) = u.write_all(&read).await {
                        debug!(error = %e, "upgraded connection ended");
                        return;
                    }
                }
                if !early.is_empty() {
                    if let Err(e) = c.write_all(&early).await {
                        debug!(error = %e, "upgraded connection ended");
                        return;
                    }
                }
                if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                    debug!(error = %e, "upgraded connection ended");
                }
            }
            Err(_) => debug!("upgrade failed: the client connection ended before its switch"),
        }
    });
    let (parts, _) = resp.into_parts();
    Response::from_parts(parts, ProxyBody::empty())
}

fn strip_response_headers(h: &mut HeaderMap) {
    headers::strip_hop_by_hop(h, false);
}

impl ServiceRoute {
    /// Chooses the stack (pinned, sticky by weighted rendezvous hashing, or by schedule) and an
    /// available endpoint in it. A stack without an available endpoint gives its turn to the
    /// other stacks in proportion to their weights (a sticky key to its next best stack).
    pub fn choose(&self, h: &HeaderMap) -> Result<(&StackRoute, &Arc<EndpointState>), Cause> {
        choose(self, h)
    }
}

fn choose<'s>(
    svc: &'s ServiceRoute,
    h: &HeaderMap,
) -> Result<(&'s StackRoute, &'s Arc<EndpointState>), Cause> {
    if let Some(pinned) = svc.pin_header.as_ref().and_then(|n| h.get(n)) {
        let stack = svc
            .stacks
            .iter()
            .find(|s| s.name.as_str().as_bytes() == pinned.as_bytes())
            .ok_or(Cause::UnknownStack)?;
        return select::endpoint(svc, stack, false)
            .map(|e| (stack, e))
            .ok_or(Cause::NoHealthyEndpoint);
    }
    let schedule = svc.schedule.as_ref().ok_or(Cause::NoStack)?;
    let key = sticky_value(svc, h).map(select::stable_hash);
    let first = match key {
        // Weighted rendezvous hashing: monotone in the weights (see `crate::select`).
        Some(k) => select::sticky_pick(k, &svc.stacks, sticky_seed_weight, |_, _| true)
            .ok_or(Cause::NoStack)?,
        None => schedule.stack_at(schedule.next_position()),
    };
    if let Some(e) = select::endpoint(svc, &svc.stacks[first], false) {
        return Ok((&svc.stacks[first], e));
    }
    // Degraded: the chosen stack has no available endpoint. Its share goes to the other
    // stacks in proportion to their weights (deterministically for sticky users: the next
    // best rendezvous score, so no other user moves).
    let eligible = |i: usize, s: &StackRoute| {
        i != first && s.weight > 0 && s.endpoints.iter().any(|e| e.is_available())
    };
    if let Some(k) = key {
        if let Some(i) = select::sticky_pick(k, &svc.stacks, sticky_seed_weight, eligible) {
            if let Some(e) = select::endpoint(svc, &svc.stacks[i], false) {
                return Ok((&svc.stacks[i], e));
            }
        }
    } else {
        let total: u64 = svc
            .stacks
            .iter()
            .enumerate()
            .filter(|(i, s)| eligible(*i, s))
            .map(|(_, s)| u64::from(s.weight))
            .sum();
        if total > 0 {
            let mut r = select::fast_random() % total;
            for stack in svc
                .stacks
                .iter()
                .enumerate()
                .filter(|(i, s)| eligible(*i, s))
                .map(|(_, s)| s)
            {
                let w = u64::from(stack.weight);
                if r < w {
                    if let Some(e) = select::endpoint(svc, stack, false) {
                        return Ok((stack, e));
                    }
                }
                r = r.saturating_sub(w);
            }
        }
    }
    // Availability changed under us: take any stack that still has an endpoint.
    for stack in &svc.stacks {
        if stack.weight > 0 {
            if let Some(e) = select::endpoint(svc, stack, false) {
                return Ok((stack, e));
            }
        }
    }
    if svc.fail_open {
        let stack = &svc.stacks[first];
        if let Some(e) = select::endpoint(svc, stack, true) {
            return Ok((stack, e));
        }
    }
    Err(Cause::NoHealthyEndpoint)
}

#[inline]
fn sticky_seed_weight(s: &StackRoute) -> (u64, u32) {
    (s.sticky_seed, s.weight)
}

fn sticky_value<'h>(svc: &ServiceRoute, h: &'h HeaderMap) -> Option<&'h [u8]> {
    match svc.sticky.as_ref()? {
        StickyKey::Header(name) => h.get(name).map(HeaderValue::as_bytes),
        StickyKey::Cookie(name) => h.get_all(header::COOKIE).iter().find_map(|v| {
            v.as_bytes().split(|&c| c == b';').find_map(|pair| {
                let pair = pair.trim_ascii();
                let (k, val) = pair.split_at(pair.iter().position(|&c| c == b'=')?);
                (k == name.as_bytes()).then(|| &val[1..])
            })
        }),
    }
}

type Sent = (Response<ResponseBody>, Arc<EndpointState>);

/// The listener a request came in on and when it started, for its failure figures.
type Origin = (usize, Instant);

/// An attempt on `ep` failed with `cause`: passive health, and the endpoint's figures (unless
/// the client caused it).
fn attempt_failed(ep: &EndpointState, cause: Cause, (listener, start): Origin) {
    ep.record(!cause.endpoint_failure());
    if !cause.client_fault() {
        ep.stats().record_failure(listener, cause, start.elapsed());
    }
}

/// Sends the request (its head `req`, rewritten, and `body`) to `ep`, and once more when
/// nothing of it reached the endpoint (see the module's doc).
#[allow(clippy::too_many_arguments)] // one call site; a struct would only be unpacked here
async fn send_with_retry(
    svc: &ServiceRoute,
    stack: &StackRoute,
    ep: &Arc<EndpointState>,
    req: &mut Request<RequestBody>,
    body: &mut UpstreamBody,
    set: &[SetField<'_>],
    idle: Duration,
    origin: Origin,
) -> Result<Sent, Cause> {
    let _in_flight = ep.begin();
    let sent = match attempt::connection(svc, stack, ep, idle).await {
        Ok(conn) => exchange::send(conn, req, body, set, ep, svc.response_timeout)
            .await
            .map_err(|f| attempt::failed(f, ep)),
        Err(e) => Err(e),
    };
    match sent {
        Ok(r) => Ok((r, ep.clone())),
        Err((cause, Resend::No)) => {
            attempt_failed(ep, cause, origin);
            Err(cause)
        }
        Err((cause, resend)) => {
            // Handed back unsent: a refusal counts against the endpoint; a pooled connection
            // the endpoint had closed while idle does not.
            let stale = resend == Resend::Stale;
            if !stale {
                attempt_failed(ep, cause, origin);
            }
            // Nothing reached the endpoint: try once more, on another endpoint when there is
            // one (the same only after a stale connection).
            let next = select::other_endpoint(&stack.endpoints, &stack.cursor, ep)
                .or_else(|| stale.then_some(ep))
                .ok_or(cause)?;
            let _in_flight = next.begin();
            match attempt::send(svc, stack, next, req, body, set, idle).await {
                Ok(r) => Ok((r, next.clone())),
                Err((c, _)) => {
                    attempt_failed(next, c, origin);
                    Err(c)
                }
            }
        }
    }
}
