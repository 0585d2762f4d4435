//! Stack and endpoint selection, lock-free.
//!
//! A service's weights become a precomputed smooth weighted round-robin [`Schedule`] (the
//! sequence nginx's smooth WRR produces, e.g. 90/10 gives nine `blue` and one `green`
//! interleaved per ten slots). All worker threads share one atomic cursor, so any run of
//! consecutive requests follows the weights within one request per stack. Inside a stack, an
//! endpoint is chosen round-robin or by power of two choices on in-flight counts, skipping
//! endpoints that are not available.
//!
//! Sticky requests do not take the cursor: their key picks a stack by weighted rendezvous
//! hashing ([`sticky_pick`]). Every stack of non-zero weight scores the key with
//! `-ln(u(key, stack)) / weight`, `u` a fixed hash of the key and the stack's name mapped into
//! (0, 1), and the lowest score wins. A stack wins a key with probability weight / total, and the
//! choice is monotone: raising a stack's weight lowers only its own scores, so keys only move
//! onto it; lowering it only moves keys off it; and the same weights give the same choice, so a
//! rollback puts every key back. The hash has no per-process seed, so every instance and every
//! restart agree.
//!
//! Slow start: an endpoint ramping up after becoming healthy is passed over with probability
//! 1 − elapsed/window (`EndpointState::admits`), its turn going to the next endpoint. When every
//! available endpoint of the stack passes, the first available one is taken anyway, so slow
//! start only shifts traffic inside a stack and stack weights stay exact.

use crate::endpoint::EndpointState;
use crate::snapshot::{ServiceRoute, StackRoute};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use switchyard_config::LoadBalancing;

/// Slots beyond which weights are scaled down (keeps a schedule under 128 KiB).
const MAX_SLOTS: u64 = 65_536;

/// A precomputed interleaved sequence of stack indices.
#[derive(Debug)]
pub struct Schedule {
    slots: Box<[u16]>,
    cursor: AtomicUsize,
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

impl Schedule {
    /// Builds the schedule for `weights` (one per stack); `None` when every weight is zero.
    pub fn new(weights: &[u32]) -> Option<Self> {
        let g = weights.iter().fold(0u64, |g, &w| gcd(g, u64::from(w)));
        if g == 0 {
            return None;
        }
        let mut w: Vec<u64> = weights.iter().map(|&x| u64::from(x) / g).collect();
        let mut total: u64 = w.iter().sum();
        if total > MAX_SLOTS {
            // Keep the proportions; a non-zero weight keeps at least one slot.
            for x in &mut w {
                if *x > 0 {
                    *x = (*x * MAX_SLOTS / total).max(1);
                }
            }
            total = w.iter().sum();
        }
        let mut current = vec![0i64; w.len()];
        let mut slots = Vec::with_capacity(total as usize);
        for _ in 0..total {
            let mut best = 0;
            for i in 0..w.len() {
                current[i] += w[i] as i64;
                if current[i] > current[best] {
                    best = i;
                }
            }
            current[best] -= total as i64;
            slots.push(best as u16);
        }
        Some(Self {
            slots: slots.into_boxed_slice(),
            cursor: AtomicUsize::new(0),
        })
    }

    /// Number of slots in one period.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Always false: an empty schedule is never built.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The next slot position (shared by all threads).
    #[inline]
    pub fn next_position(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed)
    }

    /// The stack index at `position` (any integer; wraps).
    #[inline]
    pub fn stack_at(&self, position: usize) -> usize {
        usize::from(self.slots[position % self.slots.len()])
    }
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        // Seed per thread from the address of a local plus the time: good enough for P2C.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let local = 0u8;
        (t ^ (&local as *const u8 as u64)) | 1
    });
}

/// A fast thread-local xorshift random number.
#[inline]
pub(crate) fn fast_random() -> u64 {
    RNG.with(|c| {
        let mut x = c.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        c.set(x);
        x
    })
}

/// FNV-1a followed by a 64-bit finalizer: a fixed hash (no per-process seed, so stable across
/// processes and restarts) whose every output bit depends on every input bit.
#[inline]
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The splitmix64 / murmur3 finalizer: a bijection with full avalanche.
#[inline]
fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// The rendezvous score of a sticky key (its [`stable_hash`]) on a stack (`seed`, the
/// [`stable_hash`] of its name) of `weight` > 0: `-ln(u) / weight` with `u` uniform in (0, 1).
/// The lowest score wins; its stack wins with probability `weight / total`.
#[inline]
fn rendezvous_score(key: u64, seed: u64, weight: u32) -> f64 {
    // 53 bits into (0, 1): never 0, so the logarithm is finite.
    let u = ((mix(key ^ seed) >> 11) as f64 + 0.5) * (1.0 / (1u64 << 53) as f64);
    -u.ln() / f64::from(weight)
}

/// Weighted rendezvous hashing: the index of the item with the lowest score for `key` among
/// those `eligible` with a non-zero weight (`seed_weight` gives an item's name hash and weight);
/// `None` when there is none. Allocation-free, one hash mix and one logarithm per item.
#[inline]
pub fn sticky_pick<T>(
    key: u64,
    items: &[T],
    seed_weight: impl Fn(&T) -> (u64, u32),
    eligible: impl Fn(usize, &T) -> bool,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, item) in items.iter().enumerate() {
        let (seed, weight) = seed_weight(item);
        if weight == 0 || !eligible(i, item) {
            continue;
        }
        let score = rendezvous_score(key, seed, weight);
        if best.is_none_or(|(_, b)| score < b) {
            best = Some((i, score));
        }
    }
    best.map(|(i, _)| i)
}

/// An endpoint of `stack` by the service's load-balancing policy; with `ignore_health`, any
/// endpoint round-robin (fail-open).
#[inline]
pub(crate) fn endpoint<'s>(
    svc: &ServiceRoute,
    stack: &'s StackRoute,
    ignore_health: bool,
) -> Option<&'s Arc<EndpointState>> {
    match svc.load_balancing {
        _ if ignore_health => round_robin(&stack.endpoints, &stack.cursor, true),
        LoadBalancing::RoundRobin => round_robin(&stack.endpoints, &stack.cursor, false),
        LoadBalancing::LeastRequest => least_request(&stack.endpoints, &stack.cursor),
    }
}

/// Round-robin over available endpoints, starting at the stack's cursor.
#[inline]
pub(crate) fn round_robin<'a>(
    eps: &'a [Arc<EndpointState>],
    cursor: &AtomicUsize,
    ignore_health: bool,
) -> Option<&'a Arc<EndpointState>> {
    let n = eps.len();
    if n == 0 {
        return None;
    }
    let start = cursor.fetch_add(1, Ordering::Relaxed);
    if ignore_health {
        return eps.get(start % n);
    }
    let mut passed_over = None;
    for i in 0..n {
        let e = &eps[(start + i) % n];
        if e.is_available() {
            if e.admits() {
                return Some(e);
            }
            passed_over = passed_over.or(Some(e));
        }
    }
    passed_over
}

/// An available endpoint other than `failed`, round-robin from the stack's cursor: where a
/// request that never reached `failed` is tried again.
#[inline]
pub(crate) fn other_endpoint<'a>(
    eps: &'a [Arc<EndpointState>],
    cursor: &AtomicUsize,
    failed: &Arc<EndpointState>,
) -> Option<&'a Arc<EndpointState>> {
    let n = eps.len();
    let start = cursor.fetch_add(1, Ordering::Relaxed);
    (0..n)
        .map(|i| &eps[(start + i) % n.max(1)])
        .find(|e| !Arc::ptr_eq(e, failed) && e.is_available())
}

/// Power of two random choices by in-flight requests among available endpoints.
#[inline]
pub(crate) fn least_request<'a>(
    eps: &'a [Arc<EndpointState>],
    cursor: &AtomicUsize,
) -> Option<&'a Arc<EndpointState>> {
    let n = eps.len();
    match n {
        0 => None,
        // A lone endpoint takes every request, ramping or not (stack weights stay exact).
        1 => eps.first().filter(|e| e.is_available()),
        _ => {
            let r = fast_random();
            let a = &eps[(r % n as u64) as usize];
            let b = &eps[((r >> 32) % n as u64) as usize];
            let a_ok = a.is_available() && a.admits();
            let b_ok = b.is_available() && b.admits();
            match (a_ok, b_ok) {
                (true, true) => Some(if b.in_flight() < a.in_flight() { b } else { a }),
                (true, false) => Some(a),
                (false, true) => Some(b),
                (false, false) => round_robin(eps, cursor, false),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(s: &Schedule, from: usize, n: usize, stacks: usize) -> Vec<usize> {
        let mut c = vec![0; stacks];
        for p in from..from + n {
            c[s.stack_at(p)] += 1;
        }
        c
    }

    #[test]
    fn ninety_ten_is_exact_in_every_window_of_a_thousand() {
        let s = Schedule::new(&[90, 10]).expect("non-zero");
        assert_eq!(s.len(), 10);
        for from in 0..50 {
            let c = counts(&s, from, 1000, 2);
            assert!((890..=910).contains(&c[0]), "window at {from}: {c:?}");
        }
        // Interleaved, not nine in a row then one: no two green slots are adjacent and green
        // appears once per period.
        assert_eq!(counts(&s, 0, 10, 2), vec![9, 1]);
    }

    #[test]
    fn odd_weights_keep_proportions() {
        let s = Schedule::new(&[9999, 1]).expect("non-zero");
        assert_eq!(s.len(), 10_000);
        assert_eq!(counts(&s, 0, 10_000, 2), vec![9999, 1]);
        let s = Schedule::new(&[1, 2, 3]).expect("non-zero");
        assert_eq!(counts(&s, 0, 6, 3), vec![1, 2, 3]);
    }

    #[test]
    fn weight_zero_gets_no_slot_and_all_zero_gets_no_schedule() {
        let s = Schedule::new(&[0, 100]).expect("non-zero");
        assert_eq!(counts(&s, 0, 100, 2), vec![0, 100]);
        assert!(Schedule::new(&[0, 0]).is_none());
    }

    /// The stickiness test: 10,000 keys over canary weights 5 → 25 → 50 → 100 on two
    /// stacks. No key ever moves from the canary back to stable, each step's canary share is
    /// within one percentage point of its weight, and going back to 5 puts every key back.
    #[test]
    fn sticky_keys_only_move_onto_a_growing_canary() {
        let stacks = |canary: u32| {
            [
                (stable_hash(b"blue"), 100 - canary),
                (stable_hash(b"green"), canary),
            ]
        };
        let keys: Vec<u64> = (0..10_000)
            .map(|i| stable_hash(format!("user-{i}").as_bytes()))
            .collect();
        let assign = |canary: u32| -> Vec<usize> {
            let s = stacks(canary);
            keys.iter()
                .map(|&k| sticky_pick(k, &s, |&x| x, |_, _| true).expect("a weighted stack"))
                .collect()
        };
        let first = assign(5);
        let mut before = first.clone();
        for canary in [5, 25, 50, 100] {
            let now = assign(canary);
            let share = now.iter().filter(|&&i| i == 1).count() as f64 / keys.len() as f64;
            assert!(
                (share * 100.0 - f64::from(canary)).abs() <= 1.0,
                "canary at {canary}: share {share}"
            );
            let back = before
                .iter()
                .zip(&now)
                .filter(|&(&b, &n)| b == 1 && n == 0)
                .count();
            assert_eq!(back, 0, "{back} keys left the canary at {canary}");
            before = now;
        }
        assert_eq!(assign(5), first, "a rollback puts every key back");
    }

    #[test]
    fn sticky_pick_lowers_only_the_changed_stack_and_skips_ineligible_ones() {
        let names: Vec<u64> = ["a", "b", "c"]
            .iter()
            .map(|n| stable_hash(n.as_bytes()))
            .collect();
        let with = |w: [u32; 3]| -> Vec<(u64, u32)> { names.iter().copied().zip(w).collect() };
        let keys: Vec<u64> = (0..3_000)
            .map(|i: u32| stable_hash(&i.to_le_bytes()))
            .collect();
        let pick = |s: &[(u64, u32)], k| sticky_pick(k, s, |&x| x, |_, _| true);
        let (base, lowered) = (with([40, 30, 30]), with([40, 10, 30]));
        for &k in &keys {
            let (b, l) = (pick(&base, k), pick(&lowered, k));
            // Lowering b only moves keys off b; a and c keep theirs.
            assert!(b == l || b == Some(1), "key {k} moved from {b:?} to {l:?}");
        }
        // A stack passed over (say, no available endpoint) hands its keys to the others by
        // their own scores, and nobody else's key moves.
        for &k in &keys {
            let all = pick(&base, k);
            let without_a = sticky_pick(k, &base, |&x| x, |i, _| i != 0);
            assert!(all == without_a || all == Some(0));
            assert_ne!(without_a, Some(0));
        }
        assert_eq!(pick(&with([0, 0, 0]), 1), None);
        // Fixed: the same key hashes alike in every process, restart and release (a change
        // here would move sticky users on upgrade).
        assert_eq!(stable_hash(b"user-1"), 0x41a2_fca5_c684_01c5);
    }

    #[test]
    fn huge_period_is_scaled_but_keeps_nonzero_stacks() {
        let w: Vec<u32> = (0..20).map(|i| 9_973 - i).collect();
        let s = Schedule::new(&w).expect("non-zero");
        assert!(s.len() as u64 <= MAX_SLOTS + 20);
        let c = counts(&s, 0, s.len(), 20);
        assert!(c.iter().all(|&x| x > 0));
    }
}
