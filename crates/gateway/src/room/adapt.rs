//! The admission rate, following what the backends take.
//!
//! The room cannot see the shops' capacity directly, but the gateway's own
//! queue (section 1's concurrency limits in front of each backend) shows
//! it within a beat: requests wait there only when every backend is at
//! its limit. Each second, with customers in line:
//!
//! - requests refused or timed out by the queue, or the backends full
//!   (requests queued, or nine tenths of their concurrency limits taken)
//!   during half the beats or more: the rate falls by a fifth
//!   (multiplicative decrease, as TCP does on loss);
//! - never full: the rate rises by a fifth (the backends show room; a
//!   fifth finds capacity within seconds);
//! - full now and then: it rises by 5 % (probing gently near the edge).
//!
//! The loop has a delay TCP's does not: a customer whose turn comes is
//! let in when they come back, up to the advised interval (10 s at most)
//! later. So the rate only rises while it is **in use** — customers came
//! in during the second at four fifths of the rate or more — as TCP grows
//! its window only when the sender fills it (RFC 7661). Otherwise the
//! backends' room says nothing about the rate: a rate raised on it lets
//! in customers who all arrive seconds later at once (measured: a rate
//! raised to 1.9 times the shops' capacity before the first of them came
//! back, then the gateway's queue timing out). And it only falls while
//! the customers coming in are at least half the rate (or the queue
//! refuses): backends still full of customers let in before the last cut
//! do not cut it again, which would take it to the floor.
//!
//! The limits themselves shrink as a backend's latency climbs past twice
//! its usual (`backend::limit`), so "nine tenths of the limits taken"
//! means the backends are as busy as their latency allows.
//!
//! Always within `[min_admit_per_s, admit_per_s] / gateways`. The rate
//! starts at `initial_admit_per_s` (a quarter of the bound unless set).
//! With `adaptive = false` it stays at the bound. A notice is raised when
//! the rate has moved by a quarter since the last one, so the timeline
//! shows the steps, not every beat.

use super::{Pressure, RoomRules};

#[derive(Debug)]
pub(crate) struct Adaptive {
    adaptive: bool,
    min: f64,
    max: f64,
    rate: f64,
    beats: u32,
    queued_beats: u32,
    refusals_seen: u64,
    /// Customers who had come in (turns taken, newcomers let straight in)
    /// at the start of the second.
    entered_seen: u64,
    second_start_ms: u64,
    reported: f64,
}

/// This gateway's share of the rate's bounds.
fn bounds(rules: &RoomRules) -> (f64, f64) {
    let gateways = f64::from(rules.gateways);
    (
        rules.min_admit_per_s / gateways,
        rules.admit_per_s / gateways,
    )
}

impl Adaptive {
    pub(crate) fn new(rules: &RoomRules) -> Adaptive {
        let (min, max) = bounds(rules);
        let rate = if rules.adaptive {
            rules.initial_admit_per_s / f64::from(rules.gateways)
        } else {
            max
        };
        Adaptive {
            adaptive: rules.adaptive,
            min,
            max,
            rate,
            beats: 0,
            queued_beats: 0,
            refusals_seen: 0,
            entered_seen: 0,
            second_start_ms: 0,
            reported: rate,
        }
    }

    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// New bounds from a reload: the rate moves into them at once (to the
    /// bound itself when the rate is not adaptive).
    pub(crate) fn set_bounds(&mut self, rules: &RoomRules) {
        (self.min, self.max) = bounds(rules);
        self.rate = if self.adaptive {
            self.rate.clamp(self.min, self.max)
        } else {
            self.max
        };
    }

    /// One beat's look at the backends; once a second, a step.
    /// `entered`: customers who have come in so far (a counter). Returns a
    /// notice when the rate has moved far enough to report.
    pub(crate) fn beat(
        &mut self,
        pressure: Pressure,
        waiting: u64,
        entered: u64,
        now_ms: u64,
    ) -> Option<String> {
        self.beats += 1;
        self.queued_beats += u32::from(pressure.full());
        if self.second_start_ms == 0 {
            self.second_start_ms = now_ms;
            self.refusals_seen = pressure.queue_refusals;
            self.entered_seen = entered;
        }
        if now_ms < self.second_start_ms + 1_000 {
            return None;
        }
        let seconds = (now_ms - self.second_start_ms) as f64 / 1000.0;
        let queued_share = f64::from(self.queued_beats) / f64::from(self.beats);
        let refused = pressure.queue_refusals - self.refusals_seen.min(pressure.queue_refusals);
        let came_per_s = (entered - self.entered_seen.min(entered)) as f64 / seconds;
        self.refusals_seen = pressure.queue_refusals;
        self.entered_seen = entered;
        self.beats = 0;
        self.queued_beats = 0;
        self.second_start_ms = now_ms;
        if !self.adaptive || waiting == 0 {
            return None;
        }
        let in_use = came_per_s >= self.rate * 0.8;
        let (factor, why) = if refused > 0 || queued_share >= 0.5 {
            if refused == 0 && came_per_s < self.rate * 0.5 {
                // Full of customers let in before: the rate is below
                // what loads the backends already.
                return None;
            }
            (
                0.8,
                format!(
                    "backends full ({refused} refused by the queue, full {:.0} % of the second, \
                     {came_per_s:.0} customers came in)",
                    queued_share * 100.0
                ),
            )
        } else if !in_use {
            // Customers whose turn came are still on their way back.
            return None;
        } else if queued_share == 0.0 {
            (1.2, "backends have room (never full)".to_string())
        } else {
            (
                1.05,
                format!(
                    "near the backends' capacity (full {:.0} % of the second)",
                    queued_share * 100.0
                ),
            )
        };
        self.rate = (self.rate * factor).clamp(self.min, self.max);
        let moved = (self.rate / self.reported - 1.0).abs();
        (moved >= 0.25).then(|| {
            self.reported = self.rate;
            format!("admitting {:.0} customers/s: {why}", self.rate)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::room::RoomFile;

    /// The rate and the customers who came in so far.
    struct Sim {
        a: Adaptive,
        entered: f64,
    }

    impl Sim {
        fn rate(&self) -> f64 {
            self.a.rate()
        }
    }

    fn adaptive(admit_per_s: f64) -> Sim {
        let rules = RoomFile {
            admit_per_s,
            ..RoomFile::default()
        }
        .validate(None)
        .unwrap();
        Sim {
            a: Adaptive::new(&rules),
            entered: 0.0,
        }
    }

    /// Ten beats of a second, `queued` of them with requests in the
    /// queue, customers coming in at `came` times the rate.
    fn second(sim: &mut Sim, at_s: u64, queued: u32, refusals: u64, came: f64) {
        for beat in 0..10u64 {
            let pressure = Pressure {
                queued: usize::from(beat < u64::from(queued)),
                queue_refusals: refusals,
                ..Pressure::default()
            };
            sim.entered += sim.rate() * came / 10.0;
            let entered = sim.entered as u64;
            sim.a
                .beat(pressure, 100, entered, at_s * 1_000 + beat * 100 + 1);
        }
    }

    #[test]
    fn the_rate_rises_while_the_backends_have_room_and_falls_when_they_are_full() {
        let mut a = adaptive(400.0);
        assert_eq!(a.rate(), 100.0);
        for s in 1..=3 {
            second(&mut a, s, 0, 0, 1.0);
        }
        assert!(a.rate() > 140.0, "{}", a.rate());
        let high = a.rate();
        // Full: queued through the second, and refusals (each second is
        // judged at the next one's first beat).
        second(&mut a, 4, 10, 0, 1.0);
        second(&mut a, 5, 10, 5, 1.0);
        second(&mut a, 6, 0, 5, 1.0);
        assert!(a.rate() < high * 0.7, "{} after {high}", a.rate());
        // Never beyond the bounds.
        for s in 7..60 {
            second(&mut a, s, 0, 5, 1.0);
        }
        assert_eq!(a.rate(), 400.0);
        for s in 60..120 {
            second(&mut a, s, 10, 5 + s, 1.0);
        }
        assert_eq!(a.rate(), 1.0);
    }

    #[test]
    fn a_rate_nobody_uses_yet_is_not_raised() {
        // The backends have room only because the customers let in have
        // not come back yet: a tenth of the rate comes in.
        let mut a = adaptive(400.0);
        for s in 1..=10 {
            second(&mut a, s, 0, 0, 0.1);
        }
        assert_eq!(a.rate(), 100.0);
        // They come: now the room the backends show is worth using.
        for s in 11..=13 {
            second(&mut a, s, 0, 0, 1.0);
        }
        assert!(a.rate() > 140.0, "{}", a.rate());
    }

    #[test]
    fn backends_full_of_earlier_customers_do_not_cut_the_rate_again() {
        let mut a = adaptive(400.0);
        // Full, with customers coming in at the rate: cut once a second
        // (a second is judged at the next one's first beat).
        second(&mut a, 1, 10, 0, 1.0);
        second(&mut a, 2, 10, 0, 1.0);
        second(&mut a, 3, 10, 0, 0.2);
        let cut = a.rate();
        assert!(cut < 70.0, "{cut}");
        // Still full, but few come in now: the backends are busy with
        // customers let in before, the rate stays.
        for s in 4..=10 {
            second(&mut a, s, 10, 0, 0.2);
        }
        assert_eq!(a.rate(), cut);
        // Refusals cut it whatever comes in.
        second(&mut a, 11, 10, 50, 0.2);
        second(&mut a, 12, 10, 60, 0.2);
        assert!(a.rate() < cut, "{} after {cut}", a.rate());
    }

    #[test]
    fn backends_at_their_limits_are_full_before_anything_queues() {
        let busy = Pressure {
            in_flight: 58,
            limit: 64,
            ..Pressure::default()
        };
        assert!(busy.full());
        let room = Pressure {
            in_flight: 30,
            limit: 64,
            ..Pressure::default()
        };
        assert!(!room.full());
    }

    #[test]
    fn nobody_in_line_leaves_the_rate_alone() {
        let mut a = adaptive(400.0).a;
        for beat in 0..100u64 {
            a.beat(
                Pressure {
                    queued: 50,
                    queue_refusals: beat,
                    ..Pressure::default()
                },
                0,
                beat * 10,
                beat * 100 + 1,
            );
        }
        assert_eq!(a.rate(), 100.0);
    }

    #[test]
    fn new_bounds_from_a_reload_move_the_rate_into_them_at_once() {
        let rules = |adaptive: bool, admit_per_s: f64, min_admit_per_s: f64| {
            RoomFile {
                adaptive,
                admit_per_s,
                min_admit_per_s,
                ..RoomFile::default()
            }
            .validate(None)
            .unwrap()
        };
        // Adaptive: starts at a quarter of 40, so 10.
        let mut rate = Adaptive::new(&rules(true, 40.0, 1.0));
        assert_eq!(rate.rate(), 10.0);
        rate.set_bounds(&rules(true, 8.0, 1.0));
        assert_eq!(rate.rate(), 8.0, "above the new bound: down to it");
        rate.set_bounds(&rules(true, 100.0, 20.0));
        assert_eq!(rate.rate(), 20.0, "below the new floor: up to it");
        // Not adaptive: the rate is the bound, whatever it becomes.
        let mut fixed = Adaptive::new(&rules(false, 5.0, 1.0));
        assert_eq!(fixed.rate(), 5.0);
        fixed.set_bounds(&rules(false, 30.0, 1.0));
        assert_eq!(fixed.rate(), 30.0);
    }
}
