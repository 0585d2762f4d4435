//! A minimal HTTP/1.1 client for the control API over `http://` or `https://`: JSON requests
//! and a server-sent event reader.
//!
//! `https://` is verified against the webpki roots, or only against `--ca` when given (the
//! same trust rules as `https://` endpoints, from `switchyard_certs`). Each request opens its
//! own connection: the client makes a handful of calls per command.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::CliError;

/// The variable holding the token secret itself (used when no token file is given).
const TOKEN_ENV: &str = "SWITCHYARD_TOKEN";

/// Where the control API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Control API URL, `http://HOST:PORT` or `https://HOST:PORT`.
    #[arg(long, env = "SWITCHYARD_CONTROL_URL")]
    pub control: String,
    /// File holding the token secret (the API may be open without one). Without it and
    /// without SWITCHYARD_TOKEN_FILE, the secret is read from SWITCHYARD_TOKEN.
    #[arg(long, env = "SWITCHYARD_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM bundle of the only CAs an `https://` control API is verified against (default: the
    /// webpki roots).
    #[arg(long, env = "SWITCHYARD_CA")]
    pub ca: Option<PathBuf>,
}

impl Connection {
    /// The connection flags a command must repeat to reach the same API from this shell: those
    /// whose value its environment variable does not already give.
    pub(crate) fn flags(&self) -> String {
        let env = |name: &str| std::env::var_os(name);
        let mut out = String::new();
        if env("SWITCHYARD_CONTROL_URL").as_deref() != Some(self.control.as_ref()) {
            out.push_str(&format!(" --control {}", self.control));
        }
        if let Some(f) = &self.token_file {
            if env("SWITCHYARD_TOKEN_FILE").as_deref() != Some(f.as_os_str()) {
                out.push_str(&format!(" --token-file {}", f.display()));
            }
        }
        if let Some(f) = &self.ca {
            if env("SWITCHYARD_CA").as_deref() != Some(f.as_os_str()) {
                out.push_str(&format!(" --ca {}", f.display()));
            }
        }
        out
    }
}

/// A control API client.
pub(crate) struct Client {
    /// `host:port`, as connected to and sent as `Host`.
    authority: String,
    /// For `https://`: the name the certificate must be valid for, and the TLS configuration.
    tls: Option<(ServerName<'static>, Arc<rustls::ClientConfig>)>,
    token: Option<String>,
}

/// `e` and its sources, `: `-separated.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

impl Client {
    pub(crate) fn new(c: &Connection) -> Result<Self, CliError> {
        let bad = |why: &str| CliError::Usage(format!("--control {}: {why}", c.control));
        let (https, rest) = if let Some(rest) = c.control.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = c.control.strip_prefix("http://") {
            (false, rest)
        } else {
            return Err(bad("expected http://HOST:PORT or https://HOST:PORT"));
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let has_port = authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let authority = if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{}", if https { 443 } else { 80 })
        };
        let tls = if https {
            let name = ServerName::try_from(host.to_owned())
                .map_err(|e| bad(&format!("{host:?} is not a valid server name: {e}")))?;
            let config = switchyard_certs::upstream_client_config(&switchyard_certs::UpstreamTls {
                ca: c.ca.clone(),
                client_cert: None,
                insecure_skip_verify: false,
            })
            .map_err(|e| {
                let ca = c.ca.as_ref().map(|p| p.display().to_string());
                CliError::Usage(format!("--ca {}: {}", ca.unwrap_or_default(), chain(&e)))
            })?;
            Some((name, config))
        } else {
            None
        };
        Ok(Self {
            authority,
            tls,
            token: token(c)?,
        })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        extra: &[(&str, &str)],
    ) -> Result<hyper::Response<Incoming>, CliError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority);
        if let Some(t) = &self.token {
            req = req.header(hyper::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let bytes = match body {
            Some(b) => {
                req = req.header(hyper::header::CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| self.unreachable(&e))?;
        match &self.tls {
            None => self.exchange(tcp, req).await,
            Some((name, config)) => {
                let stream = tokio_rustls::TlsConnector::from(Arc::clone(config))
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(|e| CliError::Tls {
                        authority: self.authority.clone(),
                        message: tls_message(&e),
                    })?;
                self.exchange(stream, req).await
            }
        }
    }

    /// One request and its answer's head on a fresh HTTP/1.1 connection over `io`.
    async fn exchange<S>(
        &self,
        io: S,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<hyper::Response<Incoming>, CliError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) = http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| self.unreachable(&e))?;
        tokio::spawn(conn);
        sender.send_request(req).await.map_err(|e| {
            let mut err = self.unreachable(&e);
            if self.tls.is_none() {
                if let CliError::Connect(m) = &mut err {
                    m.push_str(" (if the control API serves TLS, use https://)");
                }
            }
            err
        })
    }

    fn unreachable(&self, e: &dyn std::error::Error) -> CliError {
        CliError::Connect(format!("{}: {}", self.authority, chain(e)))
    }

    /// Sends a request; a 2xx answer's JSON, or the API's error as [`CliError::Api`].
    pub(crate) async fn json(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<serde_json::Value, CliError> {
        self.json_with(method, path, body, &[]).await
    }

    /// [`json`](Self::json) with extra request headers (`Idempotency-Key`).
    pub(crate) async fn json_with(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        extra: &[(&str, &str)],
    ) -> Result<serde_json::Value, CliError> {
        let resp = self.send(method, path, body, extra).await?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| self.unreachable(&e))?
            .to_bytes();
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if (200..300).contains(&status) {
            Ok(value)
        } else {
            let message = value["error"]["message"].as_str().map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                str::to_owned,
            );
            Err(CliError::Api { status, message })
        }
    }

    /// Opens a server-sent event stream.
    pub(crate) async fn events(&self, path: &str) -> Result<Events, CliError> {
        let resp = self.send("GET", path, None, &[]).await?;
        let status = resp.status().as_u16();
        if status != 200 {
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            let message = value["error"]["message"].as_str().unwrap_or("").to_owned();
            return Err(CliError::Api { status, message });
        }
        Ok(Events {
            body: resp.into_body(),
            buffer: BytesMut::new(),
        })
    }
}

/// The token: `--token-file` (or `SWITCHYARD_TOKEN_FILE`), else `SWITCHYARD_TOKEN`, else none.
fn token(c: &Connection) -> Result<Option<String>, CliError> {
    if let Some(path) = &c.token_file {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?;
        return Ok(Some(text.trim().to_owned()));
    }
    Ok(std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty()))
}

/// A failed handshake said plainly, with what to do about an untrusted certificate.
fn tls_message(e: &std::io::Error) -> String {
    let text = chain(e);
    let certificate = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
    if certificate {
        format!(
            "{text}: the control API's certificate is not trusted; pass --ca (or SWITCHYARD_CA) with the CA that signed it"
        )
    } else {
        text
    }
}

/// A server-sent event stream being read.
pub(crate) struct Events {
    body: Incoming,
    buffer: BytesMut,
}

impl Events {
    /// The next `(event, data)`; `None` when the stream ends.
    pub(crate) async fn next(&mut self) -> Result<Option<(String, String)>, CliError> {
        loop {
            if let Some(end) = find(&self.buffer, b"\n\n") {
                let raw = self.buffer.split_to(end + 2);
                let text = String::from_utf8_lossy(&raw);
                let mut name = String::from("message");
                let mut data = Vec::new();
                for line in text.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Ok(Some((name, data.join("\n"))));
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(CliError::Connect(chain(&e))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(url: &str) -> Connection {
        Connection {
            control: url.to_owned(),
            token_file: None,
            ca: None,
        }
    }

    #[test]
    fn urls_get_their_scheme_port() {
        let c = Client::new(&conn("http://127.0.0.1")).expect("http");
        assert_eq!(c.authority, "127.0.0.1:80");
        assert!(c.tls.is_none());
        let c = Client::new(&conn("https://control.example.test/")).expect("https");
        assert_eq!(c.authority, "control.example.test:443");
        assert!(c.tls.is_some());
        let c = Client::new(&conn("https://[::1]:9443")).expect("v6");
        assert_eq!(c.authority, "[::1]:9443");
        for bad in ["127.0.0.1:9090", "ftp://h", "http://", "https://:9"] {
            assert!(Client::new(&conn(bad)).is_err(), "{bad}");
        }
    }
}
