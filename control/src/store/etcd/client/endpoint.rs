//! One member's client URL and its connections: plain TCP or rustls for `https://`, HTTP/1.1
//! through hyper, idle connections kept for the next request. A connection carrying a watch
//! is never idle: it closes with the watch.

use std::sync::Mutex;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::{BODY_LIMIT, ClientError, SetupError};

/// One member's client URL, parsed.
#[derive(Debug)]
pub(super) struct Endpoint {
    pub(super) url: String,
    pub(super) host: String,
    pub(super) port: u16,
    /// `host:port` for the `Host` header (an IPv6 address in brackets).
    pub(super) authority: String,
    pub(super) https: bool,
    /// Idle connections, ready for the next request.
    idle: Mutex<Vec<http1::SendRequest<Full<Bytes>>>>,
}

impl Endpoint {
    pub(super) fn parse(url: &str) -> Result<Self, SetupError> {
        let bad = || SetupError::Endpoint(url.to_owned());
        let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad());
        };
        let authority = rest.trim_end_matches('/');
        let default_port = if https { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            // `[::1]:2379` or `[::1]`.
            let (host, rest) = v6.split_once(']').ok_or_else(bad)?;
            match rest.strip_prefix(':') {
                Some(p) => (host, p.parse::<u16>().map_err(|_| bad())?),
                None if rest.is_empty() => (host, default_port),
                None => return Err(bad()),
            }
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() || authority.contains('/') {
            return Err(bad());
        }
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Self {
            url: url.to_owned(),
            host: host.to_owned(),
            port,
            authority,
            https,
            idle: Mutex::new(Vec::new()),
        })
    }

    pub(super) fn idle(&self) -> std::sync::MutexGuard<'_, Vec<http1::SendRequest<Full<Bytes>>>> {
        self.idle
            .lock()
            .expect("idle connection list is never poisoned")
    }

    /// An idle connection that is ready, or a new one (through `tls` for `https://`).
    pub(super) async fn connection(
        &self,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<http1::SendRequest<Full<Bytes>>, ClientError> {
        let e = self;
        loop {
            let Some(sender) = e.idle().pop() else {
                break;
            };
            if sender.is_ready() {
                return Ok(sender);
            }
        }
        let connect_error = |source| ClientError::Connect {
            endpoint: e.url.clone(),
            source,
        };
        let tcp = TcpStream::connect((e.host.as_str(), e.port))
            .await
            .map_err(connect_error)?;
        // Requests are small and answered at once; do not wait for more to send.
        let _ = tcp.set_nodelay(true); // Only latency depends on it.
        let handshake_error = |source| ClientError::Transport {
            endpoint: e.url.clone(),
            source,
        };
        if e.https {
            let connector = tls.expect("a client with an https endpoint has a tls connector");
            let name = rustls::pki_types::ServerName::try_from(e.host.clone()).map_err(|_| {
                connect_error(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "not a valid tls server name",
                ))
            })?;
            let tls = connector.connect(name, tcp).await.map_err(connect_error)?;
            let (sender, conn) = http1::handshake(TokioIo::new(tls))
                .await
                .map_err(handshake_error)?;
            tokio::spawn(conn);
            Ok(sender)
        } else {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(handshake_error)?;
            tokio::spawn(conn);
            Ok(sender)
        }
    }
}

/// An answer's head and the connection it came on.
pub(super) type Answer = (hyper::Response<Incoming>, http1::SendRequest<Full<Bytes>>);

/// Reads a whole answer body.
pub(super) async fn read_body(url: &str, body: Incoming) -> Result<Bytes, ClientError> {
    Limited::new(body, BODY_LIMIT)
        .collect()
        .await
        .map(|c| c.to_bytes())
        .map_err(|source| ClientError::Body {
            endpoint: url.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_with_and_without_a_port() {
        let e = Endpoint::parse("http://127.0.0.1:2379").expect("valid");
        assert_eq!(
            (e.host.as_str(), e.port, e.https),
            ("127.0.0.1", 2379, false)
        );
        let e = Endpoint::parse("https://etcd.example/").expect("valid");
        assert_eq!(
            (e.host.as_str(), e.port, e.https),
            ("etcd.example", 443, true)
        );
        let e = Endpoint::parse("http://[::1]:2379").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("::1", 2379));
        assert_eq!(e.authority, "[::1]:2379");
        let e = Endpoint::parse("https://[::1]").expect("valid");
        assert_eq!((e.host.as_str(), e.port), ("::1", 443));
        assert!(Endpoint::parse("etcd:2379").is_err());
    }
}
