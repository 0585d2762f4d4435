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

/// A timer that is ready once its deadline has passed; see the module's doc. The runtime's
/// timer is made when the deadline is first waited for: a connection whose request was
/// already there when it was accepted, and that closes after its answer, never makes one.
#[derive(Debug)]
pub(crate) struct Deadline {
    /// Fires at `due` or earlier; `None` until first polled.
    timer: Option<Pin<Box<Sleep>>>,
    due: Instant,
}

impl Deadline {
    /// A deadline at `at`.
    pub(crate) fn at(at: Instant) -> Self {
        Self {
            timer: None,
            due: at,
        }
    }

    /// A deadline at the time `timer` is set to.
    pub(crate) fn from_timer(timer: Pin<Box<Sleep>>) -> Self {
        let due = timer.deadline();
        Self {
            timer: Some(timer),
            due,
        }
    }

    /// The timer, set to the deadline.
    pub(crate) fn into_timer(self) -> Pin<Box<Sleep>> {
        match self.timer {
            Some(mut timer) => {
                if timer.deadline() != self.due {
                    timer.as_mut().reset(self.due);
                }
                timer
            }
            None => Box::pin(tokio::time::sleep_until(self.due)),
        }
    }

    /// Sets the deadline to `at`: the timer is reset only when `at` is earlier than the time
    /// it fires at.
    pub(crate) fn set(&mut self, at: Instant) {
        self.due = at;
        if let Some(timer) = &mut self.timer
            && at < timer.deadline()
        {
            timer.as_mut().reset(at);
        }
    }

    /// Ready once the deadline has passed.
    pub(crate) fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let due = self.due;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
        loop {
            ready!(timer.as_mut().poll(cx));
            if timer.deadline() >= self.due {
                return Poll::Ready(());
            }
            // Fired at an earlier deadline since moved later: wait for the rest.
            timer.as_mut().reset(self.due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;

    const MS: Duration = Duration::from_millis(1);

    /// The deadline at which its timer fires now (`None`: not made yet).
    fn fires_at(d: &Deadline) -> Option<Instant> {
        d.timer.as_ref().map(|t| t.deadline())
    }

    #[tokio::test(start_paused = true)]
    async fn a_later_deadline_is_waited_for_whole_and_an_earlier_one_comes_at_once() {
        let start = Instant::now();
        let mut d = Deadline::from_timer(Box::pin(tokio::time::sleep_until(start + 100 * MS)));
        // Later: the timer stays where it was, and the wait still lasts until the new time.
        d.set(start + 250 * MS);
        assert_eq!(fires_at(&d), Some(start + 100 * MS));
        poll_fn(|cx| d.poll(cx)).await;
        assert_eq!(Instant::now(), start + 250 * MS);
        // Earlier than the timer fires: reset at once.
        let mut e = Deadline::from_timer(Box::pin(tokio::time::sleep_until(
            Instant::now() + 500 * MS,
        )));
        e.set(Instant::now() + 20 * MS);
        assert_eq!(fires_at(&e), Some(Instant::now() + 20 * MS));
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

    #[tokio::test(start_paused = true)]
    async fn a_deadline_makes_its_timer_when_first_waited_for() {
        let start = Instant::now();
        let mut d = Deadline::at(start + 100 * MS);
        d.set(start + 150 * MS);
        assert_eq!(fires_at(&d), None, "no timer before the first wait");
        // Waited for after a while: made at the deadline it has then, not the first one.
        tokio::time::sleep(30 * MS).await;
        poll_fn(|cx| d.poll(cx)).await;
        assert_eq!(Instant::now(), start + 150 * MS);
        assert_eq!(fires_at(&d), Some(start + 150 * MS));
        // A deadline already past when first waited for is ready at once.
        let mut past = Deadline::at(Instant::now() - 10 * MS);
        let before = Instant::now();
        poll_fn(|cx| past.poll(cx)).await;
        assert_eq!(Instant::now(), before);
        // Taken out without ever being waited for: a timer set to the deadline.
        let later = Deadline::at(Instant::now() + 70 * MS);
        assert_eq!(later.into_timer().deadline(), before + 70 * MS);
    }
}
