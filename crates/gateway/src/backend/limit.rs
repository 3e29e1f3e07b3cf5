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

use tokio::time::Instant;

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
/// Latency shrinks the limit at most once in this long; a drop still
/// shrinks it at once. A gateway held off the CPU (a quota's throttling:
/// 50 ms of every 100 at half a core) reads the answers that came
/// meanwhile one after another, late, each seemingly slow; answers whose
/// wait spanned the freeze teach nothing (`crate::stall`), but those
/// sent just after it wait behind the backlog. Shrinking once for each
/// took a healthy backend's limit from 64 down to 4 within a run
/// (`bench/limit_under_quota.py`). A backend that really queues keeps
/// the short average high window after window, and the limit shrinks in
/// each: halved in under a second, and at once by its 503s.
const SHRINK_EVERY: Duration = Duration::from_millis(100);

pub(crate) use crate::config::LimitRules;

#[derive(Debug, Clone)]
pub(super) struct Limiter {
    estimate: f64,
    long_ms: Option<f64>,
    short_ms: Option<f64>,
    samples: u64,
    /// When latency last shrank the limit.
    shrunk_at: Option<Instant>,
}

impl Limiter {
    pub(super) fn new(rules: &LimitRules) -> Limiter {
        Limiter {
            estimate: f64::from(rules.initial),
            long_ms: None,
            short_ms: None,
            samples: 0,
            shrunk_at: None,
        }
    }

    pub(super) fn limit(&self) -> u32 {
        self.estimate as u32
    }

    /// An answer after `rtt`, with `in_flight` requests on the backend,
    /// read `now`.
    pub(super) fn answered(
        &mut self,
        (rtt, now): (Duration, Instant),
        in_flight: u64,
        rules: &LimitRules,
    ) -> u32 {
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
        if target < self.estimate {
            if self
                .shrunk_at
                .is_some_and(|at| now.saturating_duration_since(at) < SHRINK_EVERY)
            {
                return self.limit();
            }
            self.shrunk_at = Some(now);
        }
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

    /// A backend kept full, answering after a latency: as many answers
    /// as its limit in each latency (Little's law), on the test's clock.
    struct Full {
        limiter: Limiter,
        now: Instant,
    }

    impl Full {
        fn new() -> Full {
            Full {
                limiter: Limiter::new(&RULES),
                now: Instant::now(),
            }
        }

        /// Answers after `rtt` for `lasting`; the limit at the end.
        fn answer(&mut self, rtt: Duration, lasting: Duration) -> u32 {
            let end = self.now + lasting;
            let mut limit = self.limiter.limit();
            while self.now < end {
                limit = self
                    .limiter
                    .answered((rtt, self.now), u64::from(limit), &RULES);
                self.now += rtt / limit.max(1);
            }
            limit
        }
    }

    const MS: Duration = Duration::from_millis(1);
    const US: Duration = Duration::from_micros(1);

    #[test]
    fn a_steady_backend_earns_a_higher_limit_up_to_the_maximum() {
        let mut full = Full::new();
        let after_some = full.answer(5 * MS, 50 * MS);
        assert!(after_some > 32, "{after_some}");
        assert_eq!(full.answer(5 * MS, 10_000 * MS), 256, "bounded by max");
    }

    #[test]
    fn a_latency_step_shrinks_it_and_a_return_to_normal_lets_it_grow() {
        let mut full = Full::new();
        let usual = full.answer(5 * MS, 1_000 * MS);
        // Ten times the usual latency: queueing in the backend. The limit
        // shrinks once a window (`SHRINK_EVERY`), halved within a second.
        let slowed = full.answer(50 * MS, 1_000 * MS);
        assert!(slowed < usual / 2, "{usual} -> {slowed}");
        // Within the tolerance (2×) it does not shrink.
        let mut within = Full::new();
        let before = within.answer(5 * MS, 1_000 * MS);
        assert!(within.answer(9 * MS, 1_000 * MS) >= before);
        // Back to normal: it grows again.
        let recovered = full.answer(5 * MS, 1_000 * MS);
        assert!(recovered > slowed, "{slowed} -> {recovered}");
    }

    #[test]
    fn a_fast_backend_measured_through_a_busy_gateway_keeps_its_limit() {
        let mut full = Full::new();
        // 0.1 ms while the gateway is idle, 0.6 ms while it is busy.
        let usual = full.answer(100 * US, 100 * MS);
        assert!(full.answer(600 * US, 300 * MS) >= usual);
        // Real queueing in it still shrinks the limit.
        assert!(full.answer(5 * MS, 2_000 * MS) < usual / 2);
    }

    #[test]
    fn answers_read_late_after_a_freeze_shrink_it_once() {
        let mut full = Full::new();
        let usual = full.answer(200 * US, 200 * MS);
        // The gateway was frozen; sent just after, 100 answers are read
        // one after another behind the backlog, 5 ms late each, within 2
        // ms. Shrinking for each took it from 256 to the floor of 4.
        for _ in 0..100 {
            full.limiter
                .answered((5 * MS, full.now), u64::from(usual), &RULES);
            full.now += 20 * US;
        }
        let after = full.limiter.limit();
        assert!(after >= usual * 9 / 10, "{usual} -> {after}");
        // And the backend's usual answers bring it back.
        assert_eq!(full.answer(200 * US, 100 * MS), usual);
    }

    #[test]
    fn an_idle_backend_keeps_its_limit() {
        let mut full = Full::new();
        for _ in 0..1_000 {
            full.limiter.answered((5 * MS, full.now), 1, &RULES);
            full.now += 5 * MS;
        }
        assert_eq!(full.limiter.limit(), 32);
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
        let answer = (Duration::from_millis(1), Instant::now());
        assert_eq!(limiter.answered(answer, 32, &fixed), 32);
        assert_eq!(limiter.dropped(&fixed), 32);
    }
}
