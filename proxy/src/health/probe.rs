//! One health check: the request (method, path, version, Host) to the check address, over TLS
//! for `https://` endpoints, on a kept HTTP/1.1 connection when the endpoint left it open; or,
//! for a `tcp` check, only a connect to the check address.
//!
//! Checks use hyper's HTTP/1 client (its connection task is no cost at one request per
//! interval, and it speaks HTTP/1.0 for `http10` checks); requests use the inline client
//! (`crate::upstream`).

use super::CheckOutcome;
use crate::body::UpstreamBody;
use crate::endpoint::{EndpointKey, EndpointState};
use crate::handle::Shared;
use crate::pool::{self, UpstreamTls};
use http::{HeaderValue, Method, Request, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use switchyard_config::{CheckKind, HealthCheckSpec, Scheme};
use tracing::debug;

/// A kept check connection.
pub(super) type Sender = SendRequest<UpstreamBody>;

/// Largest check response body read to keep the connection; a longer one closes it.
const MAX_BODY: usize = 64 * 1024;

/// The upstream TLS settings of the endpoint's stack in the current snapshot.
fn stack_tls(shared: &Shared, key: &EndpointKey) -> Option<UpstreamTls> {
    let snap = shared.snapshot.load();
    snap.service(&key.service)?
        .stacks()
        .iter()
        .find(|s| s.name().as_str() == key.stack)?
        .tls
        .clone()
}

pub(super) struct Probe {
    method: Method,
    version: Version,
    host: HeaderValue,
    addr: SocketAddr,
}

impl Probe {
    pub(super) fn new(ep: &EndpointState, spec: &HealthCheckSpec) -> Option<Self> {
        let port = spec.port.unwrap_or(ep.addr().port());
        let host = match &spec.host {
            Some(h) => HeaderValue::from_str(h).ok()?,
            None if ep.key().endpoint.host().contains(':') => {
                HeaderValue::from_str(&format!("[{}]:{port}", ep.key().endpoint.host())).ok()?
            }
            None => HeaderValue::from_str(&format!("{}:{port}", ep.key().endpoint.host())).ok()?,
        };
        Some(Self {
            method: Method::from_bytes(spec.method.as_bytes()).ok()?,
            version: if spec.http10 {
                Version::HTTP_10
            } else {
                Version::HTTP_11
            },
            host,
            addr: SocketAddr::new(ep.addr().ip(), port),
        })
    }

    /// One request on `sender`: the status and whether the connection may be kept.
    async fn exchange(
        &self,
        sender: &mut Sender,
        path: &str,
    ) -> Result<(StatusCode, bool), CheckOutcome> {
        sender.ready().await.map_err(|_| CheckOutcome::Error)?;
        let req = Request::builder()
            .method(self.method.clone())
            .uri(path)
            .version(self.version)
            .header(header::HOST, self.host.clone())
            .header(
                header::USER_AGENT,
                HeaderValue::from_static("switchyard-health-check"),
            )
            .body(UpstreamBody::Empty)
            .map_err(|_| CheckOutcome::Error)?;
        let resp = sender
            .send_request(req)
            .await
            .map_err(|_| CheckOutcome::Error)?;
        let status = resp.status();
        let mut body = resp.into_body();
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| CheckOutcome::Error)?;
            read += frame.data_ref().map_or(0, |d| d.len());
            if read > MAX_BODY {
                return Ok((status, false));
            }
        }
        Ok((status, self.version == Version::HTTP_11))
    }
}

/// One check, start to end, on the kept connection when there is one.
pub(super) async fn check(
    ep: &EndpointState,
    spec: &HealthCheckSpec,
    probe: &Probe,
    shared: &Shared,
    kept: &mut Option<Sender>,
) -> (CheckOutcome, u16) {
    if spec.kind == CheckKind::Tcp {
        // Connect only: no TLS, no request; the outer timeout bounds the connect.
        return match tokio::net::TcpStream::connect(probe.addr).await {
            Ok(_) => (CheckOutcome::Passed, 0),
            Err(e) => {
                debug!(error = %e, "tcp health check connect failed");
                (CheckOutcome::ConnectFailed, 0)
            }
        };
    }
    let tls = match ep.key().endpoint.scheme() {
        Scheme::Https => match stack_tls(shared, ep.key()) {
            Some(t) => Some(t),
            None => return (CheckOutcome::Error, 0),
        },
        Scheme::Http => None,
    };
    let mut reused = kept.take().filter(|s| !s.is_closed());
    let answer = loop {
        let fresh = reused.is_none();
        let mut sender = match reused.take() {
            Some(s) => s,
            None => match connect(probe.addr, tls.as_ref(), spec).await {
                Some(s) => s,
                None => return (CheckOutcome::ConnectFailed, 0),
            },
        };
        match probe.exchange(&mut sender, &spec.path).await {
            Ok((status, keep)) => {
                if keep {
                    *kept = Some(sender);
                }
                break status;
            }
            // A kept connection the endpoint closed meanwhile: once more on a new one.
            Err(_) if !fresh => continue,
            Err(o) => return (o, 0),
        }
    };
    let code = answer.as_u16();
    if (spec.expect_status.0..=spec.expect_status.1).contains(&code) {
        (CheckOutcome::Passed, code)
    } else {
        (CheckOutcome::BadStatus, code)
    }
}

/// A new check connection with its hyper connection task.
async fn connect(
    addr: SocketAddr,
    tls: Option<&UpstreamTls>,
    spec: &HealthCheckSpec,
) -> Option<Sender> {
    let io = match pool::connect_io(addr, tls, spec.timeout).await {
        Ok(io) => io,
        Err(e) => {
            debug!(error = %e, "health check connect failed");
            return None;
        }
    };
    let (sender, conn) = match hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
    {
        Ok(x) => x,
        Err(e) => {
            debug!(error = %e, "health check handshake failed");
            return None;
        }
    };
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!(upstream = %addr, error = %e, "health check connection ended");
        }
    });
    Some(sender)
}
