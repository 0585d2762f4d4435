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
}
