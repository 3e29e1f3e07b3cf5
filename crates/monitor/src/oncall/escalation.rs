//! One incident's escalation, as a state machine with no clock of its own:
//! every call is given the time, so every rule is tested on times the test
//! chooses.
//!
//! - Level 1 is paged when the incident opens.
//! - Without an acknowledgement, the next level is paged when the current
//!   level's delay has passed; after the last level the policy starts
//!   again from level 1, `repeat` times, then stops (and says so).
//! - A page that could not be delivered (a channel that still failed after
//!   its retries) pages the next level at once: waiting out the delay for
//!   someone who was never told helps nobody.
//! - An acknowledgement stops the escalation. It lapses after the ack
//!   timeout; if the incident is still open, the level acknowledged is
//!   paged again and escalation resumes from there.
//! - Resolution ends it; everyone paged is told.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::config::Policy;

/// How an acknowledgement came.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Api,
    Dashboard,
    /// The signed link in a notification.
    Link,
    Cli,
}

/// Why a level is paged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "why")]
pub enum PageWhy {
    Opened,
    /// The previous level did not acknowledge within its delay.
    NotAcknowledged {
        after_s: u64,
    },
    /// A page of the previous level could not be delivered.
    DeliveryFailed {
        channel: String,
    },
    /// An acknowledgement lapsed with the incident still open.
    AcknowledgementLapsed {
        by: String,
    },
}

/// What the escalation asks of the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Page this level (0-based) of this round (0-based).
    Page {
        level: usize,
        round: u32,
        why: PageWhy,
    },
    /// Every level of every round was paged and nobody acknowledged.
    Exhausted { rounds: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ack {
    pub by: String,
    pub via: Via,
    pub at_ms: i64,
    pub until_ms: i64,
}

/// Why an acknowledgement was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckRefusal {
    Resolved,
}

#[derive(Debug)]
pub struct Escalation {
    pub incident: i64,
    pub title: String,
    policy: Arc<Policy>,
    level: usize,
    round: u32,
    /// When the next level is due without an acknowledgement; None once
    /// the policy is exhausted.
    next_at_ms: Option<i64>,
    ack: Option<Ack>,
    ack_timeout: Duration,
    /// Everyone paged so far, to be told of the resolution.
    paged: BTreeSet<String>,
    resolved: bool,
}

impl Escalation {
    /// The incident opened at `now_ms`: level 1 is paged at once.
    pub fn open(
        incident: i64,
        title: String,
        policy: Arc<Policy>,
        ack_timeout: Duration,
        now_ms: i64,
    ) -> (Escalation, Step) {
        let first_delay = delay(&policy, 0);
        let escalation = Escalation {
            incident,
            title,
            policy,
            level: 0,
            round: 0,
            next_at_ms: Some(now_ms + first_delay),
            ack: None,
            ack_timeout,
            paged: BTreeSet::new(),
            resolved: false,
        };
        let step = Step::Page {
            level: 0,
            round: 0,
            why: PageWhy::Opened,
        };
        (escalation, step)
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn acknowledged(&self) -> Option<&Ack> {
        self.ack.as_ref()
    }

    /// When `tick` next has something to do, if ever.
    pub fn due_at_ms(&self) -> Option<i64> {
        if self.resolved {
            return None;
        }
        match &self.ack {
            Some(ack) => Some(ack.until_ms),
            None => self.next_at_ms,
        }
    }

    /// What is due at `now_ms`, if anything.
    pub fn tick(&mut self, now_ms: i64) -> Option<Step> {
        if self.resolved {
            return None;
        }
        if let Some(ack) = &self.ack {
            if now_ms < ack.until_ms {
                return None;
            }
            let by = ack.by.clone();
            self.ack = None;
            self.next_at_ms = Some(now_ms + delay(&self.policy, self.level));
            return Some(Step::Page {
                level: self.level,
                round: self.round,
                why: PageWhy::AcknowledgementLapsed { by },
            });
        }
        let due = self.next_at_ms?;
        if now_ms < due {
            return None;
        }
        let after_s = delay(&self.policy, self.level) as u64 / 1000;
        Some(self.advance(now_ms, PageWhy::NotAcknowledged { after_s }))
    }

    /// A page of `level` in `round` could not be delivered on `channel`:
    /// the next level at once, unless the escalation has moved on or
    /// someone acknowledged meanwhile.
    pub fn delivery_failed(
        &mut self,
        level: usize,
        round: u32,
        channel: &str,
        now_ms: i64,
    ) -> Option<Step> {
        let current = level == self.level && round == self.round;
        if self.resolved || self.ack.is_some() || !current || self.next_at_ms.is_none() {
            return None;
        }
        Some(self.advance(
            now_ms,
            PageWhy::DeliveryFailed {
                channel: channel.to_string(),
            },
        ))
    }

    fn advance(&mut self, now_ms: i64, why: PageWhy) -> Step {
        self.level += 1;
        if self.level == self.policy.levels.len() {
            self.level = 0;
            self.round += 1;
            if self.round > self.policy.repeat {
                self.next_at_ms = None;
                return Step::Exhausted { rounds: self.round };
            }
        }
        self.next_at_ms = Some(now_ms + delay(&self.policy, self.level));
        Step::Page {
            level: self.level,
            round: self.round,
            why,
        }
    }

    /// Someone acknowledged: escalation stops until it lapses. A second
    /// acknowledgement (by anyone) renews it.
    pub fn acknowledge(&mut self, by: &str, via: Via, now_ms: i64) -> Result<&Ack, AckRefusal> {
        if self.resolved {
            return Err(AckRefusal::Resolved);
        }
        Ok(self.ack.insert(Ack {
            by: by.to_string(),
            via,
            at_ms: now_ms,
            until_ms: now_ms + self.ack_timeout.as_millis() as i64,
        }))
    }

    /// Everyone paged so far.
    pub fn paged(&self) -> Vec<String> {
        self.paged.iter().cloned().collect()
    }

    pub fn record_paged(&mut self, names: impl IntoIterator<Item = String>) {
        self.paged.extend(names);
    }

    /// The incident is over: whom to tell.
    pub fn resolve(&mut self) -> Vec<String> {
        self.resolved = true;
        self.paged.iter().cloned().collect()
    }
}

fn delay(policy: &Policy, level: usize) -> i64 {
    policy.levels[level].delay.as_millis() as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oncall::config::{Level, Target};

    fn policy(delays_s: &[u64], repeat: u32) -> Arc<Policy> {
        Arc::new(Policy {
            name: "p".into(),
            levels: delays_s
                .iter()
                .enumerate()
                .map(|(i, d)| Level {
                    targets: vec![Target::Person(format!("level-{i}"))],
                    delay: Duration::from_secs(*d),
                })
                .collect(),
            repeat,
        })
    }

    const HALF_HOUR: Duration = Duration::from_secs(1800);

    fn page(level: usize, round: u32) -> impl Fn(&Step) -> bool {
        move |step| matches!(step, Step::Page { level: l, round: r, .. } if *l == level && *r == round)
    }

    #[test]
    fn without_an_ack_each_level_is_paged_after_its_delay_then_it_repeats_and_stops() {
        let (mut e, first) = Escalation::open(1, "t".into(), policy(&[60, 120], 1), HALF_HOUR, 0);
        assert!(page(0, 0)(&first));
        assert_eq!(e.tick(59_999), None);
        let second = e.tick(60_000).unwrap();
        assert!(page(1, 0)(&second));
        assert_eq!(
            second,
            Step::Page {
                level: 1,
                round: 0,
                why: PageWhy::NotAcknowledged { after_s: 60 }
            }
        );
        // Level 2's own delay (120 s) before the policy starts again.
        assert_eq!(e.tick(179_999), None);
        assert!(page(0, 1)(&e.tick(180_000).unwrap()));
        assert!(page(1, 1)(&e.tick(240_000).unwrap()));
        assert_eq!(e.tick(360_000), Some(Step::Exhausted { rounds: 2 }));
        assert_eq!(e.tick(10_000_000), None);
        assert_eq!(e.due_at_ms(), None);
    }

    #[test]
    fn an_ack_stops_escalation_until_it_lapses_then_the_level_is_paged_again() {
        let (mut e, _) = Escalation::open(1, "t".into(), policy(&[60, 60, 60], 0), HALF_HOUR, 0);
        assert!(page(1, 0)(&e.tick(60_000).unwrap()));
        e.acknowledge("ana", Via::Link, 70_000).unwrap();
        assert_eq!(e.due_at_ms(), Some(70_000 + 1_800_000));
        // Past level 2's delay: nothing, it is acknowledged.
        assert_eq!(e.tick(200_000), None);
        assert_eq!(e.tick(1_869_999), None);
        // The ack lapses with the incident open: level 2 again.
        assert_eq!(
            e.tick(1_870_000),
            Some(Step::Page {
                level: 1,
                round: 0,
                why: PageWhy::AcknowledgementLapsed { by: "ana".into() }
            })
        );
        // And escalation resumes from there.
        assert!(page(2, 0)(&e.tick(1_930_000).unwrap()));
    }

    #[test]
    fn a_failed_delivery_pages_the_next_level_at_once_but_not_twice() {
        let (mut e, _) = Escalation::open(1, "t".into(), policy(&[300, 300], 0), HALF_HOUR, 0);
        let next = e.delivery_failed(0, 0, "email", 2_000).unwrap();
        assert_eq!(
            next,
            Step::Page {
                level: 1,
                round: 0,
                why: PageWhy::DeliveryFailed {
                    channel: "email".into()
                }
            }
        );
        // The next level's delay counts from then.
        assert_eq!(e.due_at_ms(), Some(302_000));
        // A late failure report of level 1 changes nothing.
        assert_eq!(e.delivery_failed(0, 0, "slack", 3_000), None);
        // Nor one after an acknowledgement.
        e.acknowledge("ben", Via::Api, 4_000).unwrap();
        assert_eq!(e.delivery_failed(1, 0, "email", 5_000), None);
    }

    #[test]
    fn resolution_ends_it_and_names_everyone_paged() {
        let (mut e, _) = Escalation::open(1, "t".into(), policy(&[60], 0), HALF_HOUR, 0);
        e.record_paged(["ana".to_string(), "ops".to_string()]);
        e.record_paged(["ana".to_string()]);
        assert_eq!(e.resolve(), vec!["ana".to_string(), "ops".to_string()]);
        assert_eq!(e.tick(1_000_000), None);
        assert_eq!(
            e.acknowledge("ana", Via::Cli, 1_000_001),
            Err(AckRefusal::Resolved)
        );
    }
}
