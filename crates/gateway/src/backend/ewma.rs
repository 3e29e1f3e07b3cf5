//! Peak-EWMA latency: an estimate that jumps up at once when a response is
//! slower than expected and decays back slowly, as Finagle and
//! `tower::load::PeakEwma` do. We keep our own because a failed request must
//! count as maximally slow (so a backend that fails fast does not attract
//! traffic), which tower's completion hook cannot express.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub(super) struct PeakEwma {
    estimate_ns: f64,
    updated: Instant,
    decay_ns: f64,
}

impl PeakEwma {
    /// Starts at `initial` so a new backend is neither favoured nor shunned.
    pub(super) fn new(initial: Duration, decay: Duration, now: Instant) -> Self {
        PeakEwma {
            estimate_ns: initial.as_nanos() as f64,
            updated: now,
            decay_ns: decay.as_nanos().max(1) as f64,
        }
    }

    pub(super) fn observe(&mut self, rtt: Duration, now: Instant) {
        let rtt_ns = rtt.as_nanos() as f64;
        if rtt_ns > self.estimate_ns {
            self.estimate_ns = rtt_ns;
        } else {
            let elapsed = now.saturating_duration_since(self.updated).as_nanos() as f64;
            let keep = (-elapsed / self.decay_ns).exp();
            self.estimate_ns = self.estimate_ns * keep + rtt_ns * (1.0 - keep);
        }
        self.updated = now;
    }

    /// The estimate in ms, decayed toward zero by the time since the last
    /// observation, so a backend that got no traffic is tried again.
    pub(super) fn estimate_ms(&self, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.updated).as_nanos() as f64;
        self.estimate_ns * (-elapsed / self.decay_ns).exp() / 1e6
    }

    pub(super) fn set_decay(&mut self, decay: Duration) {
        self.decay_ns = decay.as_nanos().max(1) as f64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DECAY: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn slow_answers_raise_the_estimate_at_once_and_fast_ones_lower_it_slowly() {
        let mut ewma = PeakEwma::new(Duration::from_millis(5), DECAY, Instant::now());
        ewma.observe(Duration::from_millis(100), Instant::now());
        assert!((ewma.estimate_ms(Instant::now()) - 100.0).abs() < 0.01);
        tokio::time::advance(Duration::from_millis(100)).await;
        ewma.observe(Duration::from_millis(1), Instant::now());
        let after_one_fast = ewma.estimate_ms(Instant::now());
        assert!(after_one_fast > 90.0, "{after_one_fast}");
        for _ in 0..100 {
            tokio::time::advance(Duration::from_millis(100)).await;
            ewma.observe(Duration::from_millis(1), Instant::now());
        }
        let later = ewma.estimate_ms(Instant::now());
        assert!(later < 50.0, "{later}");
    }
}
