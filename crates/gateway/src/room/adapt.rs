//! The admission rate, following what the backends take.
//!
//! The room cannot see the shops' capacity directly, but the gateway's own
//! queue (section 1's concurrency limits in front of each backend) shows
//! it within a beat: requests wait there only when every backend is at
//! its limit. Each second, with customers in line:
//!
//! - requests refused or timed out by the queue, or queued during half
//!   the beats or more: the backends are full, the rate falls by a
//!   quarter (multiplicative decrease, as TCP does on loss);
//! - no request queued at all: the rate rises by a quarter (the backends
//!   show room; a quarter finds capacity within seconds);
//! - queued now and then: it rises by 5 % (probing gently near the edge).
//!
//! Always within `[min_admit_per_s, admit_per_s] / gateways`. The rate
//! starts at a quarter of the bound. With `adaptive = false` it stays at
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
            (max / 4.0).max(min)
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
        self.queued_beats += u32::from(pressure.queued > 0);
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
                    "backends full ({refused} refused by the queue, queued {:.0} % of the second)",
                    queued_share * 100.0
                ),
            )
        } else if queued_share == 0.0 {
            (1.25, "backends have room (nothing queued)".to_string())
        } else {
            (
                1.05,
                format!(
                    "near the backends' capacity (queued {:.0} % of the second)",
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
        assert!(a.rate() > 150.0, "{}", a.rate());
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
    fn nobody_in_line_leaves_the_rate_alone() {
        let mut a = adaptive(400.0);
        for beat in 0..100u64 {
            a.beat(
                Pressure {
                    queued: 50,
                    queue_refusals: beat,
                },
                0,
                beat * 100 + 1,
            );
        }
        assert_eq!(a.rate(), 100.0);
    }
}
