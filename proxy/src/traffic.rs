//! Live traffic figures of a stack: cumulative counters the request path bumps with relaxed
//! atomics (requests, responses by class and listener, proxy errors by cause, bytes, latency
//! histograms), and a ring of per-second samples of them from which sliding-window
//! [`Figures`] are computed.
//!
//! The request path never locks, allocates or reads anything but its own counters: it adds to
//! cumulative atomics only, in its thread's shard of them ([`shard`]: a plain load and store,
//! no locked instruction; readers add the shards up). Once a second the snapshot writer calls
//! [`StackStats::tick`], which copies the counters into the ring (a short lock, off the request
//! path); a window's figures are the difference between now and the sample `window` ticks
//! ago, so counts are exact. The same counters feed the Prometheus collector
//! (`crate::metrics`) at scrape time, so a request pays once for both. A [`StackStats`] is
//! keyed by (service, stack) in the build registry and carried into every snapshot, so weight
//! changes and reloads keep it. [`ShadowCounters`] do the
//! same for a service's shadow copies. Each endpoint has one too, inside its carried-over
//! state, with a shorter history ([`ENDPOINT_HISTORY`]): it counts every attempt sent to the
//! endpoint, its responses, proxy errors and latencies (body bytes are counted per stack only,
//! as a retried request body is not the endpoint's).

use crate::error::Cause;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_config::{Figures, Quantiles, Reading, Window};
use tokio::time::Instant;

mod shadow;
mod shard;
pub(crate) use shadow::ShadowSlot;
pub use shadow::{SHADOW_IN_FLIGHT, ShadowCounters};
use shard::Mine;

/// Upper bounds of the latency buckets in microseconds: 1, 1.5, 2, 2.5, 3, 4, 5, 6 and 8 per
/// decade from 0.1 ms to 10 s (each about 25 % wide), then an overflow bucket. Every bound of the
/// Prometheus histogram ([`PROMETHEUS_BOUNDS_US`]) is one of these.
pub(crate) const BOUNDS_US: [u64; 46] = {
    const STEPS: [u64; 9] = [10, 15, 20, 25, 30, 40, 50, 60, 80];
    let mut out = [0u64; 46];
    let mut decade = 10u64; // 10 * 10 µs steps = 100 µs
    let mut i = 0;
    while i < 45 {
        out[i] = STEPS[i % 9] * decade;
        i += 1;
        if i % 9 == 0 {
            decade *= 10;
        }
    }
    out[45] = 10_000_000;
    out
};

/// Latency buckets: one per bound plus overflow.
pub(crate) const LATENCY_BUCKETS: usize = BOUNDS_US.len() + 1;

/// Bounds of `switchyard_request_duration_seconds` and friends: 0.5 ms … 10 s.
pub(crate) const PROMETHEUS_BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Response classes counted: 1xx..5xx at indices 0..=4.
const CLASSES: usize = 5;

/// Number of proxy error causes.
pub(crate) const CAUSES: usize = Cause::ALL.len();

/// Samples kept: the longest window plus the sample it is measured from.
const RING: usize = 301;

/// Seconds of history an endpoint keeps (its 5 min figures cover the last minute; `seconds`
/// says so): a minute of samples is about 56 KiB, five would be 280 KiB per endpoint.
pub(crate) const ENDPOINT_HISTORY: usize = 60;

/// A latency histogram of relaxed atomics.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records `d`; `mine` says whether this thread is the histogram's one writer.
    #[inline]
    fn record(&self, mine: Mine, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = BOUNDS_US.partition_point(|&b| b < us);
        mine.add(&self.buckets[i], 1);
        mine.add(&self.sum_us, us);
    }

    /// Adds the counts per bucket to `out`; returns the sum of the values, in microseconds.
    fn add_to(&self, out: &mut [u64; LATENCY_BUCKETS]) -> u64 {
        for (o, b) in out.iter_mut().zip(&self.buckets) {
            *o += b.load(Ordering::Relaxed);
        }
        self.sum_us.load(Ordering::Relaxed)
    }
}

/// A latency histogram as read: counts per bucket, and the sum of the values in seconds.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistogramReading {
    pub(crate) counts: [u64; LATENCY_BUCKETS],
    pub(crate) sum_seconds: f64,
}

/// Counters of one stack on one listener (a cache line or more of their own, as a shard's).
#[derive(Debug)]
#[repr(align(64))]
struct ListenerCounts {
    classes: [AtomicU64; CLASSES],
    errors: [AtomicU64; CAUSES],
}

impl Default for ListenerCounts {
    fn default() -> Self {
        Self {
            classes: std::array::from_fn(|_| AtomicU64::new(0)),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// The cumulative counters at one tick.
#[derive(Debug, Clone)]
struct Sample {
    at: Instant,
    requests: u64,
    classes: [u64; CLASSES],
    errors: [u64; CAUSES],
    bytes_in: u64,
    bytes_out: u64,
    headers: [u64; LATENCY_BUCKETS],
    total: [u64; LATENCY_BUCKETS],
}

impl Sample {
    fn zero(at: Instant) -> Self {
        Self {
            at,
            requests: 0,
            classes: [0; CLASSES],
            errors: [0; CAUSES],
            bytes_in: 0,
            bytes_out: 0,
            headers: [0; LATENCY_BUCKETS],
            total: [0; LATENCY_BUCKETS],
        }
    }
}

/// One thread's share of a stack's counters ([`shard`]), on cache lines of its own.
#[derive(Debug)]
#[repr(align(64))]
struct Shard {
    requests: AtomicU64,
    /// Indexed by the listener's position in the configuration.
    listeners: Box<[ListenerCounts]>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    headers: Histogram,
    total: Histogram,
    connect: Histogram,
}

impl Shard {
    fn new(listeners: usize) -> Self {
        Self {
            requests: AtomicU64::new(0),
            listeners: (0..listeners.max(1))
                .map(|_| ListenerCounts::default())
                .collect(),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            headers: Histogram::default(),
            total: Histogram::default(),
            connect: Histogram::default(),
        }
    }

    #[inline]
    fn on(&self, listener: usize) -> &ListenerCounts {
        // Listeners are fixed at start; a stale index counts on the first listener.
        self.listeners.get(listener).unwrap_or(&self.listeners[0])
    }
}

/// Traffic figures of one stack, carried across snapshots.
#[derive(Debug)]
pub struct StackStats {
    /// One shard per thread that owns one ([`shard::owned`]), then the shared one.
    shards: Box<[Shard]>,
    /// Per-second samples, oldest first; only `tick` and `figures` take the lock.
    ring: Mutex<VecDeque<Sample>>,
    /// Samples kept.
    ring_len: usize,
}

impl StackStats {
    /// Counters for a stack served on `listeners` listeners.
    pub(crate) fn new(listeners: usize) -> Self {
        Self::with_history(listeners, RING - 1)
    }

    /// Counters keeping `seconds` of per-second samples (windows longer than that report
    /// what there is).
    pub(crate) fn with_history(listeners: usize, seconds: usize) -> Self {
        let ring_len = seconds.clamp(1, RING - 1) + 1;
        let mut ring = VecDeque::with_capacity(ring_len);
        ring.push_back(Sample::zero(Instant::now()));
        Self {
            shards: (0..=shard::owned())
                .map(|_| Shard::new(listeners))
                .collect(),
            ring: Mutex::new(ring),
            ring_len,
        }
    }

    /// This thread's shard, and how to add to it.
    #[inline]
    fn mine(&self) -> (&Shard, Mine) {
        let mine = Mine::get();
        match self.shards.get(mine.index) {
            Some(s) => (s, mine),
            // Not reached: there is a shard for every index `Mine` gives.
            None => (&self.shards[self.shards.len() - 1], Mine::shared()),
        }
    }

    /// The sum over the shards of what `f` reads from each.
    fn sum(&self, f: impl Fn(&Shard) -> u64) -> u64 {
        self.shards.iter().map(f).sum()
    }

    /// A request was routed to the stack.
    #[inline]
    pub(crate) fn record_request(&self) {
        let (s, mine) = self.mine();
        mine.add(&s.requests, 1);
    }

    /// An endpoint's response headers arrived `elapsed` after the request started.
    #[inline]
    pub(crate) fn record_status(&self, listener: usize, status: u16, elapsed: Duration) {
        let (s, mine) = self.mine();
        let class = usize::from(status / 100).clamp(1, CLASSES) - 1;
        mine.add(&s.on(listener).classes[class], 1);
        s.headers.record(mine, elapsed);
    }

    /// The proxy answered for the stack with `cause`, `elapsed` after the request started;
    /// counted in both latency histograms.
    #[inline]
    pub(crate) fn record_failure(&self, listener: usize, cause: Cause, elapsed: Duration) {
        let (s, mine) = self.mine();
        mine.add(&s.on(listener).errors[cause.index()], 1);
        s.headers.record(mine, elapsed);
        s.total.record(mine, elapsed);
    }

    /// Request body bytes sent to the stack.
    #[inline]
    pub(crate) fn record_bytes_in(&self, n: u64) {
        let (s, mine) = self.mine();
        mine.add(&s.bytes_in, n);
    }

    /// A response body ended (or was dropped) `elapsed` after the request started.
    #[inline]
    pub(crate) fn record_done(&self, elapsed: Duration, bytes_out: u64) {
        let (s, mine) = self.mine();
        s.total.record(mine, elapsed);
        mine.add(&s.bytes_out, bytes_out);
    }

    /// A new upstream connection took `d` to establish.
    #[inline]
    pub(crate) fn record_connect(&self, d: Duration) {
        let (s, mine) = self.mine();
        s.connect.record(mine, d);
    }

    /// Requests routed to the stack since it appeared.
    pub fn requests(&self) -> u64 {
        self.sum(|s| s.requests.load(Ordering::Relaxed))
    }

    /// Endpoint responses on `listener` by class, 1xx..5xx at indices 0..=4.
    pub(crate) fn classes(&self, listener: usize) -> [u64; CLASSES] {
        std::array::from_fn(|i| self.sum(|s| s.on(listener).classes[i].load(Ordering::Relaxed)))
    }

    /// Proxy errors on `listener`, indexed like [`Cause::ALL`].
    pub(crate) fn errors(&self, listener: usize) -> [u64; CAUSES] {
        std::array::from_fn(|i| self.sum(|s| s.on(listener).errors[i].load(Ordering::Relaxed)))
    }

    /// Number of listener slots.
    pub(crate) fn listener_slots(&self) -> usize {
        self.shards[0].listeners.len()
    }

    /// Request and response body bytes since the stack appeared.
    pub(crate) fn bytes(&self) -> (u64, u64) {
        (
            self.sum(|s| s.bytes_in.load(Ordering::Relaxed)),
            self.sum(|s| s.bytes_out.load(Ordering::Relaxed)),
        )
    }

    /// A histogram summed over the shards.
    fn histogram(&self, which: impl Fn(&Shard) -> &Histogram) -> HistogramReading {
        let mut counts = [0; LATENCY_BUCKETS];
        let sum_us: u64 = self
            .shards
            .iter()
            .map(|s| which(s).add_to(&mut counts))
            .sum();
        HistogramReading {
            counts,
            sum_seconds: sum_us as f64 / 1e6,
        }
    }

    /// Time to the endpoint's response headers.
    pub(crate) fn headers(&self) -> HistogramReading {
        self.histogram(|s| &s.headers)
    }

    /// Time to the response's end.
    pub(crate) fn total(&self) -> HistogramReading {
        self.histogram(|s| &s.total)
    }

    /// Time to establish a new upstream connection.
    pub(crate) fn connect(&self) -> HistogramReading {
        self.histogram(|s| &s.connect)
    }

    fn sample(&self, at: Instant) -> Sample {
        let mut s = Sample::zero(at);
        s.requests = self.requests();
        for l in 0..self.listener_slots() {
            for (a, b) in s.classes.iter_mut().zip(self.classes(l)) {
                *a += b;
            }
            for (a, b) in s.errors.iter_mut().zip(self.errors(l)) {
                *a += b;
            }
        }
        (s.bytes_in, s.bytes_out) = self.bytes();
        s.headers = self.headers().counts;
        s.total = self.total().counts;
        s
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        // A panic while holding the lock leaves whole samples behind: still usable.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the counters as of now as the newest per-second sample.
    pub(crate) fn tick(&self, now: Instant) {
        let sample = self.sample(now);
        let mut ring = self.ring();
        if ring.len() >= self.ring_len {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// The cumulative counters as of now, from which control computes figures over any span
    /// ([`Reading::since`]).
    pub fn reading(&self) -> Reading {
        let s = self.sample(Instant::now());
        let mut proxy_errors = BTreeMap::new();
        for (i, cause) in Cause::ALL.iter().enumerate() {
            if s.errors[i] > 0 {
                proxy_errors.insert(cause.label().to_owned(), s.errors[i]);
            }
        }
        Reading {
            requests: s.requests,
            responses: [
                s.classes[0] + s.classes[1],
                s.classes[2],
                s.classes[3],
                s.classes[4],
            ],
            proxy_errors,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            bounds_us: &BOUNDS_US,
            headers: s.headers.to_vec(),
            latency: s.total.to_vec(),
        }
    }

    /// Figures over `window`: the counters now minus the sample `window` ticks ago (or the
    /// oldest one while the stack is younger than the window).
    pub fn figures(&self, window: Window, now: Instant) -> Figures {
        let base = {
            let ring = self.ring();
            let w = usize::try_from(window.seconds()).unwrap_or(usize::MAX);
            let i = ring.len().saturating_sub(1).saturating_sub(w);
            ring[i].clone()
        };
        let cur = self.sample(now);
        let seconds = now.saturating_duration_since(base.at).as_secs_f64();
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let classes: [u64; CLASSES] = std::array::from_fn(|i| d(cur.classes[i], base.classes[i]));
        let responses = [classes[0] + classes[1], classes[2], classes[3], classes[4]];
        let mut proxy_errors = BTreeMap::new();
        let mut errors = 0;
        for (i, cause) in Cause::ALL.iter().enumerate() {
            let n = d(cur.errors[i], base.errors[i]);
            if n > 0 {
                proxy_errors.insert(cause.label().to_owned(), n);
                errors += n;
            }
        }
        let completed = responses.iter().sum::<u64>() + errors;
        let requests = d(cur.requests, base.requests);
        let headers: [u64; LATENCY_BUCKETS] =
            std::array::from_fn(|i| d(cur.headers[i], base.headers[i]));
        let total: [u64; LATENCY_BUCKETS] = std::array::from_fn(|i| d(cur.total[i], base.total[i]));
        Figures {
            seconds,
            requests,
            responses,
            proxy_errors,
            bytes_in: d(cur.bytes_in, base.bytes_in),
            bytes_out: d(cur.bytes_out, base.bytes_out),
            request_rate: if seconds > 0.0 {
                requests as f64 / seconds
            } else {
                0.0
            },
            error_rate: if completed > 0 {
                (responses[3] + errors) as f64 / completed as f64
            } else {
                0.0
            },
            headers_latency: quantiles(&headers),
            latency: quantiles(&total),
        }
    }
}

/// The end of a proxied response: when dropped (the body ended, failed or was abandoned), it
/// records the total latency and the response bytes counted on the way.
#[derive(Debug)]
pub(crate) struct Done {
    stats: Arc<StackStats>,
    /// The endpoint's figures (its total latency; bytes are the stack's).
    endpoint: Arc<StackStats>,
    start: Instant,
    bytes: u64,
}

impl Done {
    pub(crate) fn new(stats: Arc<StackStats>, endpoint: Arc<StackStats>, start: Instant) -> Self {
        Self {
            stats,
            endpoint,
            start,
            bytes: 0,
        }
    }

    /// Response body bytes passed to the client.
    #[inline]
    pub(crate) fn add(&mut self, n: usize) {
        self.bytes += n as u64;
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        let elapsed = self.start.elapsed();
        self.stats.record_done(elapsed, self.bytes);
        self.endpoint.record_done(elapsed, 0);
    }
}

/// p50/p90/p99 of a bucketed latency, interpolated linearly inside the bucket holding the rank;
/// the overflow bucket reports its lower bound (10 s).
pub(crate) fn quantiles(buckets: &[u64; LATENCY_BUCKETS]) -> Quantiles {
    switchyard_config::quantiles(&BOUNDS_US, buckets)
}

#[cfg(test)]
mod tests;
