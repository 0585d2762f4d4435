//! Canary analysis: judging the new stack from the proxy's own per-stack figures.
//!
//! Pure, no I/O: [`validate`] turns the request's `analysis` into an [`Analysis`], [`judge`]
//! turns one window's figures of the new stack and of the baseline (the previous stacks over
//! the same span) into a [`Verdict`], and [`tally`] counts verdicts into what the state machine
//! does next (wait, let the step advance, roll back). The driver reads the figures through the
//! `DataPlane` trait and feeds the verdicts to the machine; the record keeps every window so a
//! rollback can be explained afterwards.
//!
//! Too few requests is inconclusive, never a pass: a missing figure never promotes a canary.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use switchyard_config::{Figures, MAX_TIMEOUT, parse_duration_at_most};
use utoipa::ToSchema;

use super::spec::AnalysisSpec;

/// Default window length.
const INTERVAL: Duration = Duration::from_secs(10);
/// Shortest window: readings are exact, but a shorter window judges almost nothing.
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Default completed requests a window needs.
const MIN_REQUESTS: u64 = 50;
/// Windows kept in a record (the oldest are dropped; the counters stay exact).
const KEPT_WINDOWS: usize = 100;

/// What to do after `max_inconclusive` inconclusive windows in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnInconclusive {
    Fail,
    Pass,
}

/// A validated analysis.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Analysis {
    pub(crate) interval: Duration,
    pub(crate) min_requests: u64,
    pub(crate) max_error_rate: Option<f64>,
    pub(crate) max_p99: Option<Duration>,
    pub(crate) max_error_rate_increase: Option<f64>,
    pub(crate) max_p99_ratio: Option<f64>,
    pub(crate) failure_limit: u32,
    pub(crate) max_inconclusive: u32,
    pub(crate) on_inconclusive: OnInconclusive,
    pub(crate) dry_run: bool,
}

/// Checks `spec` (found at `field`); every problem names its field.
pub(crate) fn validate(
    field: &str,
    spec: &AnalysisSpec,
    problems: &mut Vec<String>,
) -> Option<Analysis> {
    let before = problems.len();
    let interval = match spec.interval.as_deref() {
        None => INTERVAL,
        Some(text) => match parse_duration_at_most(text, MAX_TIMEOUT) {
            Ok(d) if d >= MIN_INTERVAL => d,
            Ok(_) => {
                problems.push(format!(
                    "{field}.interval: {text:?} is too short: expected at least 100ms"
                ));
                INTERVAL
            }
            Err(e) => {
                problems.push(format!("{field}.interval: {e}"));
                INTERVAL
            }
        },
    };
    let min_requests = spec.min_requests.unwrap_or(MIN_REQUESTS);
    if min_requests == 0 {
        problems.push(format!(
            "{field}.min_requests: 0 would judge empty windows: expected at least 1"
        ));
    }
    let rate = |name: &str, v: Option<f64>, problems: &mut Vec<String>| {
        if let Some(x) = v {
            if !(0.0..=1.0).contains(&x) {
                problems.push(format!(
                    "{field}.{name}: {x} out of range: expected a share from 0 to 1"
                ));
            }
        }
        v
    };
    let max_error_rate = rate("max_error_rate", spec.max_error_rate, problems);
    let max_p99 = match spec.max_p99.as_deref() {
        None => None,
        Some(text) => match parse_duration_at_most(text, MAX_TIMEOUT) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                problems.push(format!("{field}.max_p99: expected a positive duration"));
                None
            }
            Err(e) => {
                problems.push(format!("{field}.max_p99: {e}"));
                None
            }
        },
    };
    let baseline = spec.baseline.clone().unwrap_or_default();
    let max_error_rate_increase = rate(
        "baseline.max_error_rate_increase",
        baseline.max_error_rate_increase,
        problems,
    );
    let max_p99_ratio = baseline.max_p99_ratio;
    if let Some(r) = max_p99_ratio {
        if !(r.is_finite() && r >= 1.0) {
            problems.push(format!(
                "{field}.baseline.max_p99_ratio: {r} invalid: expected a ratio of at least 1"
            ));
        }
    }
    if max_error_rate.is_none()
        && max_p99.is_none()
        && max_error_rate_increase.is_none()
        && max_p99_ratio.is_none()
    {
        problems.push(format!(
            "{field}: expected at least one bound: max_error_rate, max_p99, baseline.max_error_rate_increase or baseline.max_p99_ratio"
        ));
    }
    let count = |name: &str, v: Option<u32>, default: u32, problems: &mut Vec<String>| {
        let n = v.unwrap_or(default);
        if !(1..=1000).contains(&n) {
            problems.push(format!(
                "{field}.{name}: {n} out of range: expected 1 to 1000"
            ));
        }
        n
    };
    let failure_limit = count("failure_limit", spec.failure_limit, 1, problems);
    let max_inconclusive = count("max_inconclusive", spec.max_inconclusive, 3, problems);
    let on_inconclusive = match spec.on_inconclusive.as_deref() {
        None | Some("fail") => OnInconclusive::Fail,
        Some("pass") => OnInconclusive::Pass,
        Some(other) => {
            problems.push(format!(
                "{field}.on_inconclusive: {other:?} invalid: expected \"fail\" or \"pass\""
            ));
            OnInconclusive::Fail
        }
    };
    (problems.len() == before).then_some(Analysis {
        interval,
        min_requests,
        max_error_rate,
        max_p99,
        max_error_rate_increase,
        max_p99_ratio,
        failure_limit,
        max_inconclusive,
        on_inconclusive,
        dry_run: spec.dry_run,
    })
}

/// The judgement of one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every bound held; what was seen.
    Pass(String),
    /// A bound was crossed; the figures and the bounds.
    Fail(String),
    /// Not enough data to judge; why.
    Inconclusive(String),
}

impl Verdict {
    /// `pass`, `fail` or `inconclusive`.
    pub(crate) fn as_str(&self) -> &'static str {
        match self {
            Self::Pass(_) => "pass",
            Self::Fail(_) => "fail",
            Self::Inconclusive(_) => "inconclusive",
        }
    }

    /// What was seen, with the bounds.
    pub(crate) fn detail(&self) -> &str {
        match self {
            Self::Pass(d) | Self::Fail(d) | Self::Inconclusive(d) => d,
        }
    }
}

/// Judges the new stack's figures over one window against `spec`'s bounds and against the
/// baseline's figures over the same window. The baseline is compared only when it completed
/// `min_requests` itself; without it (a new stack at 100 %, or idle previous stacks) only the
/// absolute bounds judge, and with none of those the window is inconclusive.
pub(crate) fn judge(window: &Figures, baseline: &Figures, spec: &Analysis) -> Verdict {
    let n = window.completed();
    let over = format!("over {n} requests in {}", seconds(window.seconds));
    if n < spec.min_requests {
        return Verdict::Inconclusive(format!(
            "too few requests: {n} < {} in {}",
            spec.min_requests,
            seconds(window.seconds)
        ));
    }
    let p99 = window.latency.p99;
    let mut failed = Vec::new();
    let mut held = Vec::new();
    if let Some(max) = spec.max_error_rate {
        if window.error_rate > max {
            failed.push(format!(
                "error rate {} > {}",
                rate(window.error_rate),
                rate(max)
            ));
        } else {
            held.push(format!(
                "error rate {} <= {}",
                rate(window.error_rate),
                rate(max)
            ));
        }
    }
    if let Some(max) = spec.max_p99 {
        match p99 {
            None => {
                return Verdict::Inconclusive(format!("no latency measured {over}"));
            }
            Some(p) if p > max.as_secs_f64() => {
                failed.push(format!(
                    "p99 {} > {}",
                    latency(p),
                    latency(max.as_secs_f64())
                ));
            }
            Some(p) => held.push(format!(
                "p99 {} <= {}",
                latency(p),
                latency(max.as_secs_f64())
            )),
        }
    }
    let relative = spec.max_error_rate_increase.is_some() || spec.max_p99_ratio.is_some();
    let base_n = baseline.completed();
    if relative && base_n >= spec.min_requests {
        if let Some(max) = spec.max_error_rate_increase {
            let increase = window.error_rate - baseline.error_rate;
            let text = format!(
                "error rate {} vs baseline {} (+{})",
                rate(window.error_rate),
                rate(baseline.error_rate),
                rate(increase.max(0.0))
            );
            if increase > max {
                failed.push(format!("{text} > +{}", rate(max)));
            } else {
                held.push(format!("{text} <= +{}", rate(max)));
            }
        }
        if let (Some(max), Some(p), Some(b)) = (spec.max_p99_ratio, p99, baseline.latency.p99) {
            let ratio = if b > 0.0 { p / b } else { 1.0 };
            let text = format!(
                "p99 {} vs baseline {} ({ratio:.2}x)",
                latency(p),
                latency(b)
            );
            if ratio > max {
                failed.push(format!("{text} > {max}x"));
            } else {
                held.push(format!("{text} <= {max}x"));
            }
        }
    } else if relative && held.is_empty() && failed.is_empty() {
        return Verdict::Inconclusive(format!(
            "baseline has too few requests: {base_n} < {} in {}",
            spec.min_requests,
            seconds(window.seconds)
        ));
    } else if relative {
        held.push(format!("baseline not compared ({base_n} requests)"));
    }
    if !failed.is_empty() {
        return Verdict::Fail(format!("{} {over}", failed.join(", ")));
    }
    Verdict::Pass(format!("{} {over}", held.join(", ")))
}

/// A share with up to four decimals: `0.31`, `0.0125`, `0`.
fn rate(x: f64) -> String {
    let s = format!("{x:.4}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// A window length: `10s`, `1.5s`.
fn seconds(s: f64) -> String {
    if (s - s.round()).abs() < 0.05 {
        format!("{}s", s.round())
    } else {
        format!("{s:.1}s")
    }
}

/// A latency: `12ms`, `4.5ms`, `1.25s`.
fn latency(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2}s")
    } else if s >= 0.01 {
        format!("{:.0}ms", s * 1000.0)
    } else {
        format!("{:.1}ms", s * 1000.0)
    }
}

/// The figures of one stack (or of the baseline) in a window, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowFigures {
    /// Requests that completed in the window.
    pub requests: u64,
    /// Of those, 5xx answers and proxy errors.
    pub errors: u64,
    /// `errors / requests` (0 without requests).
    pub error_rate: f64,
    /// p99 of the time until the response ended, in seconds; `null` without requests.
    pub p99: Option<f64>,
}

impl WindowFigures {
    /// The recorded part of `f`.
    pub(crate) fn of(f: &Figures) -> Self {
        Self {
            requests: f.completed(),
            errors: f.responses[3] + f.proxy_error_total(),
            error_rate: f.error_rate,
            p99: f.latency.p99,
        }
    }
}

/// One judged window, as kept in the deployment record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AnalysisWindow {
    /// When the window ended (RFC 3339, UTC).
    pub at: String,
    /// Where the deployment was: `shadow`, or the step as `2/4`.
    pub step: String,
    /// Seconds the window covered.
    pub seconds: f64,
    /// The new stack's figures.
    pub new: WindowFigures,
    /// The previous stacks' figures over the same window.
    pub baseline: WindowFigures,
    /// `pass`, `fail` or `inconclusive`.
    pub verdict: String,
    /// The figures against the bounds, e.g. `error rate 0.31 > 0.01 over 412 requests in 10s`.
    pub detail: String,
}

/// The analysis part of a deployment record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisRecord {
    /// The latest windows, oldest first.
    #[serde(default)]
    pub windows: Vec<AnalysisWindow>,
    /// Windows judged in all.
    #[serde(default)]
    pub judged: u64,
    /// Failing windows in all (inconclusive runs resolved as `fail` count as one).
    #[serde(default)]
    pub failures: u32,
    /// Inconclusive windows in a row.
    #[serde(default)]
    pub inconclusive: u32,
    /// Whether a window passed at the current step.
    #[serde(default)]
    pub passed: bool,
}

impl AnalysisRecord {
    /// Whether nothing was judged yet (the record then omits the field).
    pub fn is_empty(&self) -> bool {
        self.judged == 0 && !self.passed
    }
}

/// What a judged window means for the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing changes: keep judging.
    Wait,
    /// The step may advance (once its pause is over).
    Pass,
    /// Roll back, for this reason.
    RollBack(String),
}

/// Counts `window`, judged `verdict`, into `rec` and says what follows. In a dry run nothing
/// ever rolls back (a pass is still reported, but nothing waits for it).
pub(crate) fn tally(
    rec: &mut AnalysisRecord,
    spec: &Analysis,
    mut window: AnalysisWindow,
    verdict: &Verdict,
) -> Outcome {
    window.verdict = verdict.as_str().to_owned();
    window.detail = verdict.detail().to_owned();
    let step = window.step.clone();
    rec.windows.push(window);
    if rec.windows.len() > KEPT_WINDOWS {
        let excess = rec.windows.len() - KEPT_WINDOWS;
        rec.windows.drain(..excess);
    }
    rec.judged += 1;
    let fail = |rec: &mut AnalysisRecord, reason: String| {
        rec.failures += 1;
        if !spec.dry_run && rec.failures >= spec.failure_limit {
            Outcome::RollBack(reason)
        } else {
            Outcome::Wait
        }
    };
    match verdict {
        Verdict::Pass(_) => {
            rec.inconclusive = 0;
            rec.passed = true;
            Outcome::Pass
        }
        Verdict::Fail(detail) => {
            rec.inconclusive = 0;
            fail(rec, format!("analysis failed at {step}: {detail}"))
        }
        Verdict::Inconclusive(detail) => {
            rec.inconclusive += 1;
            if rec.inconclusive < spec.max_inconclusive {
                return Outcome::Wait;
            }
            let n = std::mem::take(&mut rec.inconclusive);
            match spec.on_inconclusive {
                OnInconclusive::Pass => {
                    rec.passed = true;
                    Outcome::Pass
                }
                OnInconclusive::Fail => fail(
                    rec,
                    format!("analysis inconclusive at {step} for {n} windows in a row: {detail}"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests;
