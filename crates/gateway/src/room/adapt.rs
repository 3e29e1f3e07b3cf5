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
//!   (multiplicative decrease, as TCP does on loss; admitted customers
//!   keep the backends busy for a second or two after, so a deeper cut
//!   overshoots);
//! - never full: the rate rises by a fifth (the backends show room; a
//!   fifth finds capacity within seconds);
//! - full now and then: it rises by 5 % (probing gently near the edge).
//!
//! The limits themselves shrink as a backend's latency climbs past twice
//! its usual (`backend::limit`), so "nine tenths of the limits taken"
//! means the backends are as busy as their latency allows.
//!
//! Always within `[min_admit_per_s, admit_per_s] / gateways`. The rate
//! starts at `initial_admit_per_s` (a quarter of the bound unless set). With `adaptive = false` it stays at
//! the bound. A notice is raised when the rate has moved by a quarter
//! since the last one, so the timeline shows the steps, not every beat.

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
    second_start_ms: u64,
    reported: f64,
}

impl Adaptive {
    pub(crate) fn new(rules: &RoomRules) -> Adaptive {
        let gateways = f64::from(rules.gateways);
        let (min, max) = (
            rules.min_admit_per_s / gateways,
            rules.admit_per_s / gateways,
        );
        let rate = if rules.adaptive {
            rules.initial_admit_per_s / gateways
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
            second_start_ms: 0,
            reported: rate,
        }
    }

    pub(crate) fn rate(&self) -> f64 {
        self.rate
    }

    /// One beat's look at the backends; once a second, a step. Returns a
    /// notice when the rate has moved far enough to report.
    pub(crate) fn beat(&mut self, pressure: Pressure, waiting: u64, now_ms: u64) -> Option<String> {
        self.beats += 1;
        self.queued_beats += u32::from(pressure.full());
        if self.second_start_ms == 0 {
            self.second_start_ms = now_ms;
            self.refusals_seen = pressure.queue_refusals;
        }
        if now_ms < self.second_start_ms + 1_000 {
            return None;
        }
        let queued_share = f64::from(self.queued_beats) / f64::from(self.beats);
        let refused = pressure.queue_refusals - self.refusals_seen.min(pressure.queue_refusals);
        self.refusals_seen = pressure.queue_refusals;
        self.beats = 0;
        self.queued_beats = 0;
        self.second_start_ms = now_ms;
        if !self.adaptive || waiting == 0 {
            return None;
        }
        let (factor, why) = if refused > 0 || queued_share >= 0.5 {
            (
                0.75,
                format!(
                    "backends full ({refused} refused by the queue, full {:.0} % of the second)",
                    queued_share * 100.0
                ),
            )
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

    fn adaptive(admit_per_s: f64) -> Adaptive {
        let rules = RoomFile {
            admit_per_s,
            ..RoomFile::default()
        }
        .validate(None)
        .unwrap();
        Adaptive::new(&rules)
    }

    /// Ten beats of a second, `queued` of them with requests in the queue.
    fn second(adaptive: &mut Adaptive, at_s: u64, queued: u32, refusals: u64) {
        for beat in 0..10u64 {
            let pressure = Pressure {
                queued: usize::from(beat < u64::from(queued)),
                queue_refusals: refusals,
                ..Pressure::default()
            };
            adaptive.beat(pressure, 100, at_s * 1_000 + beat * 100 + 1);
        }
    }

    #[test]
    fn the_rate_rises_while_the_backends_have_room_and_falls_when_they_are_full() {
        let mut a = adaptive(400.0);
        assert_eq!(a.rate(), 100.0);
        for s in 1..=3 {
            second(&mut a, s, 0, 0);
        }
        assert!(a.rate() > 140.0, "{}", a.rate());
        let high = a.rate();
        // Full: queued through the second, and refusals (each second is
        // judged at the next one's first beat).
        second(&mut a, 4, 10, 0);
        second(&mut a, 5, 10, 5);
        second(&mut a, 6, 0, 5);
        assert!(a.rate() < high * 0.7, "{} after {high}", a.rate());
        // Never beyond the bounds.
        for s in 7..60 {
            second(&mut a, s, 0, 5);
        }
        assert_eq!(a.rate(), 400.0);
        for s in 60..120 {
            second(&mut a, s, 10, 5 + s);
        }
        assert_eq!(a.rate(), 1.0);
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
        let mut a = adaptive(400.0);
        for beat in 0..100u64 {
            a.beat(
                Pressure {
                    queued: 50,
                    queue_refusals: beat,
                    ..Pressure::default()
                },
                0,
                beat * 100 + 1,
            );
        }
        assert_eq!(a.rate(), 100.0);
    }
}
