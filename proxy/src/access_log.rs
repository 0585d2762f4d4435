//! The JSON access log: one object per request, written by a thread of its own.
//!
//! The request path never blocks on it and formats nothing: it fills a small [`Entry`] from
//! values it holds anyway (the route and endpoint as `Arc`s, the method, the URI and the
//! request id, whose clones are reference counts) and pushes the boxed entry into a bounded
//! lock-free queue. When the queue is full the entry is dropped and counted
//! (`switchyard_access_log_dropped_total`). The writer thread wakes every
//! [`WAKE`], formats what is queued into a buffered writer and flushes it; senders never wake
//! it, so logging costs the request path no system call. A file is reopened on request
//! ([`AccessLog::reopen`], SIGUSR1 in the binary) for log rotation; a writer stuck on its
//! output (a full disk, a pipe nobody reads) only makes entries drop.
//!
//! It sits beside `forward` in the layers: it reads the snapshot's service routes and endpoint
//! states and nothing above them.

use crate::endpoint::EndpointState;
use crate::error::Cause;
use crate::snapshot::ServiceRoute;
use crossbeam_queue::ArrayQueue;
use http::{HeaderValue, Method, Uri};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};
use switchyard_config::{AccessLogSpec, AccessLogTarget};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// How often the writer looks for queued entries (and flushes what it wrote).
const WAKE: Duration = Duration::from_millis(20);

/// Most cleared entry boxes kept for reuse.
const SPARE_BOXES: usize = 1024;

/// Status logged for a request the client abandoned before its response (nginx's 499).
const CLIENT_CLOSED: u16 = 499;

/// One request as the access log records it; filled on the request path, formatted by the
/// writer thread.
#[derive(Debug)]
pub(crate) struct Entry {
    /// When the request started; the writer turns it into wall-clock time (one clock read
    /// per request on the request path, not two).
    start: Instant,
    listener: usize,
    client: SocketAddr,
    method: Method,
    uri: Uri,
    request_id: HeaderValue,
    pub(crate) service: Option<Arc<ServiceRoute>>,
    pub(crate) stack: Option<usize>,
    pub(crate) endpoint: Option<Arc<EndpointState>>,
    pub(crate) status: u16,
    pub(crate) upstream: Option<Duration>,
    pub(crate) error: Option<Cause>,
    /// Request body bytes, counted by the upstream body as it streams.
    pub(crate) bytes_in: Option<Arc<AtomicU64>>,
    bytes_out: u64,
    duration: Duration,
}

impl Entry {
    /// An entry for a request that starts now.
    #[cfg(test)]
    pub(crate) fn new(
        listener: usize,
        client: SocketAddr,
        method: &Method,
        uri: &Uri,
        request_id: HeaderValue,
    ) -> Box<Self> {
        Box::new(Self::starting(listener, client, method, uri, request_id))
    }

    /// Lets go of what the entry holds (shared route, endpoint, URI and id bytes), so that
    /// its box can be used again.
    fn clear(&mut self) {
        self.service = None;
        self.endpoint = None;
        self.bytes_in = None;
        self.uri = Uri::default();
        self.request_id = HeaderValue::from_static("");
    }

    fn starting(
        listener: usize,
        client: SocketAddr,
        method: &Method,
        uri: &Uri,
        request_id: HeaderValue,
    ) -> Self {
        Self {
            start: Instant::now(),
            listener,
            client,
            method: method.clone(),
            uri: uri.clone(),
            request_id,
            service: None,
            stack: None,
            endpoint: None,
            // Until a response is made: a request whose client went away first keeps it.
            status: CLIENT_CLOSED,
            upstream: None,
            error: None,
            bytes_in: None,
            bytes_out: 0,
            duration: Duration::ZERO,
        }
    }
}

/// An entry waiting for the end of its response body; queued when dropped (the body ended,
/// failed or was abandoned), with the response bytes counted on the way.
#[derive(Debug)]
pub(crate) struct Pending {
    entry: Option<Box<Entry>>,
    log: AccessLog,
}

impl Pending {
    pub(crate) fn new(entry: Box<Entry>, log: AccessLog) -> Self {
        Self {
            entry: Some(entry),
            log,
        }
    }

    /// The entry, to fill in while the request is handled.
    pub(crate) fn entry(&mut self) -> Option<&mut Entry> {
        self.entry.as_deref_mut()
    }

    /// Response body bytes passed to the client.
    #[inline]
    pub(crate) fn add(&mut self, n: usize) {
        if let Some(e) = self.entry.as_mut() {
            e.bytes_out += n as u64;
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(mut e) = self.entry.take() {
            e.duration = e.start.elapsed();
            self.log.push(e);
        }
    }
}

struct Inner {
    queue: ArrayQueue<Box<Entry>>,
    /// Boxes of written entries, cleared, for the next requests (no allocation per request
    /// while the log keeps up).
    spare: ArrayQueue<Box<Entry>>,
    dropped: AtomicU64,
    reopen: AtomicBool,
    stop: AtomicBool,
    thread: OnceLock<std::thread::Thread>,
    /// Listener names by position in the configuration.
    listeners: Vec<String>,
}

/// Handle to the access log (cheap to clone): queue entries, reopen, close.
#[derive(Clone)]
pub(crate) struct AccessLog {
    inner: Arc<Inner>,
    done: Arc<std::sync::Mutex<Option<oneshot::Receiver<()>>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog").finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Starts the writer thread for `spec`; `listeners` are the listener names by position.
    pub(crate) fn spawn(spec: &AccessLogSpec, listeners: Vec<String>) -> std::io::Result<Self> {
        let inner = Arc::new(Inner {
            queue: ArrayQueue::new(spec.buffer.max(1)),
            spare: ArrayQueue::new(spec.buffer.clamp(1, SPARE_BOXES)),
            dropped: AtomicU64::new(0),
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: OnceLock::new(),
            listeners,
        });
        let (done_tx, done_rx) = oneshot::channel();
        let target = spec.target.clone();
        let writer = inner.clone();
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                run(&writer, &target);
                // Nobody may be waiting any more (the process is exiting).
                let _ = done_tx.send(());
            })?;
        inner
            .thread
            .set(handle.thread().clone())
            .expect("the thread is set once, here");
        match &spec.target {
            AccessLogTarget::Stdout => info!("access log on stdout"),
            AccessLogTarget::File(p) => info!(path = %p.display(), "access log"),
        }
        Ok(Self {
            inner,
            done: Arc::new(std::sync::Mutex::new(Some(done_rx))),
        })
    }

    /// An entry for a request that starts now, in a box the writer gave back if there is one.
    #[inline]
    pub(crate) fn entry(
        &self,
        listener: usize,
        client: SocketAddr,
        method: &Method,
        uri: &Uri,
        request_id: HeaderValue,
    ) -> Box<Entry> {
        let fresh = Entry::starting(listener, client, method, uri, request_id);
        match self.inner.spare.pop() {
            Some(mut b) => {
                *b = fresh;
                b
            }
            None => Box::new(fresh),
        }
    }

    /// Queues a finished entry; drops and counts it when the queue is full. Never blocks.
    #[inline]
    pub(crate) fn push(&self, e: Box<Entry>) {
        if self.inner.queue.push(e).is_err() {
            self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Entries dropped (queue full, or the log could not be written) since the start.
    pub(crate) fn dropped(&self) -> u64 {
        self.inner.dropped.load(Ordering::Relaxed)
    }

    /// Asks the writer to reopen its file (after a rotation renamed it).
    pub(crate) fn reopen(&self) {
        self.inner.reopen.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Some(t) = self.inner.thread.get() {
            t.unpark();
        }
    }

    /// Writes what is queued, flushes and stops the writer, waiting at most `within` (a
    /// writer stuck on its output is left behind; the process exits without it).
    pub(crate) async fn close(&self, within: Duration) {
        self.inner.stop.store(true, Ordering::Release);
        self.wake();
        let rx = match self.done.lock() {
            Ok(mut d) => d.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(rx) = rx {
            if tokio::time::timeout(within, rx).await.is_err() {
                warn!("the access log writer did not finish in time; unwritten lines are lost");
            }
        }
    }
}

type Output = std::io::BufWriter<Box<dyn Write + Send>>;

fn open(target: &AccessLogTarget) -> Option<Output> {
    let w: Box<dyn Write + Send> = match target {
        AccessLogTarget::Stdout => Box::new(std::io::stdout()),
        AccessLogTarget::File(path) => {
            match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(f) => Box::new(f),
                Err(e) => {
                    error!(path = %path.display(), error = %e, "cannot open the access log; its lines are dropped until it is reopened");
                    return None;
                }
            }
        }
    };
    Some(std::io::BufWriter::with_capacity(64 * 1024, w))
}

/// The writer thread's loop: reopen when asked, write what is queued, flush, sleep.
fn run(inner: &Inner, target: &AccessLogTarget) {
    let mut out = open(target);
    let mut line = Vec::with_capacity(512);
    let mut ts_cache = None;
    let mut failing = false;
    loop {
        let stopping = inner.stop.load(Ordering::Acquire);
        if inner.reopen.swap(false, Ordering::AcqRel) {
            if let Some(mut old) = out.take() {
                // A failed flush of the renamed file loses its last lines; logged below.
                if let Err(e) = old.flush() {
                    warn!(error = %e, "cannot flush the access log before reopening it");
                }
            }
            out = open(target);
            failing = false;
            info!("access log reopened");
        }
        let mut wrote = false;
        // Wall-clock time of an entry = now - how long ago it started (queued at most a
        // wake-up interval ago, so clock adjustments in between do not matter).
        let clocks = (SystemTime::now(), Instant::now());
        while let Some(e) = inner.queue.pop() {
            let Some(w) = out.as_mut() else {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            line.clear();
            format(&e, clocks, &inner.listeners, &mut ts_cache, &mut line);
            let mut e = e;
            e.clear();
            // A full spare queue drops the box.
            let _ = inner.spare.push(e);
            if let Err(err) = w.write_all(&line) {
                inner.dropped.fetch_add(1, Ordering::Relaxed);
                if !failing {
                    error!(error = %err, "cannot write the access log; lines are dropped");
                    failing = true;
                }
            } else {
                wrote = true;
            }
        }
        if wrote {
            if let Some(w) = out.as_mut() {
                if let Err(err) = w.flush() {
                    if !failing {
                        error!(error = %err, "cannot write the access log; lines are dropped");
                        failing = true;
                    }
                }
            }
        }
        if stopping {
            return;
        }
        std::thread::park_timeout(WAKE);
    }
}

/// The two decimal digits of every number below 100.
const DIGIT_PAIRS: [u8; 200] = {
    let mut t = [0u8; 200];
    let mut i = 0;
    while i < 100 {
        t[2 * i] = b'0' + (i / 10) as u8;
        t[2 * i + 1] = b'0' + (i % 10) as u8;
        i += 1;
    }
    t
};

/// Writes `n` in decimal at the end of `buf`, two digits a step; returns where it starts.
fn digits(mut n: u64, buf: &mut [u8; 20]) -> usize {
    let mut i = buf.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        buf[i..i + 2].copy_from_slice(&DIGIT_PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        buf[i] = b'0' + n as u8;
    }
    i
}

/// Decimal digits of `n`.
fn push_u64(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let i = digits(n, &mut buf);
    out.extend_from_slice(&buf[i..]);
}

/// `n` in exactly `width` digits (zero-padded; `n` must fit).
fn push_padded(out: &mut Vec<u8>, n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut n = n;
    for i in (0..width).rev() {
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

/// A duration in milliseconds with three decimals (microseconds), e.g. `1.500`.
fn push_ms(out: &mut Vec<u8>, d: Duration) {
    let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    push_u64(out, us / 1000);
    out.push(b'.');
    push_padded(out, us % 1000, 3);
}

/// A JSON string: quotes, backslashes and control characters escaped. Runs of plain bytes
/// are copied whole (a byte-by-byte push cost more than the rest of the line).
fn push_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // Almost always nothing to escape: one branch-free pass, then one copy.
    let plain = !bytes.iter().fold(false, |any, &b| {
        any | (b < 0x20) | (b == b'"') | (b == b'\\') | (b == 0x7f)
    });
    if plain {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let control;
        let escaped: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0..=0x1f | 0x7f => {
                control = [
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ];
                &control
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escaped);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// A string that never needs escaping, in quotes: configuration names (`[a-z0-9-]`), HTTP
/// method tokens (RFC 9110 `tchar`: no quote, backslash or control character) and error
/// labels.
fn push_token(out: &mut Vec<u8>, s: &str) {
    debug_assert!(
        !s.bytes()
            .any(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f),
        "{s:?} needs escaping"
    );
    out.reserve(s.len() + 2);
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn push_opt_token(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_token(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// An address in quotes; IPv4 assembled on the stack and copied once (`Display` is ten
/// times slower).
fn push_addr(out: &mut Vec<u8>, a: SocketAddr) {
    match a {
        SocketAddr::V4(v4) => {
            // `"255.255.255.255:65535"` is 23 bytes; digits are written right to left.
            let mut text = [0u8; 24];
            let mut at = text.len();
            let mut put = |b: u8| {
                at -= 1;
                text[at] = b;
            };
            put(b'"');
            let mut port = v4.port();
            loop {
                put(b'0' + (port % 10) as u8);
                port /= 10;
                if port == 0 {
                    break;
                }
            }
            put(b':');
            for (i, o) in v4.ip().octets().into_iter().rev().enumerate() {
                if i > 0 {
                    put(b'.');
                }
                put(b'0' + o % 10);
                if o >= 10 {
                    put(b'0' + (o / 10) % 10);
                }
                if o >= 100 {
                    put(b'0' + o / 100);
                }
            }
            put(b'"');
            out.extend_from_slice(&text[at..]);
        }
        SocketAddr::V6(_) => push_str(out, &a.to_string()),
    }
}

/// Writes the timestamp of `t` (RFC 3339 in UTC with milliseconds, e.g.
/// `2026-12-02T00:24:20.123Z`); the date and time to the second are computed once per second
/// (`cache` holds the last second and its text).
fn push_ts(out: &mut Vec<u8>, t: SystemTime, cache: &mut Option<(u64, [u8; 19])>) {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let head = match cache {
        Some((s, head)) if *s == secs => *head,
        _ => {
            let d = time::OffsetDateTime::from(t);
            let mut v = Vec::with_capacity(19);
            push_padded(&mut v, u64::try_from(d.year()).unwrap_or(0), 4);
            v.push(b'-');
            push_padded(&mut v, u64::from(u8::from(d.month())), 2);
            v.push(b'-');
            push_padded(&mut v, u64::from(d.day()), 2);
            v.push(b'T');
            push_padded(&mut v, u64::from(d.hour()), 2);
            v.push(b':');
            push_padded(&mut v, u64::from(d.minute()), 2);
            v.push(b':');
            push_padded(&mut v, u64::from(d.second()), 2);
            let mut head = [0u8; 19];
            head.copy_from_slice(&v[..19]);
            *cache = Some((secs, head));
            head
        }
    };
    out.extend_from_slice(&head);
    out.push(b'.');
    push_padded(out, u64::from(since.subsec_millis()), 3);
    out.push(b'Z');
}

/// One JSON object and a newline, written by hand: the writer formats every request's line,
/// and a generic serializer with `Display` for addresses cost more than the request itself.
fn format(
    e: &Entry,
    (wall, now): (SystemTime, Instant),
    listeners: &[String],
    ts_cache: &mut Option<(u64, [u8; 19])>,
    out: &mut Vec<u8>,
) {
    let service = e.service.as_deref();
    out.extend_from_slice(b"{\"ts\":\"");
    let ts = wall
        .checked_sub(now.saturating_duration_since(e.start))
        .unwrap_or(wall);
    push_ts(out, ts, ts_cache);
    out.extend_from_slice(b"\",\"listener\":");
    push_token(out, listeners.get(e.listener).map_or("", String::as_str));
    out.extend_from_slice(b",\"service\":");
    push_opt_token(out, service.map(|s| s.name().as_str()));
    out.extend_from_slice(b",\"stack\":");
    push_opt_token(
        out,
        service
            .zip(e.stack)
            .and_then(|(s, i)| s.stacks().get(i))
            .map(|st| st.name().as_str()),
    );
    out.extend_from_slice(b",\"endpoint\":");
    match &e.endpoint {
        Some(ep) => push_addr(out, ep.addr()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"method\":");
    push_token(out, e.method.as_str());
    out.extend_from_slice(b",\"path\":");
    push_str(out, e.uri.path());
    out.extend_from_slice(b",\"status\":");
    push_u64(out, u64::from(e.status));
    out.extend_from_slice(b",\"duration_ms\":");
    push_ms(out, e.duration);
    out.extend_from_slice(b",\"upstream_ms\":");
    match e.upstream {
        Some(d) => push_ms(out, d),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"bytes_in\":");
    push_u64(
        out,
        e.bytes_in.as_ref().map_or(0, |n| n.load(Ordering::Relaxed)),
    );
    out.extend_from_slice(b",\"bytes_out\":");
    push_u64(out, e.bytes_out);
    out.extend_from_slice(b",\"request_id\":");
    // Ids are visible ASCII (see `crate::request_id`).
    push_str(
        out,
        std::str::from_utf8(e.request_id.as_bytes()).unwrap_or(""),
    );
    out.extend_from_slice(b",\"client\":");
    push_addr(out, e.client);
    out.extend_from_slice(b",\"error\":");
    push_opt_token(out, e.error.map(Cause::label));
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rfc3339(t: SystemTime) -> String {
        let mut out = Vec::new();
        push_ts(&mut out, t, &mut None);
        String::from_utf8(out).expect("ascii")
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_milliseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_635_060_123);
        assert_eq!(rfc3339(t), "2025-12-02T00:24:20.123Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_635_060_050);
        assert_eq!(rfc3339(t), "2025-12-02T00:24:20.050Z");
    }

    #[test]
    fn strings_escape_quotes_backslashes_and_control_characters() {
        for s in [
            "",
            "plain/path",
            "a\"b\\c\u{1}d\u{7f}",
            "\"",
            "caf\u{e9} \u{1f600}\n",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).expect("a JSON string");
            assert_eq!(back, s);
        }
        let mut out = Vec::new();
        push_str(&mut out, "x\u{1}");
        assert_eq!(out, b"\"x\\u0001\"");
    }

    #[test]
    fn an_entry_formats_as_one_json_line() {
        let mut e = Entry::new(
            0,
            "127.0.0.1:4000".parse().expect("addr"),
            &Method::POST,
            &Uri::from_static("/a/b?secret=1"),
            HeaderValue::from_static("id-\"1\\"),
        );
        e.status = 502;
        e.error = Some(Cause::ConnectFailed);
        e.duration = Duration::from_micros(1500);
        let mut out = Vec::new();
        // Written 2.5 s after the request started.
        let wall = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_635_062_623);
        let now = e.start + Duration::from_millis(2500);
        format(&e, (wall, now), &["public".to_owned()], &mut None, &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["listener"], "public");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["path"], "/a/b");
        assert_eq!(v["status"], 502);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["upstream_ms"], serde_json::Value::Null);
        assert_eq!(v["service"], serde_json::Value::Null);
        assert_eq!(v["error"], "connect-failed");
        assert_eq!(v["request_id"], "id-\"1\\");
        assert_eq!(v["bytes_in"], 0);
        assert_eq!(v["stack"], serde_json::Value::Null);
        assert_eq!(v["client"], "127.0.0.1:4000");
        assert_eq!(v["ts"], "2025-12-02T00:24:20.123Z", "the request's start");
    }

    #[tokio::test]
    async fn written_entries_give_their_boxes_back_cleared() {
        let dir = std::env::temp_dir().join(format!("sy-access-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("access.log");
        let spec = AccessLogSpec {
            target: AccessLogTarget::File(path.clone()),
            buffer: 8,
        };
        let log = AccessLog::spawn(&spec, vec!["public".to_owned()]).expect("writer");
        let e = log.entry(
            0,
            "127.0.0.1:4000".parse().expect("addr"),
            &Method::GET,
            &Uri::from_static("/first"),
            HeaderValue::from_static("id-1"),
        );
        drop(Pending::new(e, log.clone()));
        log.close(Duration::from_secs(5)).await;
        assert_eq!(log.inner.spare.len(), 1, "the written entry's box is kept");
        let again = log.entry(
            0,
            "127.0.0.1:4001".parse().expect("addr"),
            &Method::POST,
            &Uri::from_static("/second"),
            HeaderValue::from_static("id-2"),
        );
        assert_eq!(log.inner.spare.len(), 0, "and used again");
        assert_eq!(again.uri.path(), "/second");
        assert_eq!(again.status, CLIENT_CLOSED);
        assert!(again.service.is_none() && again.endpoint.is_none());
        let text = std::fs::read_to_string(&path).expect("log");
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("\"path\":\"/first\""), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn numbers_and_addresses_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 100, 255, 1000, 65_535, 1_234_567, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for a in [
            "0.0.0.0:0",
            "255.255.255.255:65535",
            "10.0.100.9:80",
            "[::1]:443",
        ] {
            let a: SocketAddr = a.parse().expect("addr");
            let mut out = Vec::new();
            push_addr(&mut out, a);
            assert_eq!(out, format!("\"{a}\"").as_bytes());
        }
    }
}
