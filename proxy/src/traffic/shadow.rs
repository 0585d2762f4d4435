//! Counters of a service's shadow copies (see `crate::shadow`): copies sent, copies dropped by
//! reason, and the places among the copies in flight that bound them. Like [`super::StackStats`]
//! they are relaxed atomics carried across snapshots; the copies' own answers are counted in
//! the shadow stack's [`super::StackStats`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// What happened to the requests a service's shadow setting chose to mirror, carried across
/// snapshots like [`super::StackStats`]. The copies' own answers are counted in the shadow stack's
/// [`super::StackStats`]; these count the copies that never went out.
#[derive(Debug, Default)]
pub struct ShadowCounters {
    /// Copies sent to the shadow stack (the ones whose body arrived whole).
    pub(crate) copies: AtomicU64,
    /// Copies not made because [`SHADOW_IN_FLIGHT`] were already in flight.
    pub(crate) dropped_full: AtomicU64,
    /// Copies not made because the body was larger than `max_body`.
    pub(crate) dropped_too_large: AtomicU64,
    /// Copies given up because the live request's body did not arrive whole (it failed, was
    /// cut short, or the live request ended before reading it).
    pub(crate) dropped_incomplete: AtomicU64,
    /// Copies in flight now (the bounded queue).
    pub(crate) in_flight: AtomicU64,
}

/// The most shadow copies of one service in flight at once; more are dropped and counted.
pub const SHADOW_IN_FLIGHT: u64 = 128;

impl ShadowCounters {
    /// Takes a place among the copies in flight, or counts a drop when all are taken.
    #[inline]
    pub(crate) fn admit(self: &Arc<Self>) -> Option<ShadowSlot> {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed);
        if n >= SHADOW_IN_FLIGHT {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.dropped_full.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(ShadowSlot(self.clone()))
    }

    /// Copies in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Copies sent and dropped so far: `(copies, queue full, body too large, incomplete)`.
    pub fn counts(&self) -> (u64, u64, u64, u64) {
        (
            self.copies.load(Ordering::Relaxed),
            self.dropped_full.load(Ordering::Relaxed),
            self.dropped_too_large.load(Ordering::Relaxed),
            self.dropped_incomplete.load(Ordering::Relaxed),
        )
    }
}

/// A place among a service's shadow copies in flight, given back when dropped.
#[derive(Debug)]
pub(crate) struct ShadowSlot(Arc<ShadowCounters>);

impl ShadowSlot {
    /// The counters this slot belongs to.
    pub(crate) fn counters(&self) -> &ShadowCounters {
        &self.0
    }
}

impl Drop for ShadowSlot {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}
