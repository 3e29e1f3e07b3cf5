//! Who is on call when: a rotation of people handing over at a local time
//! every so many days in a time zone, and overrides on top (the last one
//! configured wins where two cover the same moment).
//!
//! Shifts are counted in the zone's civil time, not in seconds: a weekly
//! handoff at 09:00 in Paris stays at 09:00 across the change to summer
//! time, when that week is an hour shorter.

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::Timestamp;

#[derive(Debug, Clone)]
pub struct Rotation {
    people: Vec<String>,
    zone: TimeZone,
    start: Date,
    handoff: Time,
    shift_days: i64,
}

impl Rotation {
    /// Errors name the field at fault and why.
    pub fn new(
        people: Vec<String>,
        zone: &str,
        start: &str,
        handoff: &str,
        shift_days: u32,
    ) -> Result<Rotation, (&'static str, String)> {
        if people.is_empty() {
            return Err(("rotation", "needs at least one person".into()));
        }
        let zone = TimeZone::get(zone).map_err(|err| {
            (
                "time_zone",
                format!("{zone:?} is not a known time zone: {err}"),
            )
        })?;
        let start: Date = start.parse().map_err(|err| {
            (
                "start",
                format!("{start:?} is not a date YYYY-MM-DD: {err}"),
            )
        })?;
        let handoff: Time = handoff
            .parse()
            .map_err(|err| ("handoff", format!("{handoff:?} is not a time HH:MM: {err}")))?;
        if !(1..=366).contains(&shift_days) {
            return Err(("shift_days", "must be 1 to 366".into()));
        }
        Ok(Rotation {
            people,
            zone,
            start,
            handoff,
            shift_days: i64::from(shift_days),
        })
    }

    /// Whose shift it is at `now_ms`; None before the first handoff.
    pub fn on_call(&self, now_ms: i64) -> Option<&str> {
        let now = Timestamp::from_millisecond(now_ms)
            .ok()?
            .to_zoned(self.zone.clone());
        let mut day = now.date();
        // Before the handoff, it is still the previous day's shift.
        if now.time() < self.handoff {
            day = day.yesterday().ok()?;
        }
        let days = i64::from(self.start.until(day).ok()?.get_days());
        if days < 0 {
            return None;
        }
        let shift = days / self.shift_days;
        let at = usize::try_from(shift % self.people.len() as i64).ok()?;
        Some(&self.people[at])
    }
}

/// Someone else on call from `from_ms` until `to_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Override {
    pub person: String,
    pub from_ms: i64,
    pub to_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Schedule {
    rotation: Rotation,
    overrides: Vec<Override>,
}

impl Schedule {
    pub fn new(rotation: Rotation, overrides: Vec<Override>) -> Schedule {
        Schedule {
            rotation,
            overrides,
        }
    }

    /// Who is on call at `now_ms`: an override covering it (the last
    /// configured), else the rotation.
    pub fn on_call(&self, now_ms: i64) -> Option<&str> {
        self.overrides
            .iter()
            .rev()
            .find(|o| o.from_ms <= now_ms && now_ms < o.to_ms)
            .map(|o| o.person.as_str())
            .or_else(|| self.rotation.on_call(now_ms))
    }

    /// Everyone it may page.
    pub fn people(&self) -> impl Iterator<Item = &str> {
        self.rotation
            .people
            .iter()
            .map(String::as_str)
            .chain(self.overrides.iter().map(|o| o.person.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn weekly() -> Rotation {
        Rotation::new(
            vec!["ana".into(), "ben".into(), "cleo".into()],
            "Europe/Paris",
            "2026-03-16",
            "09:00",
            7,
        )
        .unwrap()
    }

    #[test]
    fn shifts_hand_over_at_the_local_time_across_a_clock_change() {
        let r = weekly();
        // Before the first handoff: nobody.
        assert_eq!(r.on_call(ms("2026-03-16T07:59:00Z")), None);
        // 09:00 in Paris is 08:00 UTC in winter.
        assert_eq!(r.on_call(ms("2026-03-16T08:00:00Z")), Some("ana"));
        assert_eq!(r.on_call(ms("2026-03-23T07:59:59Z")), Some("ana"));
        assert_eq!(r.on_call(ms("2026-03-23T08:00:00Z")), Some("ben"));
        // Summer time from 29 March: 09:00 in Paris is 07:00 UTC.
        assert_eq!(r.on_call(ms("2026-03-30T06:59:59Z")), Some("ben"));
        assert_eq!(r.on_call(ms("2026-03-30T07:00:00Z")), Some("cleo"));
        // And round again.
        assert_eq!(r.on_call(ms("2026-04-06T07:00:00Z")), Some("ana"));
    }

    #[test]
    fn an_override_takes_its_hours_and_the_last_one_wins() {
        let schedule = Schedule::new(
            weekly(),
            vec![
                Override {
                    person: "dan".into(),
                    from_ms: ms("2026-03-17T17:00:00Z"),
                    to_ms: ms("2026-03-18T08:00:00Z"),
                },
                Override {
                    person: "eve".into(),
                    from_ms: ms("2026-03-17T22:00:00Z"),
                    to_ms: ms("2026-03-17T23:00:00Z"),
                },
            ],
        );
        assert_eq!(schedule.on_call(ms("2026-03-17T16:59:59Z")), Some("ana"));
        assert_eq!(schedule.on_call(ms("2026-03-17T17:00:00Z")), Some("dan"));
        assert_eq!(schedule.on_call(ms("2026-03-17T22:30:00Z")), Some("eve"));
        assert_eq!(schedule.on_call(ms("2026-03-18T07:59:59Z")), Some("dan"));
        assert_eq!(schedule.on_call(ms("2026-03-18T08:00:00Z")), Some("ana"));
    }

    #[test]
    fn bad_settings_name_their_field() {
        let bad = |zone: &str, start: &str, handoff: &str, days: u32| {
            Rotation::new(vec!["ana".into()], zone, start, handoff, days)
                .unwrap_err()
                .0
        };
        assert_eq!(bad("Nowhere/Town", "2026-01-01", "09:00", 7), "time_zone");
        assert_eq!(bad("UTC", "January", "09:00", 7), "start");
        assert_eq!(bad("UTC", "2026-01-01", "9 o'clock", 7), "handoff");
        assert_eq!(bad("UTC", "2026-01-01", "09:00", 0), "shift_days");
    }
}
