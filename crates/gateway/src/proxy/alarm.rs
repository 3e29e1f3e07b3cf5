//! A connection's timeouts without a timer per request. A busy keep-alive
//! connection would otherwise add a timer to the runtime's wheel and take
//! it out again for every request it waits for and every answer it awaits.
//! An alarm keeps one timer armed and only ever moves it later when it
//! rings early: a deadline that moves forward with each request costs one
//! ring per timeout period, whatever the request rate.
//!
//! The timer is made at the first deadline, not before: a timer made
//! already due (as `sleep_until(now)` is) is inserted earlier than the
//! runtime's next wake, so tokio wakes its own driver through the eventfd
//! (a syscall), rings at once and polls the task once more for nothing.
//! An HTTP/2 stream makes a fresh connection per request, so it paid that
//! on every request.

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

pub(crate) struct Alarm {
    timer: Option<Pin<Box<Sleep>>>,
}

impl Alarm {
    pub(crate) fn new() -> Alarm {
        Alarm { timer: None }
    }

    /// Completes when `deadline` has passed.
    pub(crate) async fn until(&mut self, deadline: Instant) {
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            if timer.deadline() > deadline {
                // Armed too late for this deadline: only now a real reset.
                timer.as_mut().reset(deadline);
            }
            timer.as_mut().await;
            if Instant::now() >= deadline {
                return;
            }
            timer.as_mut().reset(deadline);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_alarm_rings_at_each_deadline_early_or_late_in_any_order() {
        let mut alarm = Alarm::new();
        let start = Instant::now();
        for (after_ms, label) in [
            (500, "first"),
            (800, "later"),
            (100, "earlier"),
            (100, "same"),
        ] {
            let began = Instant::now();
            let deadline = began + Duration::from_millis(after_ms);
            alarm.until(deadline).await;
            assert_eq!(Instant::now(), deadline, "{label}");
        }
        assert_eq!(start.elapsed(), Duration::from_millis(1500));
        // An alarm abandoned before it rings still rings later on time.
        let deadline = Instant::now() + Duration::from_secs(5);
        let cut = tokio::time::timeout(Duration::from_secs(1), alarm.until(deadline)).await;
        assert!(cut.is_err());
        alarm.until(deadline).await;
        assert_eq!(Instant::now(), deadline);
    }
}
