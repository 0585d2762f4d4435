//! Counters split by thread. Every thread that serves requests gets a shard of the counters
//! that only it writes: adding is a plain load and store, with no locked instruction (an
//! uncontended atomic add costs about twenty cycles, and a request bumps a score of counters).
//! Readers add the shards up. A thread that comes after every shard is taken adds to the
//! last, shared shard with atomic adds, so counts stay exact whatever the threads.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Most shards owned by a thread each, whatever the machine.
const MAX_OWNED: usize = 16;

/// Shards owned by one thread each: the machine's parallelism (the most worker threads that
/// run at once), at most [`MAX_OWNED`]. The shared shard comes after them.
pub(crate) fn owned() -> usize {
    static OWNED: OnceLock<usize> = OnceLock::new();
    *OWNED.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .clamp(1, MAX_OWNED)
    })
}

/// The next thread's number.
static NEXT: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's number, taken when it first counts; never given to another thread.
    static NUMBER: usize = NEXT.fetch_add(1, Ordering::Relaxed);
}

/// This thread's number.
#[inline]
fn number() -> usize {
    NUMBER.with(|n| *n)
}

/// Where this thread counts: a shard index, and whether the thread owns it (its only writer)
/// or shares it (the last shard).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mine {
    pub(crate) index: usize,
    owned: bool,
}

impl Mine {
    /// This thread's shard.
    #[inline]
    pub(crate) fn get() -> Self {
        Self::of(number(), owned())
    }

    /// The shard of the thread numbered `n` when `owned` shards are owned: its own below
    /// `owned`, the shared one (index `owned`) from there on.
    #[inline]
    fn of(n: usize, owned: usize) -> Self {
        if n < owned {
            Self {
                index: n,
                owned: true,
            }
        } else {
            Self {
                index: owned,
                owned: false,
            }
        }
    }

    /// The shared shard's way of adding, for any thread.
    #[inline]
    pub(crate) fn shared() -> Self {
        Self {
            index: owned(),
            owned: false,
        }
    }

    /// Adds `n` to `c`, a counter of this thread's shard.
    #[inline]
    pub(crate) fn add(self, c: &AtomicU64, n: u64) {
        if self.owned {
            // The shard's one writer: no other thread changes `c` between the two.
            c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
        } else {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_numbers_of_their_own_and_keep_them() {
        let mut numbers: Vec<usize> = (0..8)
            .map(|_| {
                std::thread::spawn(|| {
                    let n = number();
                    assert_eq!(number(), n, "a thread keeps its number");
                    n
                })
                .join()
                .unwrap()
            })
            .collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), 8, "{numbers:?}");
    }

    #[test]
    fn a_shard_below_the_owned_ones_is_its_threads_alone_and_the_rest_share_one() {
        for owned in [1, 2, 16] {
            for n in 0..owned {
                let m = Mine::of(n, owned);
                assert!(m.owned && m.index == n, "{owned} {n}");
            }
            for n in owned..owned + 40 {
                let m = Mine::of(n, owned);
                assert!(!m.owned && m.index == owned, "{owned} {n}");
            }
        }
    }

    #[test]
    fn the_shared_shard_adds_atomically_and_an_owned_one_adds_plainly() {
        let c = AtomicU64::new(5);
        Mine::of(0, 1).add(&c, 3);
        Mine::shared().add(&c, 4);
        assert_eq!(c.load(Ordering::Relaxed), 12);
    }
}
