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
        let owned = owned();
        let n = NUMBER.with(|n| *n);
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
