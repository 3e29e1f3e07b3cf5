//! How many shops the stack should run, decided once a step from what the
//! gateway shows: the pure half of the autoscaler (no clock, no process),
//! so every rule is tested on synthetic signals and times.
//!
//! The rules, after the Kubernetes HPA's (`desired = ceil(current ×
//! utilisation ÷ target)`, scale up without a stabilisation window and by
//! at most double a step, scale down only to the highest recommendation of
//! a window), with what a flash sale needs beyond them:
//!
//! - **Utilisation** is the higher of the shops' concurrency limits in use
//!   (requests in flight ÷ the limits the gateway gives them) and their
//!   CPU against their quota, when known.
//! - **Pressure the ratio cannot see**: requests waiting in the gateway's
//!   queue or shed mean demand beyond the limits by an unknown amount (the
//!   formula would only say "limits at 100 %"), so they ask for double; a
//!   p99 over its target asks for one more. A queue counts once it is seen
//!   two steps running: the gauge is read at an instant, and a handful of
//!   requests caught there between two bursts is no surge (without this, a
//!   blip just after a scale-down doubled the shops again).
//! - **Up fast**: steps of 1 to 2 s (the HPA's are 15 s), to at most double
//!   (and at least one more) a step.
//! - **Down slowly**: only to the highest recommendation of the last
//!   `down_window` (5 min), one shop a step, and **never during a sale
//!   window** (a lull between two waves of a sale is not the end of it).
//! - **Pre-scaling**: from `lead` (60 s) before a sale opens until it
//!   closes, at least `planned` shops (the most, unless set), so the
//!   capacity is there and warm when the crowd comes, not a step after.

use std::collections::VecDeque;
use std::time::Duration;

/// The autoscaler's bounds and targets (`[autoscale]` in stack.toml).
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscaleRules {
    pub min_shops: u32,
    pub max_shops: u32,
    /// Utilisation to hold the shops at. Default 0.7.
    pub target_utilisation: f64,
    /// A p99 at the gateway above this asks for a shop. Default 500 ms.
    pub p99_target_ms: f64,
    /// Scale down only to the highest recommendation of this window.
    pub down_window: Duration,
    /// How long before a sale opens its shops are there. Default 60 s.
    pub lead: Duration,
    /// Shops during a sale window, at least. Default `max_shops`.
    pub planned: Option<u32>,
}

/// What the gateway showed over the last step.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Signals {
    /// Requests in flight on the shops, and their concurrency limits,
    /// summed over the shops that serve.
    pub in_flight: f64,
    pub limit: f64,
    /// The shops' CPU use against their quota (1 = all of it), when known.
    pub cpu_of_quota: Option<f64>,
    /// Requests waiting in the gateway's queue.
    pub queued: f64,
    /// Requests shed per second (queue full or timed out, a shop's own
    /// `overloaded`).
    pub shed_per_s: f64,
    pub p99_ms: Option<f64>,
}

/// A sale's window, in Unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SaleWindow {
    pub opens_ms: u64,
    /// None: open-ended (until the stack stops).
    pub closes_ms: Option<u64>,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Hold,
    /// To this many shops, and why (with the figures behind it).
    ScaleUp {
        to: u32,
        why: String,
    },
    ScaleDown {
        to: u32,
        why: String,
    },
}

/// The autoscaler's memory: its recent recommendations.
#[derive(Debug)]
pub struct Autoscaler {
    rules: AutoscaleRules,
    recommended: VecDeque<(u64, u32)>,
    /// Whether the last step saw requests queued.
    queued_before: bool,
}

impl Autoscaler {
    pub fn new(rules: AutoscaleRules) -> Autoscaler {
        Autoscaler {
            rules,
            recommended: VecDeque::new(),
            queued_before: false,
        }
    }

    /// The step at `now_ms` with `current` shops serving.
    pub fn decide(
        &mut self,
        now_ms: u64,
        current: u32,
        signals: Signals,
        sales: &[SaleWindow],
    ) -> Decision {
        let r = &self.rules;
        let in_sale = sales.iter().any(|sale| {
            let from = sale.opens_ms.saturating_sub(r.lead.as_millis() as u64);
            now_ms >= from && sale.closes_ms.is_none_or(|closes| now_ms < closes)
        });
        let floor = if in_sale {
            r.planned
                .unwrap_or(r.max_shops)
                .clamp(r.min_shops, r.max_shops)
        } else {
            r.min_shops
        };
        let limits_used = if signals.limit > 0.0 {
            signals.in_flight / signals.limit
        } else {
            0.0
        };
        let utilisation = limits_used.max(signals.cpu_of_quota.unwrap_or(0.0));
        let by_ratio = (f64::from(current) * utilisation / r.target_utilisation).ceil() as u32;
        let slow = signals.p99_ms.is_some_and(|p99| p99 > r.p99_target_ms);
        let queued = signals.queued > 0.0;
        let queueing = queued && self.queued_before;
        self.queued_before = queued;
        let wanted = if queueing || signals.shed_per_s > 0.0 {
            by_ratio.max(current.saturating_mul(2))
        } else if slow {
            by_ratio.max(current + 1)
        } else {
            by_ratio
        };
        let recommendation = wanted.clamp(floor.max(1), r.max_shops);
        self.recommended.push_back((now_ms, recommendation));
        let window = r.down_window.as_millis() as u64;
        while self
            .recommended
            .front()
            .is_some_and(|(at, _)| at + window < now_ms)
        {
            self.recommended.pop_front();
        }
        let figures = format!(
            "limits {:.0} % used, CPU {} of quota, {:.0} queued, {:.1} shed/s, p99 {}",
            limits_used * 100.0,
            signals
                .cpu_of_quota
                .map_or("unknown".to_string(), |c| format!("{:.0} %", c * 100.0)),
            signals.queued,
            signals.shed_per_s,
            signals
                .p99_ms
                .map_or("unknown".to_string(), |p| format!("{p:.0} ms")),
        );
        if current < floor {
            return Decision::ScaleUp {
                to: floor,
                why: "a sale opens soon or is open: its planned shops, warm before the crowd"
                    .to_string(),
            };
        }
        if recommendation > current {
            let to = recommendation.min(current.saturating_mul(2).max(current + 1));
            return Decision::ScaleUp {
                to,
                why: format!("{figures}: {recommendation} wanted"),
            };
        }
        if in_sale || recommendation >= current {
            return Decision::Hold;
        }
        // Down only as far as the highest recommendation of the window,
        // once a window of them has been seen, one shop at a time.
        let seen_since = self.recommended.front().map_or(now_ms, |(at, _)| *at);
        if now_ms.saturating_sub(seen_since) + 1_000 < window {
            return Decision::Hold;
        }
        let highest = self
            .recommended
            .iter()
            .map(|(_, n)| *n)
            .max()
            .unwrap_or(current);
        if highest >= current {
            return Decision::Hold;
        }
        Decision::ScaleDown {
            to: current - 1,
            why: format!(
                "{figures}: at most {highest} wanted for {} s",
                window / 1_000
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AutoscaleRules {
        AutoscaleRules {
            min_shops: 1,
            max_shops: 8,
            target_utilisation: 0.7,
            p99_target_ms: 500.0,
            down_window: Duration::from_secs(300),
            lead: Duration::from_secs(60),
            planned: Some(4),
        }
    }

    fn busy(in_flight: f64, limit: f64) -> Signals {
        Signals {
            in_flight,
            limit,
            ..Signals::default()
        }
    }

    /// Steps a second apart from `from_s`, applying each decision.
    fn run(
        a: &mut Autoscaler,
        shops: &mut u32,
        from_s: u64,
        to_s: u64,
        signals: Signals,
        sales: &[SaleWindow],
    ) {
        for s in from_s..to_s {
            match a.decide(s * 1_000, *shops, signals, sales) {
                Decision::ScaleUp { to, .. } | Decision::ScaleDown { to, .. } => *shops = to,
                Decision::Hold => {}
            }
        }
    }

    #[test]
    fn a_queue_doubles_the_shops_a_step_up_to_the_most() {
        let mut a = Autoscaler::new(rules());
        let mut shops = 1;
        let queued = Signals {
            queued: 200.0,
            ..busy(64.0, 64.0)
        };
        let mut seen = Vec::new();
        for s in 0..4 {
            if let Decision::ScaleUp { to, why } = a.decide(s * 1_000, shops, queued, &[]) {
                assert!(why.contains("200 queued"), "{why}");
                shops = to;
            }
            seen.push(shops);
        }
        // Double a step while requests queue, up to the most.
        assert_eq!(seen, vec![2, 4, 8, 8]);
    }

    #[test]
    fn a_queue_seen_at_one_step_only_is_no_surge() {
        let mut a = Autoscaler::new(rules());
        let blip = Signals {
            queued: 8.0,
            ..busy(16.0, 40.0)
        };
        // 40 % of the limits in use, 8 requests caught in the queue at the
        // instant it was read, quiet again at the next step: nothing.
        assert_eq!(a.decide(0, 2, blip, &[]), Decision::Hold);
        assert_eq!(a.decide(1_000, 2, busy(16.0, 40.0), &[]), Decision::Hold);
        assert_eq!(a.decide(2_000, 2, blip, &[]), Decision::Hold);
        // Seen again at the next step: a queue, double.
        assert!(matches!(
            a.decide(3_000, 2, blip, &[]),
            Decision::ScaleUp { to: 4, .. }
        ));
    }

    #[test]
    fn the_ratio_sizes_the_shops_without_pressure() {
        let mut a = Autoscaler::new(rules());
        // Three shops at 90 % of their limits: ceil(3 × 0.9 ÷ 0.7) = 4.
        assert!(matches!(
            a.decide(0, 3, busy(86.4, 96.0), &[]),
            Decision::ScaleUp { to: 4, .. }
        ));
        // At the target, nothing to do.
        assert_eq!(a.decide(1_000, 4, busy(89.6, 128.0), &[]), Decision::Hold);
        // CPU against the quota counts when it is the higher.
        let hot = Signals {
            cpu_of_quota: Some(0.95),
            ..busy(10.0, 128.0)
        };
        assert!(matches!(
            a.decide(2_000, 4, hot, &[]),
            Decision::ScaleUp { to: 6, .. }
        ));
    }

    #[test]
    fn down_only_after_a_quiet_window_and_one_shop_a_step() {
        let mut a = Autoscaler::new(rules());
        let mut shops = 6;
        // Quiet for four minutes: nothing moves.
        run(&mut a, &mut shops, 0, 240, busy(1.0, 192.0), &[]);
        assert_eq!(shops, 6);
        // A spike wanting 6 at 250 s keeps 6 for the window after it.
        run(&mut a, &mut shops, 240, 251, busy(130.0, 192.0), &[]);
        assert_eq!(shops, 6);
        run(&mut a, &mut shops, 251, 540, busy(1.0, 192.0), &[]);
        assert_eq!(shops, 6, "down within the window of a spike");
        // Then down, a shop a step, to the least.
        run(&mut a, &mut shops, 540, 560, busy(1.0, 192.0), &[]);
        assert_eq!(shops, 1);
    }

    #[test]
    fn never_down_in_a_sale_window_and_up_to_the_plan_at_the_lead() {
        let mut a = Autoscaler::new(rules());
        let sale = [SaleWindow {
            opens_ms: 600_000,
            closes_ms: Some(1_200_000),
        }];
        let mut shops = 1;
        // Quiet until the lead: one shop.
        run(&mut a, &mut shops, 0, 539, busy(0.0, 64.0), &sale);
        assert_eq!(shops, 1);
        // 60 s before the opening: the planned four, at once.
        run(&mut a, &mut shops, 539, 541, busy(0.0, 64.0), &sale);
        assert_eq!(shops, 4);
        // A lull inside the sale keeps them.
        run(&mut a, &mut shops, 541, 1_199, busy(0.0, 256.0), &sale);
        assert_eq!(shops, 4);
        // After it closes and a quiet window, down again.
        run(&mut a, &mut shops, 1_199, 1_600, busy(0.0, 256.0), &sale);
        assert_eq!(shops, 1);
    }

    #[test]
    fn a_slow_p99_asks_for_one_more_and_shedding_for_double() {
        let mut a = Autoscaler::new(rules());
        let slow = Signals {
            p99_ms: Some(900.0),
            ..busy(10.0, 64.0)
        };
        assert!(matches!(
            a.decide(0, 2, slow, &[]),
            Decision::ScaleUp { to: 3, .. }
        ));
        let shedding = Signals {
            shed_per_s: 3.0,
            ..busy(10.0, 64.0)
        };
        assert!(matches!(
            a.decide(1_000, 3, shedding, &[]),
            Decision::ScaleUp { to: 6, .. }
        ));
    }
}
