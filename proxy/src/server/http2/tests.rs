//! The HTTP/2 server on real loopback sockets, served as the listener serves it (watched by a
//! [`Drain`]), with the `h2` crate's client (or raw frames) on the other side.

use super::*;
use crate::drain::{Drain, SelfDraining};
use http::StatusCode;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// Every wait's bound: a server that hangs fails the test instead.
const BOUND: Duration = Duration::from_secs(10);

/// Keep-alive far away: no ping in a test's time.
const SETTINGS: Settings = Settings {
    max_concurrent_streams: 100,
    max_pending_reset_streams: 20,
    max_header_list_size: 16384,
    keep_alive_interval: Duration::from_secs(60),
    keep_alive_timeout: Duration::from_secs(20),
    preface_timeout: Duration::from_secs(20),
};

/// Keep-alive within a test's time: a ping after 200 ms idle, unanswered for 300 ms closes.
const PINGING: Settings = Settings {
    keep_alive_interval: Duration::from_millis(200),
    keep_alive_timeout: Duration::from_millis(300),
    ..SETTINGS
};

/// The answers' body (`RawHead` is implemented for it by the HTTP/1 server's tests).
type Out = BoxBody<Bytes, BodyError>;

fn full(b: impl Into<Bytes>) -> Out {
    Full::new(b.into()).map_err(|e| match e {}).boxed()
}

/// One connection served as the listener serves it, and its drain.
struct Server {
    addr: SocketAddr,
    /// Kept until the test shuts it down: a dropped drain starts draining.
    drain: Drain,
    /// `serve`'s result, once the connection has ended.
    served: JoinHandle<Result<(), h2::Error>>,
}

/// Accepts one connection and serves it with `handler`.
async fn server<H, Fut>(handler: H, settings: Settings) -> Server
where
    H: Fn(Request<RequestBody>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response<Out>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let drain = Drain::new();
    let mut watcher = drain.watcher();
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        // As the listener has its connections.
        tcp.set_nodelay(true).unwrap();
        let draining = watcher.draining();
        watcher
            .watch(|| SelfDraining::new(serve(tcp, &handler, &settings, &draining)))
            .await
    });
    Server {
        addr,
        drain,
        served,
    }
}

/// An `h2` client connection (with the crate's defaults unless `builder` says otherwise), its
/// connection driven by a task of its own (which also answers the server's pings).
async fn client_with(
    addr: SocketAddr,
    builder: &h2::client::Builder,
) -> (
    h2::client::SendRequest<Bytes>,
    JoinHandle<Result<(), h2::Error>>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (send, conn) = timeout(BOUND, builder.handshake(tcp))
        .await
        .expect("handshake in time")
        .expect("handshake");
    (send, tokio::spawn(conn))
}

async fn client(
    addr: SocketAddr,
) -> (
    h2::client::SendRequest<Bytes>,
    JoinHandle<Result<(), h2::Error>>,
) {
    client_with(addr, &h2::client::Builder::new()).await
}

fn request(method: &str, path: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(())
        .unwrap()
}

/// A GET of `path` on `send`: its answer's head and body (bounded).
async fn get(
    send: &mut h2::client::SendRequest<Bytes>,
    path: &str,
) -> (http::response::Parts, Bytes) {
    let ready = timeout(BOUND, send.clone().ready())
        .await
        .expect("ready in time")
        .expect("ready");
    *send = ready;
    let (resp, _) = send
        .send_request(request("GET", path), true)
        .expect("request sent");
    answer(resp).await
}

/// The answer to a request: its head and its whole body, read as a client reads it (giving the
/// window back as it goes), bounded.
async fn answer(resp: h2::client::ResponseFuture) -> (http::response::Parts, Bytes) {
    timeout(BOUND, async {
        let (head, mut body) = resp.await.expect("answer").into_parts();
        let mut got = Vec::new();
        while let Some(data) = body.data().await {
            let data = data.expect("answer's body");
            let _ = body.flow_control().release_capacity(data.len());
            got.extend_from_slice(&data);
        }
        (head, Bytes::from(got))
    })
    .await
    .expect("answer in time")
}

/// Sends `data` as a client does: no more than the server's window lets it, in pieces of at
/// most 256 KiB, the last one ending the stream.
async fn upload(tx: &mut h2::SendStream<Bytes>, mut data: Bytes) {
    timeout(BOUND, async {
        while !data.is_empty() {
            tx.reserve_capacity(data.len().min(256 * 1024));
            let n = poll_fn(|cx| tx.poll_capacity(cx))
                .await
                .expect("stream open")
                .expect("capacity");
            if n == 0 {
                continue;
            }
            let piece = data.split_to(n.min(data.len()));
            tx.send_data(piece, data.is_empty()).expect("data sent");
        }
    })
    .await
    .expect("the upload is taken in time (the server gives its window back)");
}

/// The byte at `offset` of a patterned body (a prime period, so a piece out of place shows).
fn pattern(offset: usize) -> u8 {
    (offset % 251) as u8
}

#[tokio::test]
async fn an_upload_larger_than_the_window_is_read_whole() {
    let server = server(
        |req: Request<RequestBody>| async move {
            match req.into_body().collect().await {
                Ok(b) => Response::new(full(b.to_bytes().len().to_string())),
                Err(e) => {
                    let mut r = Response::new(full(format!("body: {e}")));
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    r
                }
            }
        },
        SETTINGS,
    )
    .await;
    let (send, _conn) = client(server.addr).await;
    let mut send = timeout(BOUND, send.ready()).await.unwrap().unwrap();
    // Three times the server's windows (stream and connection: 1 MiB each).
    let size = 3 * 1024 * 1024;
    let data: Bytes = (0..size).map(pattern).collect::<Vec<u8>>().into();
    let (resp, mut tx) = send
        .send_request(request("POST", "/upload"), false)
        .unwrap();
    upload(&mut tx, data).await;
    let (head, body) = answer(resp).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, size.to_string());
}

#[tokio::test]
async fn an_answer_larger_than_the_clients_window_arrives_whole() {
    const CHUNK: usize = 64 * 1024;
    const CHUNKS: usize = 64;
    const LAST: &[u8] = b"and that is all";
    let server = server(
        |_req: Request<RequestBody>| async {
            let mut frames: Vec<Result<Frame<Bytes>, BodyError>> = (0..CHUNKS)
                .map(|c| {
                    let chunk: Vec<u8> = (c * CHUNK..(c + 1) * CHUNK).map(pattern).collect();
                    Ok(Frame::data(Bytes::from(chunk)))
                })
                .collect();
            frames.push(Ok(Frame::data(Bytes::from_static(LAST))));
            Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed())
        },
        SETTINGS,
    )
    .await;
    // The protocol's smallest windows: the answer is 64 of them.
    let mut builder = h2::client::Builder::new();
    builder
        .initial_window_size(65_535)
        .initial_connection_window_size(65_535);
    let (mut send, _conn) = client_with(server.addr, &builder).await;
    let (head, body) = get(&mut send, "/big").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body.len(), CHUNKS * CHUNK + LAST.len());
    let (data, last) = body.split_at(CHUNKS * CHUNK);
    if let Some(i) = data.iter().enumerate().position(|(i, &b)| b != pattern(i)) {
        panic!("byte {i} is {}, not {}", data[i], pattern(i));
    }
    assert_eq!(last, LAST);
}

/// Tells `dropped` when it is dropped (with its handler's answer).
struct Guard(mpsc::UnboundedSender<()>);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[tokio::test]
async fn a_stream_reset_by_the_client_drops_its_answer_and_the_connection_goes_on() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let (dropped_tx, mut dropped) = mpsc::unbounded_channel();
    let server = server(
        move |req: Request<RequestBody>| {
            let (started, dropped) = (started_tx.clone(), dropped_tx.clone());
            async move {
                if req.uri().path() == "/hang" {
                    let _guard = Guard(dropped);
                    let _ = started.send(());
                    std::future::pending::<()>().await;
                }
                Response::new(full("ok"))
            }
        },
        SETTINGS,
    )
    .await;
    let (send, conn) = client(server.addr).await;
    let mut send = timeout(BOUND, send.ready()).await.unwrap().unwrap();
    let (resp, mut tx) = send.send_request(request("GET", "/hang"), false).unwrap();
    timeout(BOUND, started.recv())
        .await
        .expect("the handler is called in time")
        .unwrap();
    tx.send_reset(Reason::CANCEL);
    timeout(BOUND, dropped.recv())
        .await
        .expect("the answer is dropped once the stream is reset")
        .unwrap();
    drop(resp);
    let (head, body) = get(&mut send, "/other").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, "ok");
    assert!(!conn.is_finished(), "the connection is still open");
    assert!(
        !server.served.is_finished(),
        "the connection is still served"
    );
}

#[tokio::test]
async fn a_drain_sends_goaway_and_finishes_the_stream_in_flight() {
    let (started_tx, mut started) = mpsc::unbounded_channel();
    let release = Arc::new(Notify::new());
    let server = server(
        {
            let release = release.clone();
            move |req: Request<RequestBody>| {
                let (started, release) = (started_tx.clone(), release.clone());
                async move {
                    if req.uri().path() == "/slow" {
                        let _ = started.send(());
                        release.notified().await;
                        return Response::new(full("slow"));
                    }
                    Response::new(full("ok"))
                }
            }
        },
        SETTINGS,
    )
    .await;
    let (send, conn) = client(server.addr).await;
    let mut send = timeout(BOUND, send.ready()).await.unwrap().unwrap();
    let (slow, _) = send.send_request(request("GET", "/slow"), true).unwrap();
    timeout(BOUND, started.recv())
        .await
        .expect("the handler is called in time")
        .unwrap();

    let shutdown = tokio::spawn(server.drain.shutdown());
    // Until the client has the server's GOAWAY, a request goes out (and is answered); then the
    // client refuses to open one more stream on the connection.
    let refused = timeout(BOUND, async {
        loop {
            match send.send_request(request("GET", "/new"), true) {
                Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => break e,
            }
        }
    })
    .await
    .expect("a new request is refused once the drain has started");
    assert!(refused.is_go_away(), "refused for a GOAWAY: {refused}");
    assert!(refused.is_remote(), "the server's GOAWAY: {refused}");
    assert!(
        !shutdown.is_finished(),
        "the drain waits for the stream in flight"
    );

    release.notify_one();
    let (head, body) = answer(slow).await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, "slow");

    let served = timeout(BOUND, server.served)
        .await
        .expect("serve returns once the stream in flight is done")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    timeout(BOUND, conn)
        .await
        .expect("the connection ends")
        .unwrap()
        .expect("the connection ends without an error");
    timeout(BOUND, shutdown)
        .await
        .expect("the drain ends with its connection")
        .unwrap();
}

/// The frames in `bytes` (as the server wrote them): type, flags and stream of each.
fn frames(bytes: &[u8]) -> Vec<(u8, u8, u32)> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let stream = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
        out.push((rest[3], rest[4], stream));
        rest = &rest[(9 + len).min(rest.len())..];
    }
    out
}

const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const ACK: u8 = 0x1;

#[tokio::test]
async fn an_unanswered_ping_closes_the_connection() {
    let server = server(answer_ok, PINGING).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // The client's preface and an empty SETTINGS, and not another byte: no ack of the
    // server's SETTINGS, nor of its PING.
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .unwrap();
    tcp.write_all(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]).await.unwrap();
    let served = timeout(BOUND, server.served)
        .await
        .expect("serve returns when its ping is not answered")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    let written = read_to_close(&mut tcp).await;
    let frames = frames(&written);
    let ping = frames
        .iter()
        .position(|&(t, flags, _)| t == PING && flags & ACK == 0);
    let Some(ping) = ping else {
        panic!("no PING among the frames written: {frames:?}");
    };
    assert!(
        frames[ping..].iter().any(|&(t, _, _)| t == GOAWAY),
        "no GOAWAY after the PING: {frames:?}"
    );
}

#[tokio::test]
async fn a_connection_that_never_sends_its_preface_ends_with_the_drain() {
    let server = server(answer_ok, SETTINGS).await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // Connected, and silent: the server waits for the preface.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let drained = tokio::spawn(server.drain.shutdown());
    let served = timeout(BOUND, server.served)
        .await
        .expect("serve returns when the drain starts, preface or not")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    timeout(BOUND, drained)
        .await
        .expect("the drain ends")
        .unwrap();
    read_to_close(&mut tcp).await;
}

#[tokio::test]
async fn a_connection_without_its_preface_in_time_is_closed() {
    let server = server(
        answer_ok,
        Settings {
            preface_timeout: Duration::from_millis(300),
            ..SETTINGS
        },
    )
    .await;
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    // Half a preface, then nothing.
    tcp.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let served = timeout(BOUND, server.served)
        .await
        .expect("serve returns when the preface is late")
        .unwrap();
    assert!(served.is_ok(), "{served:?}");
    read_to_close(&mut tcp).await;
}

#[tokio::test]
async fn a_client_that_answers_pings_keeps_its_connection() {
    let server = server(answer_ok, PINGING).await;
    let (mut send, conn) = client(server.addr).await;
    // Idle for several intervals and timeouts: pinged several times, and answering each.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !server.served.is_finished(),
        "the connection is still served"
    );
    assert!(!conn.is_finished(), "the connection is still open");
    let (head, body) = get(&mut send, "/").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, "ok");
}

#[tokio::test]
async fn answers_get_a_date_and_a_length_when_the_handler_gave_none() {
    let server = server(
        |_req: Request<RequestBody>| async { Response::new(full("hello")) },
        SETTINGS,
    )
    .await;
    let (mut send, _conn) = client(server.addr).await;
    let (head, body) = get(&mut send, "/").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(body, "hello");
    assert_eq!(head.headers.get(header::CONTENT_LENGTH).unwrap(), "5");
    let date = head.headers.get(header::DATE).expect("a Date");
    let date = httpdate::parse_http_date(date.to_str().unwrap()).expect("an HTTP date");
    let age = std::time::SystemTime::now()
        .duration_since(date)
        .unwrap_or_default();
    assert!(age < Duration::from_secs(60), "a Date of now: {date:?}");
}

/// Reads what the server writes until it closes the connection (bounded).
async fn read_to_close(tcp: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    timeout(BOUND, tcp.read_to_end(&mut out))
        .await
        .expect("the connection is closed")
        .expect("read");
    out
}

/// A handler answering `ok` to everything.
async fn answer_ok(_req: Request<RequestBody>) -> Response<Out> {
    Response::new(full("ok"))
}
