//! Health hysteresis: `fall` failed checks in a row take a backend down,
//! `rise` good ones bring it back, so one lost probe does not flap it.

#[derive(Debug, Clone)]
pub(super) struct Hysteresis {
    up: bool,
    streak: u32,
}

impl Hysteresis {
    /// New backends start up: passive detection covers the first second
    /// and traffic can flow as soon as the gateway starts.
    pub(super) fn new() -> Self {
        Hysteresis {
            up: true,
            streak: 0,
        }
    }

    pub(super) fn is_up(&self) -> bool {
        self.up
    }

    /// Records a check; returns the new state when it changed.
    pub(super) fn record(&mut self, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let needed = if self.up { fall } else { rise };
        if self.streak >= needed {
            self.up = ok;
            self.streak = 0;
            return Some(ok);
        }
        None
    }

    /// Passive evidence that the backend is gone (its connections are
    /// refused): down now, and `rise` good checks to come back.
    pub(super) fn force_down(&mut self) -> bool {
        let changed = self.up;
        self.up = false;
        self.streak = 0;
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::Hysteresis;

    #[test]
    fn needs_fall_failures_in_a_row_to_go_down_and_rise_successes_to_come_back() {
        let mut health = Hysteresis::new();
        assert_eq!(health.record(false, 2, 3), None);
        assert_eq!(health.record(false, 2, 3), None);
        assert_eq!(
            health.record(true, 2, 3),
            None,
            "a success resets the streak"
        );
        assert_eq!(health.record(false, 2, 3), None);
        assert_eq!(health.record(false, 2, 3), None);
        assert_eq!(health.record(false, 2, 3), Some(false));
        assert!(!health.is_up());
        assert_eq!(health.record(true, 2, 3), None);
        assert_eq!(health.record(false, 2, 3), None);
        assert_eq!(health.record(true, 2, 3), None);
        assert_eq!(health.record(true, 2, 3), Some(true));
        assert!(health.is_up());
    }

    #[test]
    fn forced_down_needs_rise_checks_to_return() {
        let mut health = Hysteresis::new();
        assert!(health.force_down());
        assert!(!health.force_down(), "already down");
        assert_eq!(health.record(true, 2, 2), None);
        assert_eq!(health.record(true, 2, 2), Some(true));
    }
}
