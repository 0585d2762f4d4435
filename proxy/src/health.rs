//! Active health checks: one lightweight task per endpoint whose stack has an active check (the
//! configured `health_check`, or the default TCP connect check when none is configured; none
//! with `kind = "none"`), started and stopped by the snapshot writer as endpoints come and go.
//!
//! A check is one HTTP/1.0 or HTTP/1.1 request (method, path, Host as configured; to a check
//! port when one is set; over TLS with the stack's upstream TLS settings when the endpoint is
//! `https://`), bounded as a whole by the check's `timeout`. An HTTP/1.1 connection is kept
//! and reused while the endpoint keeps it open. Checks run every `interval` ± 10%, the first
//! after a random part of the interval (at most 1s), so endpoints are not checked in lockstep.
//!
//! `unhealthy_threshold` failures in a row make the endpoint's verdict unhealthy and
//! `healthy_threshold` successes in a row make it healthy. A verdict change only
//! compare-and-swaps the endpoint's health atomic (the request path reads it, never waits) and
//! logs, and bumps the proxy's health-change counter (a `watch` that the wiring uses to save
//! health for the next start); an ejected endpoint stays ejected until its time is up and then
//! returns to the verdict.
//! Results and counters live in [`CheckState`] atomics for the status view.

mod probe;

use crate::endpoint::{EndpointKey, EndpointState, Health};
use crate::handle::Shared;
use crate::outlier;
use crate::select::fast_random;
use crate::snapshot::Snapshot;
use probe::{Probe, check};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use switchyard_config::HealthCheckSpec;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

/// What one check gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum CheckOutcome {
    /// The status was in the expected range.
    Passed = 1,
    /// The endpoint answered with a status outside the expected range.
    BadStatus = 2,
    /// No complete answer within the check's timeout.
    Timeout = 3,
    /// The connection (or its TLS handshake) could not be made.
    ConnectFailed = 4,
    /// The connection broke or the answer was not HTTP.
    Error = 5,
}

impl CheckOutcome {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Passed,
            2 => Self::BadStatus,
            3 => Self::Timeout,
            4 => Self::ConnectFailed,
            5 => Self::Error,
            _ => return None,
        })
    }
}

const VERDICT_NONE: u8 = 0;
const VERDICT_HEALTHY: u8 = 1;
const VERDICT_UNHEALTHY: u8 = 2;

/// Active-check results of one endpoint (written by its checker only, read by anyone).
#[derive(Debug, Default)]
pub(crate) struct CheckState {
    verdict: AtomicU8,
    last_unix_ms: AtomicU64,
    last_outcome: AtomicU8,
    last_status: AtomicU16,
    successes: AtomicU32,
    failures: AtomicU32,
    total: AtomicU64,
}

impl CheckState {
    /// The checks' verdict: `Some(true)` healthy, `Some(false)` unhealthy, `None` undecided or
    /// not checked.
    pub(crate) fn verdict(&self) -> Option<bool> {
        match self.verdict.load(Ordering::Acquire) {
            VERDICT_HEALTHY => Some(true),
            VERDICT_UNHEALTHY => Some(false),
            _ => None,
        }
    }

    /// When the last check ended (Unix milliseconds), what it gave and the status it saw.
    pub(crate) fn last(&self) -> Option<(u64, CheckOutcome, Option<u16>)> {
        let at = self.last_unix_ms.load(Ordering::Acquire);
        let outcome = CheckOutcome::from_u8(self.last_outcome.load(Ordering::Relaxed))?;
        let status = self.last_status.load(Ordering::Relaxed);
        (at != 0).then_some((at, outcome, (status != 0).then_some(status)))
    }

    /// Consecutive passed and failed checks (one of them is zero).
    pub(crate) fn streaks(&self) -> (u32, u32) {
        (
            self.successes.load(Ordering::Acquire),
            self.failures.load(Ordering::Acquire),
        )
    }

    /// Checks done since the endpoint appeared.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// Milliseconds since the Unix epoch (a record timestamp).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Applies one check's outcome: counters, verdict and (through a compare-and-swap) health.
/// Health is updated before the counters are published, so whoever sees the n-th failure
/// counted also sees its effect. Returns whether health changed.
fn record(ep: &EndpointState, spec: &HealthCheckSpec, outcome: CheckOutcome, status: u16) -> bool {
    let c = &ep.check;
    let passed = outcome == CheckOutcome::Passed;
    let (successes, failures) = if passed {
        (c.successes.load(Ordering::Relaxed).saturating_add(1), 0)
    } else {
        (0, c.failures.load(Ordering::Relaxed).saturating_add(1))
    };
    if passed && successes >= spec.healthy_threshold {
        c.verdict.store(VERDICT_HEALTHY, Ordering::Release);
    } else if !passed && failures >= spec.unhealthy_threshold {
        c.verdict.store(VERDICT_UNHEALTHY, Ordering::Release);
    }
    let changed = reconcile(ep, outcome, status);
    c.last_outcome.store(outcome as u8, Ordering::Relaxed);
    c.last_status.store(status, Ordering::Relaxed);
    c.last_unix_ms
        .store(unix_ms(SystemTime::now()), Ordering::Release);
    c.successes.store(successes, Ordering::Release);
    c.failures.store(failures, Ordering::Release);
    c.total.fetch_add(1, Ordering::Release);
    changed
}

/// Brings health in line with the verdict. Re-run after every check, so a transition lost to a
/// concurrent ejection or return is repaired one interval later. Returns whether it changed
/// health between healthy and not.
fn reconcile(ep: &EndpointState, outcome: CheckOutcome, status: u16) -> bool {
    let k = ep.key();
    match ep.check.verdict() {
        Some(true) => {
            if ep.health() == Health::Ejected {
                outlier::try_return(ep);
            } else if ep.swap_health(Health::Unknown, Health::Healthy)
                || ep.swap_health(Health::Unhealthy, Health::Healthy)
            {
                ep.start_ramp();
                info!(service = %k.service, stack = %k.stack, endpoint = %k.endpoint, "endpoint healthy");
                return true;
            }
        }
        Some(false) => {
            for from in [Health::Healthy, Health::Unknown, Health::Ejected] {
                if ep.swap_health(from, Health::Unhealthy) {
                    if from == Health::Ejected {
                        ep.policy().release();
                    }
                    warn!(
                        service = %k.service, stack = %k.stack, endpoint = %k.endpoint,
                        outcome = ?outcome, status, "endpoint unhealthy"
                    );
                    return true;
                }
            }
        }
        None => {}
    }
    false
}

/// An endpoint whose stack no longer has a check takes traffic again. Returns whether health
/// changed.
fn forget_checks(ep: &EndpointState) -> bool {
    ep.check.verdict.store(VERDICT_NONE, Ordering::Release);
    let changed = ep.swap_health(Health::Unknown, Health::Healthy)
        || ep.swap_health(Health::Unhealthy, Health::Healthy);
    if changed {
        let k = ep.key();
        info!(service = %k.service, stack = %k.stack, endpoint = %k.endpoint, "endpoint takes traffic (no health check)");
    }
    changed
}

/// `d` scaled by a random factor in [lo, lo + span) per mille.
fn jitter(d: Duration, lo: u64, span: u64) -> Duration {
    let per_mille = lo + fast_random() % span;
    d.saturating_mul(u32::try_from(per_mille).unwrap_or(1000)) / 1000
}

/// The checker of one endpoint.
async fn run(
    ep: Arc<EndpointState>,
    spec: Arc<HealthCheckSpec>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(probe) = Probe::new(&ep, &spec) else {
        warn!("health check cannot be built for this endpoint (method or host header)");
        return;
    };
    let mut kept = None;
    let mut delay = jitter(spec.interval.min(Duration::from_secs(1)), 0, 1000);
    loop {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = crate::handle::stopped(&mut shutdown) => return,
        }
        let work =
            tokio::time::timeout(spec.timeout, check(&ep, &spec, &probe, &shared, &mut kept));
        let (outcome, status) = tokio::select! {
            r = work => r.unwrap_or((CheckOutcome::Timeout, 0)),
            () = crate::handle::stopped(&mut shutdown) => return,
        };
        debug!(outcome = ?outcome, status, "health check");
        if record(&ep, &spec, outcome, status) {
            shared.health_changed();
        }
        delay = jitter(spec.interval, 900, 200);
    }
}

struct Running {
    state: Arc<EndpointState>,
    spec: Arc<HealthCheckSpec>,
    task: JoinHandle<()>,
}

/// The running checkers, owned by the snapshot writer.
#[derive(Default)]
pub(crate) struct Checks {
    running: HashMap<EndpointKey, Running>,
}

impl Checks {
    /// Starts a checker for every endpoint of `snap` with a check and none yet (or with another
    /// check, or another state), and stops the checkers of endpoints that are gone or lost their
    /// check.
    pub(crate) fn sync(
        &mut self,
        snap: &Snapshot,
        shared: &Arc<Shared>,
        shutdown: &watch::Receiver<bool>,
    ) {
        let mut checked = HashSet::new();
        for svc in snap.services() {
            for st in svc.stacks() {
                for ep in st.endpoints() {
                    let Some(spec) = &st.health_check else {
                        if (ep.check.verdict().is_some() || ep.health() == Health::Unknown)
                            && forget_checks(ep)
                        {
                            shared.health_changed();
                        }
                        continue;
                    };
                    let key = ep.key();
                    if !checked.insert(key) {
                        continue;
                    }
                    if let Some(r) = self.running.get(key) {
                        if Arc::ptr_eq(&r.state, ep) && r.spec == *spec && !r.task.is_finished() {
                            continue;
                        }
                        r.task.abort();
                    }
                    let span = info_span!("health-check", service = %key.service, stack = %key.stack, endpoint = %key.endpoint);
                    let task = tokio::spawn(
                        run(ep.clone(), spec.clone(), shared.clone(), shutdown.clone())
                            .instrument(span),
                    );
                    self.running.insert(
                        key.clone(),
                        Running {
                            state: ep.clone(),
                            spec: spec.clone(),
                            task,
                        },
                    );
                }
            }
        }
        self.running.retain(|k, r| {
            let keep = checked.contains(k);
            if !keep {
                r.task.abort();
            }
            keep
        });
    }

    /// Stops every checker and re-raises a checker's panic.
    pub(crate) async fn stop(&mut self) {
        for (_, r) in self.running.drain() {
            r.task.abort();
            if let Err(e) = r.task.await {
                if e.is_panic() {
                    std::panic::resume_unwind(e.into_panic());
                }
            }
        }
    }
}
