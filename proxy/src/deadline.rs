//! A deadline re-set on every request without touching the runtime's timer each time.
//!
//! A connection's timer (the client's idle or head deadline, an endpoint's response deadline)
//! moves later with every request. Resetting a tokio timer costs a conversion of the instant
//! to the wheel's ticks and atomic operations, about 270 instructions: more than a tenth of
//! what a kept-alive request costs the proxy otherwise. A [`Deadline`] only records a later
//! deadline; the timer, still set at the earlier one, is moved to it when it fires. A busy
//! connection so touches its timer about once per timeout, not once per request. An earlier
//! deadline resets the timer at once.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::time::{Instant, Sleep};

/// A timer that is ready once its deadline has passed; see the module's doc.
#[derive(Debug)]
pub(crate) struct Deadline {
    /// Fires at `due` or earlier.
    timer: Pin<Box<Sleep>>,
    due: Instant,
}

impl Deadline {
    /// A deadline at `at`.
    pub(crate) fn at(at: Instant) -> Self {
        Self::from_timer(Box::pin(tokio::time::sleep_until(at)))
    }

    /// A deadline at the time `timer` is set to.
    pub(crate) fn from_timer(timer: Pin<Box<Sleep>>) -> Self {
        let due = timer.deadline();
        Self { timer, due }
    }

    /// The timer, set to the deadline.
    pub(crate) fn into_timer(mut self) -> Pin<Box<Sleep>> {
        if self.timer.deadline() != self.due {
            self.timer.as_mut().reset(self.due);
        }
        self.timer
    }

    /// Sets the deadline to `at`: the timer is reset only when `at` is earlier than the time
    /// it fires at.
    pub(crate) fn set(&mut self, at: Instant) {
        self.due = at;
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
    }

    /// Ready once the deadline has passed.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            if self.timer.deadline() >= self.due {
                return Poll::Ready(());
            }
            // Fired at an earlier deadline since moved later: wait for the rest.
            let due = self.due;
            self.timer.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_waited_for_whole_and_an_earlier_one_comes_at_once() {
        let start = Instant::now();
        let mut d = Deadline::at(start + 100 * MS);
        // Later: the timer stays where it was, and the wait still lasts until the new time.
        d.set(start + 250 * MS);
        assert_eq!(d.timer.deadline(), start + 100 * MS);
        poll_fn(|cx| d.poll(cx)).await;
        assert_eq!(Instant::now(), start + 250 * MS);
        // Earlier than the timer fires: reset at once.
        let mut e = Deadline::at(Instant::now() + 500 * MS);
        e.set(Instant::now() + 20 * MS);
        assert_eq!(e.timer.deadline(), Instant::now() + 20 * MS);
        let before = Instant::now();
        poll_fn(|cx| e.poll(cx)).await;
        assert_eq!(Instant::now(), before + 20 * MS);
        // A timer that fired long ago, given a later deadline, waits for it.
        tokio::time::sleep(300 * MS).await;
        let at = Instant::now() + 40 * MS;
        d.set(at);
        poll_fn(|cx| d.poll(cx)).await;
        assert_eq!(Instant::now(), at);
        // Taken out as a plain timer, it is set to the deadline.
        d.set(Instant::now() + 900 * MS);
        let timer = d.into_timer();
        assert_eq!(timer.deadline(), Instant::now() + 900 * MS);
    }
}
