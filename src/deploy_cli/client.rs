//! A minimal HTTP/1.1 client for the control API: JSON requests and a server-sent event reader.

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::path::PathBuf;
use tokio::net::TcpStream;

use super::CliError;

/// Where the control API is and how to authenticate.
#[derive(Debug, Clone, clap::Args)]
pub struct Connection {
    /// Control API URL, e.g. http://127.0.0.1:9090.
    #[arg(long)]
    pub control: String,
    /// File holding the token secret (the API may be open without one).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
}

/// A connected control API client.
pub(crate) struct Client {
    authority: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(c: &Connection) -> Result<Self, CliError> {
        let rest = c.control.strip_prefix("http://").ok_or_else(|| {
            CliError::Usage(format!(
                "--control {}: expected http://HOST:PORT (https is not supported yet)",
                c.control
            ))
        })?;
        let authority = rest.split('/').next().unwrap_or_default().to_owned();
        if authority.is_empty() {
            return Err(CliError::Usage(format!("--control {}: no host", c.control)));
        }
        let authority = if authority.contains(':') {
            authority
        } else {
            format!("{authority}:80")
        };
        let token = match &c.token_file {
            None => None,
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| CliError::Usage(format!("cannot read {}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            ),
        };
        Ok(Self { authority, token })
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        extra: &[(&str, &str)],
    ) -> Result<hyper::Response<Incoming>, CliError> {
        let connect = |e: String| CliError::Connect(format!("{}: {e}", self.authority));
        let tcp = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| connect(e.to_string()))?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| connect(e.to_string()))?;
        tokio::spawn(conn);
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
        sender
            .send_request(req)
            .await
            .map_err(|e| connect(e.to_string()))
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
            .map_err(|e| CliError::Connect(e.to_string()))?
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
                Some(Err(e)) => return Err(CliError::Connect(e.to_string())),
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
