//! The one plain-HTTP/1.1 client of the deployment side: a request on a fresh connection,
//! bounded in time and answer size. Checks, webhooks and gates all send through it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Largest answer body read.
pub(crate) const BODY_LIMIT: usize = 1024 * 1024;

/// Sends `req` to `host:port` (a name is resolved by the system resolver) and reads the
/// answer, all within `limit`: the status and the body, or what went wrong.
pub(crate) async fn send(
    host: &str,
    port: u16,
    req: hyper::Request<Full<Bytes>>,
    limit: Duration,
) -> Result<(u16, Bytes), String> {
    let exchange = async {
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect failed: {e}"))?;
        let (mut sender, conn) = http1::handshake(TokioIo::new(tcp))
            .await
            .map_err(|e| format!("handshake failed: {e}"))?;
        let conn = tokio::spawn(conn);
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request failed: {e}"))?;
        let code = resp.status().as_u16();
        let bytes = Limited::new(resp.into_body(), BODY_LIMIT)
            .collect()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?
            .to_bytes();
        conn.abort();
        Ok::<_, String>((code, bytes))
    };
    timeout(limit, exchange)
        .await
        .map_err(|_| format!("no answer within {limit:?}"))?
}
