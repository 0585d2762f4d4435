//! A small etcd v3 client over etcd's HTTP/JSON gateway (`POST /v3/...` on the client port,
//! etcd 3.4 and newer): exactly the requests the store sends — ranges, puts, deletes,
//! transactions, a watch, leases and authentication. Plain HTTP/1.1 through hyper, rustls for
//! `https://` endpoints; no gRPC, so building needs no `protoc`.
//!
//! In the gateway's JSON, keys and values are base64 and int64 fields are strings. Several
//! endpoints: requests go to the last one that answered; one that cannot be reached (or says
//! it is unavailable) moves the client to the next, and [`ClientError::unreached`] tells the
//! caller that sending the request again is safe. This module sends each request once and
//! bounds nothing in time: the session bounds every attempt. `endpoint` holds the
//! connections, `message` the JSON shapes.

mod endpoint;
mod message;

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use switchyard_config::EtcdSpec;

use endpoint::{Answer, Endpoint, read_body};
pub(super) use message::{Compare, Op, Range, TxnResponse, WatchResponse};
use message::{GatewayError, LeaseAnswer, StreamMessage, TokenAnswer, prefix_end};

/// Largest answer body read (a listing of every key under the prefix).
const BODY_LIMIT: usize = 256 * 1024 * 1024;

/// gRPC status codes the gateway passes on.
const UNAVAILABLE: i64 = 14;
const UNAUTHENTICATED: i64 = 16;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ClientError {
    /// No connection to the endpoint.
    #[error("cannot connect to etcd at {endpoint}")]
    Connect {
        endpoint: String,
        #[source]
        source: std::io::Error,
    },
    /// The connection failed while sending or receiving.
    #[error("etcd at {endpoint} did not answer")]
    Transport {
        endpoint: String,
        #[source]
        source: hyper::Error,
    },
    /// etcd answered with an error.
    #[error("etcd at {endpoint} refused the request (http {status}, code {code}): {message}")]
    Refused {
        endpoint: String,
        status: u16,
        /// The gRPC status code (0 when the answer had none).
        code: i64,
        message: String,
    },
    /// The answer is not what the gateway sends.
    #[error("etcd at {endpoint} sent an unreadable answer")]
    Decode {
        endpoint: String,
        #[source]
        source: serde_json::Error,
    },
    /// The answer body could not be read whole.
    #[error("etcd at {endpoint} sent a broken or too large answer")]
    Body {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl ClientError {
    /// Whether the request surely did not take effect or is safe to send again to another
    /// member (no connection, connection lost, member unavailable, token expired).
    pub(super) fn unreached(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::Transport { .. } => true,
            Self::Refused { code, .. } => *code == UNAVAILABLE || *code == UNAUTHENTICATED,
            Self::Decode { .. } | Self::Body { .. } => false,
        }
    }
}

/// Why the client cannot be built.
#[derive(Debug, thiserror::Error)]
pub(super) enum SetupError {
    /// An endpoint is not `http://host:port` or `https://host:port`.
    #[error("etcd endpoint {0:?} is not http://host:port or https://host:port")]
    Endpoint(String),
    /// The TLS files cannot be used.
    #[error("cannot set up tls to etcd")]
    Tls(#[source] switchyard_certs::TlsConfigError),
}

/// The etcd client: its endpoints, TLS and authentication token.
pub(super) struct Client {
    endpoints: Vec<Endpoint>,
    /// The endpoint requests go to (the last one that answered).
    current: AtomicUsize,
    tls: Option<tokio_rustls::TlsConnector>,
    auth: Option<(String, String)>,
    token: Mutex<Option<String>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.endpoints.len())
            .finish_non_exhaustive()
    }
}

/// An open watch: its messages one by one.
pub(super) struct WatchStream {
    endpoint: usize,
    body: Incoming,
    buffer: BytesMut,
}

impl WatchStream {
    /// The next message; `None` when the stream ended.
    pub(super) async fn message(
        &mut self,
        client: &Client,
    ) -> Result<Option<WatchResponse>, ClientError> {
        let url = &client.endpoints[self.endpoint].url;
        loop {
            if let Some(at) = self.buffer.iter().position(|b| *b == b'\n') {
                let line = self.buffer.split_to(at + 1);
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let message: StreamMessage<WatchResponse> =
                    serde_json::from_slice(line).map_err(|source| ClientError::Decode {
                        endpoint: url.clone(),
                        source,
                    })?;
                return message.into_result(url).map(Some);
            }
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(source)) => {
                    return Err(ClientError::Transport {
                        endpoint: url.clone(),
                        source,
                    });
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// Whether the member this watch is on still answers (a quiet watch on a member cut off
    /// without a reset would otherwise wait forever).
    pub(super) async fn member_answers(&self, client: &Client, limit: Duration) -> bool {
        let body = json!({});
        let status = client.post_to::<Value>(self.endpoint, "/v3/maintenance/status", &body);
        matches!(tokio::time::timeout(limit, status).await, Ok(Ok(_)))
    }
}

impl Client {
    /// A client for the cluster `spec` names. Connects nothing yet.
    pub(super) fn new(spec: &EtcdSpec) -> Result<Self, SetupError> {
        let endpoints = spec
            .endpoints
            .iter()
            .map(|u| Endpoint::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = if endpoints.iter().any(|e| e.https) || spec.tls.is_some() {
            let tls = spec.tls.as_ref();
            let opts = switchyard_certs::UpstreamTls {
                ca: tls.and_then(|t| t.ca.clone()),
                client_cert: tls.and_then(|t| t.identity.as_ref()).map(|id| {
                    switchyard_certs::CertSource {
                        cert: id.cert.clone(),
                        key: id.key.clone(),
                    }
                }),
                insecure_skip_verify: false,
            };
            let config =
                switchyard_certs::upstream_client_config(&opts).map_err(SetupError::Tls)?;
            Some(tokio_rustls::TlsConnector::from(config))
        } else {
            None
        };
        Ok(Self {
            endpoints,
            current: AtomicUsize::new(0),
            tls,
            auth: spec.auth.clone(),
            token: Mutex::new(None),
        })
    }

    /// Moves requests on to the next endpoint (the current one did not answer).
    pub(super) fn next_endpoint(&self) {
        if self.endpoints.len() > 1 {
            self.current.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn current(&self) -> usize {
        self.current.load(Ordering::Relaxed) % self.endpoints.len()
    }

    /// Every pair whose key starts with `prefix`, with the revision read at.
    pub(super) async fn get_prefix(&self, prefix: &str) -> Result<Range, ClientError> {
        let body = json!({
            "key": BASE64.encode(prefix),
            "range_end": BASE64.encode(prefix_end(prefix.as_bytes())),
        });
        self.post("/v3/kv/range", &body).await
    }

    /// Puts `value` at `key`.
    pub(super) async fn put(&self, key: &str, value: &[u8]) -> Result<(), ClientError> {
        let body = json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) });
        self.post::<Value>("/v3/kv/put", &body).await.map(drop)
    }

    /// Deletes `key`.
    pub(super) async fn delete(&self, key: &str) -> Result<(), ClientError> {
        let body = json!({ "key": BASE64.encode(key) });
        self.post::<Value>("/v3/kv/deleterange", &body)
            .await
            .map(drop)
    }

    /// Runs `ops` if every compare holds (nothing otherwise).
    pub(super) async fn txn(
        &self,
        compares: &[Compare],
        ops: &[Op],
    ) -> Result<TxnResponse, ClientError> {
        let body = json!({
            "compare": compares.iter().map(Compare::to_json).collect::<Vec<_>>(),
            "success": ops.iter().map(Op::to_json).collect::<Vec<_>>(),
        });
        self.post("/v3/kv/txn", &body).await
    }

    /// Watches every key under `prefix` from `revision`, with progress notifications.
    pub(super) async fn watch(
        &self,
        prefix: &str,
        revision: i64,
    ) -> Result<WatchStream, ClientError> {
        let body = json!({ "create_request": {
            "key": BASE64.encode(prefix),
            "range_end": BASE64.encode(prefix_end(prefix.as_bytes())),
            "start_revision": revision.to_string(),
            "progress_notify": true,
        }});
        let endpoint = self.current();
        // The connection stays with the stream; it closes when the stream is dropped.
        let (resp, _sender) = self.send(endpoint, "/v3/watch", &body).await?;
        let url = &self.endpoints[endpoint].url;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let bytes = read_body(url, resp.into_body()).await?;
            return Err(self.refused(endpoint, status, &bytes));
        }
        Ok(WatchStream {
            endpoint,
            body: resp.into_body(),
            buffer: BytesMut::new(),
        })
    }

    /// Grants a lease of `ttl` seconds: its id.
    pub(super) async fn lease_grant(&self, ttl: i64) -> Result<i64, ClientError> {
        let answer: LeaseAnswer = self
            .post("/v3/lease/grant", &json!({ "TTL": ttl.to_string() }))
            .await?;
        Ok(answer.id)
    }

    /// Keeps `lease` alive once: the seconds it has left (0: it is gone).
    pub(super) async fn lease_keep_alive(&self, lease: i64) -> Result<i64, ClientError> {
        let body = json!({ "ID": lease.to_string() });
        let message: StreamMessage<LeaseAnswer> = self.post("/v3/lease/keepalive", &body).await?;
        let url = &self.endpoints[self.current()].url;
        Ok(message.into_result(url)?.ttl)
    }

    /// Revokes `lease` (its keys go at once).
    pub(super) async fn lease_revoke(&self, lease: i64) -> Result<(), ClientError> {
        let body = json!({ "ID": lease.to_string() });
        self.post::<Value>("/v3/lease/revoke", &body)
            .await
            .map(drop)
    }

    /// Sends one request to the current endpoint and decodes the answer.
    async fn post<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T, ClientError> {
        self.post_to(self.current(), path, body).await
    }

    async fn post_to<T: DeserializeOwned>(
        &self,
        endpoint: usize,
        path: &str,
        body: &Value,
    ) -> Result<T, ClientError> {
        let (resp, sender) = self.send(endpoint, path, body).await?;
        let e = &self.endpoints[endpoint];
        let url = &e.url;
        let status = resp.status().as_u16();
        let bytes = read_body(url, resp.into_body()).await?;
        // Read whole: the connection is free for the next request.
        e.idle().push(sender);
        if !(200..300).contains(&status) {
            return Err(self.refused(endpoint, status, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
            endpoint: url.clone(),
            source,
        })
    }

    /// The error for an error answer; moves on from an unavailable member and forgets an
    /// expired token.
    fn refused(&self, endpoint: usize, status: u16, bytes: &[u8]) -> ClientError {
        let url = &self.endpoints[endpoint].url;
        let e = serde_json::from_slice::<GatewayError>(bytes).unwrap_or_else(|_| GatewayError {
            message: String::from_utf8_lossy(bytes).into_owned(),
            ..GatewayError::default()
        });
        if e.code == UNAVAILABLE {
            self.next_endpoint();
        }
        if e.code == UNAUTHENTICATED {
            *self.token.lock().expect("token lock is never poisoned") = None;
        }
        e.into_error(url, status)
    }

    /// Sends `body` to `path` on `endpoint` (authenticating first when needed); the answer's
    /// head and the connection (busy until the body is read). An endpoint that cannot be reached moves the client to the next.
    async fn send(&self, endpoint: usize, path: &str, body: &Value) -> Result<Answer, ClientError> {
        let token = self.token(endpoint).await?;
        let outcome = self.send_raw(endpoint, path, body, token.as_deref()).await;
        if matches!(
            outcome,
            Err(ClientError::Connect { .. } | ClientError::Transport { .. })
        ) {
            self.next_endpoint();
        }
        outcome
    }

    /// The token to send, authenticating once when the store has a user and no token yet.
    async fn token(&self, endpoint: usize) -> Result<Option<String>, ClientError> {
        let Some((name, password)) = &self.auth else {
            return Ok(None);
        };
        if let Some(t) = self
            .token
            .lock()
            .expect("token lock is never poisoned")
            .clone()
        {
            return Ok(Some(t));
        }
        let body = json!({ "name": name, "password": password });
        let (resp, sender) = self
            .send_raw(endpoint, "/v3/auth/authenticate", &body, None)
            .await?;
        let e = &self.endpoints[endpoint];
        let url = &e.url;
        let status = resp.status().as_u16();
        let bytes = read_body(url, resp.into_body()).await?;
        e.idle().push(sender);
        if !(200..300).contains(&status) {
            return Err(self.refused(endpoint, status, &bytes));
        }
        let answer: TokenAnswer =
            serde_json::from_slice(&bytes).map_err(|source| ClientError::Decode {
                endpoint: url.clone(),
                source,
            })?;
        *self.token.lock().expect("token lock is never poisoned") = Some(answer.token.clone());
        Ok(Some(answer.token))
    }

    async fn send_raw(
        &self,
        endpoint: usize,
        path: &str,
        body: &Value,
        token: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let e = &self.endpoints[endpoint];
        let mut request = hyper::Request::post(path)
            .header(hyper::header::HOST, &e.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(token) = token {
            request = request.header(hyper::header::AUTHORIZATION, token);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a POST with a valid path and headers is a valid request");
        let mut sender = e.connection(self.tls.as_ref()).await?;
        let resp = sender
            .send_request(request)
            .await
            .map_err(|source| ClientError::Transport {
                endpoint: e.url.clone(),
                source,
            })?;
        Ok((resp, sender))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prefix_range_ends_past_every_key_under_it() {
        assert_eq!(prefix_end(b"/a/"), b"/a0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn a_watch_message_from_the_gateway_decodes() {
        let line = r#"{"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"Zm9v","mod_revision":"3","value":"YmF6"}},{"type":"DELETE","kv":{"key":"Zm9v","mod_revision":"4"}}]}}"#;
        let m: StreamMessage<WatchResponse> = serde_json::from_str(line).expect("decodes");
        let w = m.into_result("http://x").expect("a result");
        assert_eq!(w.events.len(), 2);
        assert!(!w.events[0].is_delete());
        assert!(w.events[1].is_delete());
        let kv = w.events[0].kv.as_ref().expect("kv");
        assert_eq!(
            (kv.key.as_slice(), kv.value.as_slice()),
            (&b"foo"[..], &b"baz"[..])
        );
        assert_eq!(kv.mod_revision, 3);
    }
}
