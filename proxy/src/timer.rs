//! The timer hyper's HTTP/1 server runs its header-read timeout on: hyper-util's `TokioTimer`,
//! except that the tokio timer behind a dropped sleep is kept for the next sleep.
//!
//! hyper makes a sleep each time it starts waiting for a request head and drops it once the head
//! is in, so with `TokioTimer` every keep-alive request registers a timer in the runtime's timer
//! wheel and removes it again (a lock each, besides the sleep's own setup and allocation). Here a
//! dropped sleep's timer goes to a small per-thread stock, still registered at its old deadline;
//! the next sleep made on that thread takes it and moves its deadline later, which is one atomic
//! operation while the old deadline has not passed. A stocked timer whose deadline passes wakes
//! the task that last polled it, once: a spurious wake-up, which every future tolerates. A timer
//! is reused only on the runtime that made it (a thread may run one runtime after another, as
//! tests do). It is a layer of its own below `listener`, and knows nothing of HTTP.

// hyper's `Timer` trait speaks `std::time::Instant`; every value here is read from, or turned
// into, tokio's clock (so paused test time holds).
#![allow(clippy::disallowed_types)]

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};
use tokio::runtime::{Handle, Id};
use tokio::time::{Instant, Sleep};

/// Timers kept per thread. Keep-alive connections take one back as they drop one, so a few
/// suffice; more would only hold memory (and each the waker of the task that polled it last).
const STOCK: usize = 64;

/// A tokio timer and the runtime it belongs to.
type Owned = (Id, Pin<Box<Sleep>>);

thread_local! {
    static STOCKED: RefCell<Vec<Owned>> = const { RefCell::new(Vec::new()) };
}

/// A `hyper::rt::Timer` whose sleeps reuse tokio timers (see the module's documentation).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ReusingTimer;

impl hyper::rt::Timer for ReusingTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ReusedSleep(Some(timer_at(after(duration)))))
    }

    fn sleep_until(&self, deadline: StdInstant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(ReusedSleep(Some(timer_at(Instant::from_std(deadline)))))
    }

    fn now(&self) -> StdInstant {
        // tokio's clock, so that tests which pause time see hyper's timeouts follow it.
        Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn hyper::rt::Sleep>>, new_deadline: StdInstant) {
        let deadline = Instant::from_std(new_deadline);
        match sleep.as_mut().downcast_mut_pin::<ReusedSleep>() {
            Some(reused) => match &mut reused.get_mut().0 {
                Some((_, timer)) => timer.as_mut().reset(deadline),
                slot @ None => *slot = Some(timer_at(deadline)),
            },
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// `duration` from now; a duration past the clock's range is about 30 years, as in tokio.
fn after(duration: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(duration)
        .unwrap_or_else(|| now + Duration::from_secs(86400 * 365 * 30))
}

/// A timer set to `deadline`: a stocked one of this runtime when there is one, else a new one.
fn timer_at(deadline: Instant) -> Owned {
    let runtime = Handle::current().id();
    // A timer of another runtime is dropped here; the stock is refilled by later sleeps.
    let stocked = STOCKED.try_with(|s| s.borrow_mut().pop()).ok().flatten();
    match stocked {
        Some((made_on, mut timer)) if made_on == runtime => {
            timer.as_mut().reset(deadline);
            (runtime, timer)
        }
        _ => (runtime, Box::pin(tokio::time::sleep_until(deadline))),
    }
}

/// A sleep whose timer goes back to the thread's stock when it is dropped.
struct ReusedSleep(Option<Owned>);

impl Future for ReusedSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.get_mut().0 {
            Some((_, timer)) => timer.as_mut().poll(cx),
            None => Poll::Ready(()),
        }
    }
}

impl hyper::rt::Sleep for ReusedSleep {}

impl Drop for ReusedSleep {
    fn drop(&mut self) {
        let Some(timer) = self.0.take() else { return };
        // Refused when the stock is full or the thread is ending: the timer is dropped (and
        // deregistered) after the stock's borrow ends.
        let _refused = STOCKED
            .try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < STOCK {
                    s.push(timer);
                    None
                } else {
                    Some(timer)
                }
            })
            .ok()
            .flatten();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::rt::Timer;

    #[tokio::test(start_paused = true)]
    async fn a_reused_timer_fires_at_its_new_deadline_not_its_old_one() {
        let timer = ReusingTimer;
        let first = timer.sleep(Duration::from_secs(10));
        drop(first);
        tokio::time::advance(Duration::from_secs(5)).await;
        // Takes the stocked timer (old deadline: 5 s from now) and moves it to 10 s from now.
        let mut second = timer.sleep(Duration::from_secs(10));
        let waited = Instant::now();
        second.as_mut().await;
        assert_eq!(waited.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reset_moves_the_deadline_earlier_too() {
        let timer = ReusingTimer;
        let mut sleep = timer.sleep(Duration::from_secs(60));
        let start = Instant::now();
        timer.reset(&mut sleep, timer.now() + Duration::from_secs(2));
        sleep.as_mut().await;
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }

    #[test]
    fn a_timer_stocked_by_an_ended_runtime_is_not_reused_by_the_next() {
        let timer = ReusingTimer;
        for _ in 0..2 {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            rt.block_on(async {
                let start = Instant::now();
                // The first round stocks a timer; the second must not take it (its runtime
                // is gone, and polling it would panic).
                let mut sleep = timer.sleep(Duration::from_secs(3));
                sleep.as_mut().await;
                assert_eq!(start.elapsed(), Duration::from_secs(3));
            });
        }
    }
}
