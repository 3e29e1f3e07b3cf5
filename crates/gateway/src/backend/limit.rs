//! How many requests one backend is given at once: the adaptive
//! concurrency limit, in the manner of the gradient limiters of Netflix's
//! concurrency-limits library.
//!
//! Each answer's latency updates two averages: a long one (about the last
//! 600 answers while the backend had room), the backend's usual latency,
//! and a short one (the last few answers). While the short one stays within `tolerance` (2×) of the long
//! one the backend is not queueing, and the limit grows by about √limit per
//! update — but only while it is used (at least half of it in flight), so
//! an idle backend's limit does not run away. When latency climbs past the
//! tolerance the limit shrinks by the ratio, at most by half at once, so
//! one slow answer does not starve the backend. A shed 503, a timeout or a
//! failure is a drop: the limit shrinks by a tenth at once (the way TCP
//! halves its window on loss, gentler because a shop sheds only its
//! excess). Every update is smoothed (`SMOOTHING`) and bounded to [min,
//! max]. After a long stretch of overload the long average has crept up;
//! when it is more than twice the short one it is pulled down a tenth per
//! answer, so the limit can shrink again next time.
//!
//! Why not a fixed limit: a shop's capacity changes with its CPU share, the
//! database and the item mix; a fixed number is right for one of them. A
//! fixed limit is still there: `adaptive = false` keeps `initial`.
//!
//! Why the tolerance: a shop batches orders for one item in one
//! transaction (group commit), so some queueing in the shop is how it gets
//! its best throughput. A limiter that kept latency at its no-load floor
//! (TCP Vegas's aim) would starve the batching; one that allows a bounded
//! rise keeps the batches full and the queue short.

use std::time::Duration;

/// How fast a new estimate replaces the limit.
const SMOOTHING: f64 = 0.2;
/// Answers the long average spans.
const LONG_WINDOW: f64 = 600.0;
/// Answers the short average spans.
const SHORT_WINDOW: f64 = 10.0;
/// Latency may rise this much over its usual before the limit shrinks.
const TOLERANCE: f64 = 2.0;
/// And this much more, in ms: below a millisecond, what the gateway
/// measures is mostly its own time between writing a request and reading
/// the answer (other streams and connections served in between), which
/// grows with the gateway's load, not the backend's. A backend that
/// answers in 0.1 ms measured 0.1 to 0.6 ms through a busy gateway, three
/// times its usual, and without the slack its limit fell from 64 to 4.
const SLACK_MS: f64 = 1.0;
/// What a drop (shed, timeout, failure) leaves of the limit.
const BACKOFF: f64 = 0.9;

pub(crate) use crate::config::LimitRules;

#[derive(Debug, Clone)]
pub(super) struct Limiter {
    estimate: f64,
    long_ms: Option<f64>,
    short_ms: Option<f64>,
    samples: u64,
}

impl Limiter {
    pub(super) fn new(rules: &LimitRules) -> Limiter {
        Limiter {
            estimate: f64::from(rules.initial),
            long_ms: None,
            short_ms: None,
            samples: 0,
        }
    }

    pub(super) fn limit(&self) -> u32 {
        self.estimate as u32
    }

    /// An answer after `rtt`, with `in_flight` requests on the backend.
    pub(super) fn answered(&mut self, rtt: Duration, in_flight: u64, rules: &LimitRules) -> u32 {
        if !rules.adaptive {
            return self.fixed(rules);
        }
        let ms = rtt.as_secs_f64() * 1000.0;
        // The usual latency is learnt while the backend has room: under
        // saturation every answer has queued, and learning from it would
        // make queueing the norm (gradient2's drift under sustained load).
        let saturated = in_flight as f64 >= self.estimate - 1.0;
        let long = match self.long_ms {
            Some(long) if saturated => long,
            Some(long) => {
                self.samples += 1;
                // A plain mean at first, then decaying.
                long + (ms - long) / (self.samples as f64).min(LONG_WINDOW)
            }
            None => ms,
        };
        let short = self
            .short_ms
            .map_or(ms, |short| short + (ms - short) / SHORT_WINDOW);
        let long = if long > 2.0 * short { long * 0.9 } else { long };
        self.long_ms = Some(long);
        self.short_ms = Some(short);
        // An idle backend says nothing about how much more it could take.
        if (in_flight as f64) < self.estimate / 2.0 {
            return self.limit();
        }
        let gradient = ((TOLERANCE * long + SLACK_MS) / short.max(0.001)).clamp(0.5, 1.0);
        let target = self.estimate * gradient + self.estimate.sqrt();
        self.settle(target, rules)
    }

    /// A shed 503, a timeout or a failure.
    pub(super) fn dropped(&mut self, rules: &LimitRules) -> u32 {
        if !rules.adaptive {
            return self.fixed(rules);
        }
        let target = self.estimate * BACKOFF;
        // Straight down: a drop is news that cannot wait for smoothing.
        self.estimate = target.clamp(f64::from(rules.min), f64::from(rules.max));
        self.limit()
    }

    fn settle(&mut self, target: f64, rules: &LimitRules) -> u32 {
        let smoothed = self.estimate * (1.0 - SMOOTHING) + target * SMOOTHING;
        self.estimate = smoothed.clamp(f64::from(rules.min), f64::from(rules.max));
        self.limit()
    }

    fn fixed(&mut self, rules: &LimitRules) -> u32 {
        self.estimate = f64::from(rules.initial);
        rules.initial
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: LimitRules = LimitRules {
        adaptive: true,
        initial: 32,
        min: 4,
        max: 256,
        max_waiting_on_clients: 256,
    };

    /// Feeds `n` answers of `ms` with the backend kept full.
    fn feed(limiter: &mut Limiter, n: usize, ms: u64) -> u32 {
        let mut limit = limiter.limit();
        for _ in 0..n {
            limit = limiter.answered(Duration::from_millis(ms), u64::from(limit), &RULES);
        }
        limit
    }

    /// Feeds `n` answers of `us` microseconds with the backend kept full.
    fn feed_us(limiter: &mut Limiter, n: usize, us: u64) -> u32 {
        let mut limit = limiter.limit();
        for _ in 0..n {
            limit = limiter.answered(Duration::from_micros(us), u64::from(limit), &RULES);
        }
        limit
    }

    #[test]
    fn a_steady_backend_earns_a_higher_limit_up_to_the_maximum() {
        let mut limiter = Limiter::new(&RULES);
        let after_some = feed(&mut limiter, 20, 5);
        assert!(after_some > 32, "{after_some}");
        assert_eq!(feed(&mut limiter, 2_000, 5), 256, "bounded by max");
    }

    #[test]
    fn a_latency_step_shrinks_it_and_a_return_to_normal_lets_it_grow() {
        let mut limiter = Limiter::new(&RULES);
        let usual = feed(&mut limiter, 300, 5);
        // Ten times the usual latency: queueing in the backend.
        let slowed = feed(&mut limiter, 60, 50);
        assert!(slowed < usual / 2, "{usual} -> {slowed}");
        // Within the tolerance (2×) it does not shrink.
        let mut within = Limiter::new(&RULES);
        feed(&mut within, 300, 5);
        let before = within.limit();
        assert!(feed(&mut within, 30, 9) >= before);
        // Back to normal: it grows again.
        let recovered = feed(&mut limiter, 300, 5);
        assert!(recovered > slowed, "{slowed} -> {recovered}");
    }

    #[test]
    fn a_fast_backend_measured_through_a_busy_gateway_keeps_its_limit() {
        let mut limiter = Limiter::new(&RULES);
        // 0.1 ms while the gateway is idle, 0.6 ms while it is busy.
        let usual = feed_us(&mut limiter, 300, 100);
        assert!(feed_us(&mut limiter, 300, 600) >= usual);
        // Real queueing in it still shrinks the limit.
        assert!(feed_us(&mut limiter, 100, 5_000) < usual / 2);
    }

    #[test]
    fn an_idle_backend_keeps_its_limit() {
        let mut limiter = Limiter::new(&RULES);
        for _ in 0..1_000 {
            limiter.answered(Duration::from_millis(5), 1, &RULES);
        }
        assert_eq!(limiter.limit(), 32);
    }

    #[test]
    fn drops_shrink_it_at_once_down_to_the_minimum() {
        let mut limiter = Limiter::new(&RULES);
        assert_eq!(limiter.dropped(&RULES), 28);
        for _ in 0..100 {
            limiter.dropped(&RULES);
        }
        assert_eq!(limiter.limit(), 4);
    }

    #[test]
    fn a_fixed_limit_stays_put() {
        let fixed = LimitRules {
            adaptive: false,
            ..RULES
        };
        let mut limiter = Limiter::new(&fixed);
        assert_eq!(limiter.answered(Duration::from_millis(1), 32, &fixed), 32);
        assert_eq!(limiter.dropped(&fixed), 32);
    }
}
