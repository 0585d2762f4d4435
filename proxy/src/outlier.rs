//! Passive health (outlier detection) and the per-stack policy the request path reads.
//!
//! Real traffic feeds it: `consecutive_failures` connect failures, timeouts or 5xx responses in a
//! row eject an endpoint for `base_ejection` × the number of ejections in a row (at most
//! `max_ejection`), unless that would put more than `max_ejection_percent` of the stack's
//! endpoints out at once. An ejected endpoint returns when its deadline has passed: the request
//! path checks the deadline (one atomic load and a clock read, only for ejected endpoints) when
//! it considers the endpoint, and so do the health checker and the status view. When it returns
//! it goes back to what its active health check says, if it has one.
//!
//! Everything here is atomics: no lock, no allocation, no task. Ejecting is a compare-and-swap
//! on the stack's ejected count (the cap) and one on the endpoint's health, so concurrent
//! failures eject an endpoint once and never exceed the cap.

use crate::endpoint::{EndpointState, Health};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use switchyard_config::OutlierSpec;
use tracing::{info, warn};

/// Per-stack settings and counts shared by the stack's endpoints, carried across snapshots and
/// updated in place by each build.
#[derive(Debug, Default)]
pub(crate) struct StackPolicy {
    /// Consecutive failures that eject; 0 turns ejection off.
    threshold: AtomicU32,
    base_ms: AtomicU64,
    max_ms: AtomicU64,
    max_percent: AtomicU32,
    /// Slow-start window; 0 turns it off.
    slow_start_ms: AtomicU64,
    /// Distinct endpoints of the stack in the newest snapshot.
    endpoints: AtomicU32,
    /// Endpoints of the stack ejected now.
    ejected: AtomicU32,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl StackPolicy {
    /// Takes the settings of the newest configuration and the stack's endpoint count.
    pub(crate) fn update(&self, o: &OutlierSpec, slow_start: Option<Duration>, endpoints: usize) {
        let threshold = if o.enabled { o.consecutive_failures } else { 0 };
        self.threshold.store(threshold, Ordering::Relaxed);
        self.base_ms
            .store(millis(o.base_ejection), Ordering::Relaxed);
        self.max_ms.store(millis(o.max_ejection), Ordering::Relaxed);
        self.max_percent
            .store(o.max_ejection_percent, Ordering::Relaxed);
        self.slow_start_ms
            .store(slow_start.map_or(0, millis), Ordering::Relaxed);
        self.endpoints.store(
            u32::try_from(endpoints).unwrap_or(u32::MAX),
            Ordering::Relaxed,
        );
    }

    /// Consecutive failures that eject; 0 when ejection is off.
    #[inline]
    pub(crate) fn threshold(&self) -> u32 {
        self.threshold.load(Ordering::Relaxed)
    }

    /// Slow-start window in milliseconds; 0 when off.
    #[inline]
    pub(crate) fn slow_start_ms(&self) -> u64 {
        self.slow_start_ms.load(Ordering::Relaxed)
    }

    /// Endpoints of the stack ejected now.
    pub(crate) fn ejected(&self) -> u32 {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Reserves one ejection under the cap.
    fn reserve(&self) -> bool {
        let n = u64::from(self.endpoints.load(Ordering::Relaxed));
        let cap = n * u64::from(self.max_percent.load(Ordering::Relaxed)) / 100;
        let mut cur = self.ejected.load(Ordering::Relaxed);
        loop {
            if u64::from(cur) >= cap {
                return false;
            }
            match self.ejected.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    /// Gives back one ejection (the endpoint returned, was overruled or went away).
    pub(crate) fn release(&self) {
        // Saturating: a count never goes below zero even if a release races a rebuild.
        let _ = self
            .ejected
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1));
    }
}

/// Ejection state of one endpoint.
#[derive(Debug, Default)]
pub(crate) struct Outlier {
    /// Deadline of the current ejection, in the endpoint's clock (see `EndpointState::now_ms`).
    until_ms: AtomicU64,
    /// Ejections in a row (the multiplier of the next ejection time).
    streak: AtomicU32,
    /// Ejections since the endpoint appeared.
    total: AtomicU64,
    /// When the endpoint last returned, in the endpoint's clock; 0 never.
    returned_ms: AtomicU64,
}

impl Outlier {
    /// Ejections since the endpoint appeared.
    pub(crate) fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Time left in the current ejection at `now_ms`.
    pub(crate) fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.until_ms.load(Ordering::Relaxed).saturating_sub(now_ms)
    }
}

/// Called on the request path after the `failures`-th failure in a row of a healthy endpoint.
#[cold]
pub(crate) fn try_eject(ep: &EndpointState, failures: u32) {
    let policy = ep.policy();
    if ep.health() != Health::Healthy || !policy.reserve() {
        return;
    }
    let o = &ep.outlier;
    let now = ep.now_ms();
    let max = policy.max_ms.load(Ordering::Relaxed);
    let returned = o.returned_ms.load(Ordering::Relaxed);
    // A streak ends once the endpoint has stayed in for the longest ejection time.
    let streak = if returned != 0 && now.saturating_sub(returned) > max {
        1
    } else {
        o.streak.load(Ordering::Relaxed).saturating_add(1)
    };
    let time = policy
        .base_ms
        .load(Ordering::Relaxed)
        .saturating_mul(u64::from(streak))
        .min(max);
    // The deadline is written before the endpoint is marked ejected, so a reader that sees
    // `Ejected` never sees an older, already passed deadline.
    // Validation bounds ejections to a day, but the sum must not wrap (or panic in a debug
    // build) whatever the policy holds.
    o.until_ms
        .store(now.saturating_add(time), Ordering::Release);
    if !ep.swap_health(Health::Healthy, Health::Ejected) {
        policy.release();
        return;
    }
    o.streak.store(streak, Ordering::Relaxed);
    o.total.fetch_add(1, Ordering::Relaxed);
    let k = ep.key();
    warn!(
        service = %k.service, stack = %k.stack, endpoint = %k.endpoint, failures,
        ejection_ms = time, "endpoint ejected"
    );
}

/// Returns an ejected endpoint whose time is up; true when it is healthy afterwards.
#[cold]
pub(crate) fn try_return(ep: &EndpointState) -> bool {
    let o = &ep.outlier;
    let now = ep.now_ms();
    if now < o.until_ms.load(Ordering::Acquire) {
        return false;
    }
    let to = if ep.check.verdict() == Some(false) {
        Health::Unhealthy
    } else {
        Health::Healthy
    };
    if ep.swap_health(Health::Ejected, to) {
        ep.policy().release();
        ep.reset_failures();
        o.returned_ms.store(now, Ordering::Relaxed);
        if to == Health::Healthy {
            ep.start_ramp();
        }
        let k = ep.key();
        info!(service = %k.service, stack = %k.stack, endpoint = %k.endpoint, health = to.as_str(), "endpoint returned from ejection");
    }
    ep.health() == Health::Healthy
}

#[cfg(test)]
mod tests;
