//! Passive outlier ejection: failures seen on live traffic take a backend
//! out at once, for a time that doubles with each ejection in a row (so a
//! flapping backend is tried less and less often) and resets once it has
//! behaved for as long as the longest ejection.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Clone, Default)]
pub(super) struct Ejection {
    connect_failures: u32,
    server_errors: u32,
    until: Option<Instant>,
    /// Ejections in a row, for the back-off.
    streak: u32,
    last_ejected: Option<Instant>,
}

/// What made a backend look bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Connect,
    ServerError,
}

/// The thresholds and back-off, from the settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EjectionRules {
    pub(crate) after_connect_failures: u32,
    pub(crate) after_5xx: u32,
    pub(crate) base: Duration,
    pub(crate) max: Duration,
    /// The latency a failure counts as (the upstream timeout): maximally
    /// slow.
    pub(crate) penalty: Duration,
}

impl Ejection {
    pub(super) fn is_ejected(&self, now: Instant) -> bool {
        self.until.is_some_and(|until| now < until)
    }

    pub(super) fn ejected_until(&self) -> Option<Instant> {
        self.until
    }

    /// Records a failure; returns the ejection's length when it ejects.
    pub(super) fn record_failure(
        &mut self,
        failure: Failure,
        rules: &EjectionRules,
        now: Instant,
    ) -> Option<Duration> {
        if self.is_ejected(now) {
            return None;
        }
        let (count, threshold) = match failure {
            Failure::Connect => (&mut self.connect_failures, rules.after_connect_failures),
            Failure::ServerError => (&mut self.server_errors, rules.after_5xx),
        };
        *count += 1;
        if *count < threshold {
            return None;
        }
        self.connect_failures = 0;
        self.server_errors = 0;
        // Well-behaved for longer than the longest ejection: start over.
        if self
            .last_ejected
            .is_some_and(|last| now.saturating_duration_since(last) > rules.max + rules.max)
        {
            self.streak = 0;
        }
        let factor = 1u32 << self.streak.min(16);
        let length = rules.base.saturating_mul(factor).min(rules.max);
        self.streak += 1;
        self.until = Some(now + length);
        self.last_ejected = Some(now);
        Some(length)
    }

    pub(super) fn record_success(&mut self) {
        self.connect_failures = 0;
        self.server_errors = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: EjectionRules = EjectionRules {
        after_connect_failures: 1,
        after_5xx: 3,
        base: Duration::from_secs(1),
        max: Duration::from_secs(4),
        penalty: Duration::from_secs(5),
    };

    #[tokio::test(start_paused = true)]
    async fn back_off_doubles_up_to_the_maximum_then_resets_after_good_behaviour() {
        let mut ejection = Ejection::default();
        let mut lengths = Vec::new();
        for _ in 0..5 {
            let length = ejection.record_failure(Failure::Connect, &RULES, Instant::now());
            lengths.push(length.expect("a connect failure ejects at once"));
            assert!(ejection.is_ejected(Instant::now()));
            assert_eq!(
                ejection.record_failure(Failure::Connect, &RULES, Instant::now()),
                None,
                "no ejection while ejected"
            );
            tokio::time::advance(length.unwrap_or_default()).await;
            assert!(!ejection.is_ejected(Instant::now()));
        }
        let secs: Vec<u64> = lengths.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 4, 4]);
        tokio::time::advance(Duration::from_secs(9)).await;
        let fresh = ejection.record_failure(Failure::Connect, &RULES, Instant::now());
        assert_eq!(fresh, Some(Duration::from_secs(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn server_errors_eject_only_in_a_row() {
        let mut ejection = Ejection::default();
        let now = Instant::now();
        let mut fail = || ejection.record_failure(Failure::ServerError, &RULES, now);
        assert_eq!([fail(), fail()], [None, None]);
        ejection.record_success();
        let mut fail = || ejection.record_failure(Failure::ServerError, &RULES, now);
        assert_eq!([fail(), fail()], [None, None], "a success resets the count");
        assert!(fail().is_some(), "the third in a row ejects");
    }
}
