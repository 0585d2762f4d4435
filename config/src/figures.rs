//! Per-stack traffic figures as the data plane reports them and the control plane reads them
//! (the API, the dashboard and canary analysis): one shared vocabulary, computed by the proxy
//! from its request-path atomics over a sliding [`Window`].

use std::collections::BTreeMap;

/// A sliding window over which figures are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Window {
    /// The last 10 seconds.
    #[serde(rename = "10s")]
    Last10s,
    /// The last minute.
    #[serde(rename = "1m")]
    Last1m,
    /// The last 5 minutes.
    #[serde(rename = "5m")]
    Last5m,
}

impl Window {
    /// Every window, shortest first.
    pub const ALL: [Window; 3] = [Window::Last10s, Window::Last1m, Window::Last5m];

    /// Length in seconds.
    pub fn seconds(self) -> u64 {
        match self {
            Self::Last10s => 10,
            Self::Last1m => 60,
            Self::Last5m => 300,
        }
    }

    /// The spelling used by the API: `10s`, `1m`, `5m`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Last10s => "10s",
            Self::Last1m => "1m",
            Self::Last5m => "5m",
        }
    }

    /// Parses `10s`, `1m` or `5m`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.as_str() == s)
    }
}

/// p50, p90 and p99 of a latency, in seconds; `None` when no request completed in the window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: Option<f64>,
    /// 90th percentile.
    pub p90: Option<f64>,
    /// 99th percentile.
    pub p99: Option<f64>,
}

/// Traffic of one stack over a window.
///
/// Counts are exact: they are differences of the proxy's cumulative counters taken at whole-second
/// ticks, so `seconds` (the span actually covered) is between the window's length and one second
/// more, or less while the stack is younger than the window. Latency quantiles are interpolated
/// inside fixed log-scale buckets (about 25 % wide), so they are estimates at that resolution.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    /// Seconds the figures cover.
    pub seconds: f64,
    /// Requests routed to the stack (including those still in flight).
    pub requests: u64,
    /// Endpoint responses by class: `[2xx, 3xx, 4xx, 5xx]` (1xx are counted with 2xx).
    pub responses: [u64; 4],
    /// Errors the proxy generated for the stack (no usable answer from an endpoint), by cause
    /// label as in `x-switchyard-error`.
    pub proxy_errors: BTreeMap<String, u64>,
    /// Request body bytes sent to the stack.
    pub bytes_in: u64,
    /// Response body bytes received from the stack.
    pub bytes_out: u64,
    /// Requests per second.
    pub request_rate: f64,
    /// Share of completed requests that failed: (5xx responses + proxy errors) / (responses +
    /// proxy errors); 0 when none completed.
    pub error_rate: f64,
    /// Time until the response headers arrived.
    pub headers_latency: Quantiles,
    /// Time until the response body ended.
    pub latency: Quantiles,
}

impl Figures {
    /// Requests that ended with an endpoint response or a proxy error.
    pub fn completed(&self) -> u64 {
        self.responses.iter().sum::<u64>() + self.proxy_error_total()
    }

    /// Proxy errors of every cause.
    pub fn proxy_error_total(&self) -> u64 {
        self.proxy_errors.values().sum()
    }
}

/// A stack's cumulative counters at one moment, since the stack appeared: what
/// [`Reading::since`] turns into [`Figures`] over any span, exact to the request (canary analysis
/// reads one at the start and one at the end of each of its intervals).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reading {
    /// Requests routed to the stack.
    pub requests: u64,
    /// Endpoint responses by class: `[2xx, 3xx, 4xx, 5xx]` (1xx are counted with 2xx).
    pub responses: [u64; 4],
    /// Proxy errors by cause label.
    pub proxy_errors: BTreeMap<String, u64>,
    /// Request body bytes sent to the stack.
    pub bytes_in: u64,
    /// Response body bytes received from the stack.
    pub bytes_out: u64,
    /// Upper bounds (microseconds) of the latency buckets; one more bucket counts the rest.
    pub bounds_us: &'static [u64],
    /// Time until the response headers, per bucket.
    pub headers: Vec<u64>,
    /// Time until the response body ended, per bucket.
    pub latency: Vec<u64>,
}

impl Reading {
    /// The figures of what happened between `earlier` and `self`, `seconds` apart. Counters
    /// that went backwards (a stack recreated under the same name) count as zero.
    pub fn since(&self, earlier: &Reading, seconds: f64) -> Figures {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let responses: [u64; 4] =
            std::array::from_fn(|i| d(self.responses[i], earlier.responses[i]));
        let mut proxy_errors = BTreeMap::new();
        for (cause, n) in &self.proxy_errors {
            let n = d(*n, earlier.proxy_errors.get(cause).copied().unwrap_or(0));
            if n > 0 {
                proxy_errors.insert(cause.clone(), n);
            }
        }
        let errors: u64 = proxy_errors.values().sum();
        let completed = responses.iter().sum::<u64>() + errors;
        let requests = d(self.requests, earlier.requests);
        let buckets = |now: &[u64], then: &[u64]| -> Vec<u64> {
            now.iter()
                .enumerate()
                .map(|(i, n)| d(*n, then.get(i).copied().unwrap_or(0)))
                .collect()
        };
        Figures {
            seconds,
            requests,
            responses,
            proxy_errors,
            bytes_in: d(self.bytes_in, earlier.bytes_in),
            bytes_out: d(self.bytes_out, earlier.bytes_out),
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
            headers_latency: quantiles(self.bounds_us, &buckets(&self.headers, &earlier.headers)),
            latency: quantiles(self.bounds_us, &buckets(&self.latency, &earlier.latency)),
        }
    }

    /// The sum of two readings (several stacks judged as one baseline); the bucket bounds of
    /// `self` are kept.
    pub fn plus(&self, other: &Reading) -> Reading {
        let add = |a: &[u64], b: &[u64]| -> Vec<u64> {
            (0..a.len().max(b.len()))
                .map(|i| a.get(i).copied().unwrap_or(0) + b.get(i).copied().unwrap_or(0))
                .collect()
        };
        let mut proxy_errors = self.proxy_errors.clone();
        for (cause, n) in &other.proxy_errors {
            *proxy_errors.entry(cause.clone()).or_default() += n;
        }
        Reading {
            requests: self.requests + other.requests,
            responses: std::array::from_fn(|i| self.responses[i] + other.responses[i]),
            proxy_errors,
            bytes_in: self.bytes_in + other.bytes_in,
            bytes_out: self.bytes_out + other.bytes_out,
            bounds_us: if self.bounds_us.is_empty() {
                other.bounds_us
            } else {
                self.bounds_us
            },
            headers: add(&self.headers, &other.headers),
            latency: add(&self.latency, &other.latency),
        }
    }
}

/// p50/p90/p99 of a bucketed latency (`buckets[i]` counts values up to `bounds_us[i]`, the last
/// bucket the rest), interpolated linearly inside the bucket holding the rank; the overflow
/// bucket reports its lower bound.
pub fn quantiles(bounds_us: &[u64], buckets: &[u64]) -> Quantiles {
    let n: u64 = buckets.iter().sum();
    let q = |p: f64| -> Option<f64> {
        if n == 0 {
            return None;
        }
        let rank = (p * n as f64).ceil().max(1.0);
        let mut seen = 0u64;
        for (i, &c) in buckets.iter().enumerate() {
            if c == 0 {
                continue;
            }
            if (seen + c) as f64 >= rank {
                let lo = if i == 0 { 0 } else { bounds_us[i - 1] } as f64;
                let Some(&hi) = bounds_us.get(i) else {
                    return Some(lo / 1e6);
                };
                let frac = (rank - seen as f64) / c as f64;
                return Some((lo + (hi as f64 - lo) * frac) / 1e6);
            }
            seen += c;
        }
        None
    };
    Quantiles {
        p50: q(0.50),
        p90: q(0.90),
        p99: q(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_round_trip_their_spelling() {
        for w in Window::ALL {
            assert_eq!(Window::parse(w.as_str()), Some(w));
        }
        assert_eq!(Window::parse("2m"), None);
        assert_eq!(Window::Last5m.seconds(), 300);
    }

    #[test]
    fn completed_counts_responses_and_proxy_errors() {
        let f = Figures {
            responses: [3, 1, 0, 2],
            proxy_errors: [("connect-failed".to_owned(), 4)].into_iter().collect(),
            ..Figures::default()
        };
        assert_eq!(f.completed(), 10);
        assert_eq!(f.proxy_error_total(), 4);
    }

    #[test]
    fn a_reading_since_an_earlier_one_counts_only_what_happened_between() {
        const BOUNDS: [u64; 2] = [1_000, 10_000];
        let earlier = Reading {
            requests: 10,
            responses: [8, 0, 0, 2],
            proxy_errors: [("timeout".to_owned(), 1)].into_iter().collect(),
            bounds_us: &BOUNDS,
            headers: vec![5, 5, 0],
            latency: vec![5, 5, 0],
            ..Reading::default()
        };
        let now = Reading {
            requests: 20,
            responses: [14, 0, 0, 5],
            proxy_errors: [("timeout".to_owned(), 2)].into_iter().collect(),
            bounds_us: &BOUNDS,
            headers: vec![5, 15, 0],
            latency: vec![5, 5, 10],
            ..Reading::default()
        };
        let f = now.since(&earlier, 2.0);
        assert_eq!(f.requests, 10);
        assert_eq!(f.responses, [6, 0, 0, 3]);
        assert_eq!(f.completed(), 10);
        assert!((f.error_rate - 0.4).abs() < 1e-9);
        assert!((f.request_rate - 5.0).abs() < 1e-9);
        // Every headers latency of the span is in the 1–10 ms bucket, every total one past it.
        let p99 = f.headers_latency.p99.expect("p99");
        assert!((0.001..=0.01).contains(&p99), "{p99}");
        assert_eq!(f.latency.p99, Some(0.01));
        let both = now.plus(&earlier);
        assert_eq!(both.requests, 30);
        assert_eq!(both.proxy_errors["timeout"], 3);
        assert_eq!(both.latency, vec![10, 10, 10]);
    }
}
