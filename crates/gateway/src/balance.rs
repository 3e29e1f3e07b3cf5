//! The backend set and the choice of a backend for each try.
//!
//! Tiers, in order: available primaries, then available backups (backups
//! take traffic only when no primary can), then, rather than nothing, any
//! backend whose health checks pass even if traffic ejected it. Within a
//! tier: power of two choices on expected cost (peak-EWMA latency × load ÷
//! slow-start weight), or weighted round robin.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::backend::{Backend, BackendView, Sample, State};
use crate::config::{Policy, Pool};
use crate::published::Published;

/// Most state changes kept for `GET /admin/events`.
const EVENTS_KEPT: usize = 512;

/// Whether the backend at an index belongs to a tier of the choice.
type Tier<'a> = &'a dyn Fn(usize) -> bool;

/// The backend for a try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pick {
    /// Its place in the list; it had room when looked at.
    Backend(usize),
    /// The tier that should serve has backends, all at their limit: wait.
    Full,
    /// No backend can serve.
    Nothing,
}

/// What happened to a backend, as `GET /admin/events` names it; and to
/// the waiting room (recorded under the name `waiting-room`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Change {
    Added,
    Up,
    Down,
    Ejected,
    Draining,
    Removed,
    RoomOn,
    RoomOff,
    RoomRate,
    SoldOut,
    SaleEnded,
}

/// A backend changed state (for the admin API and the monitor's timeline).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    /// Unix time in ms.
    pub(crate) at_ms: i64,
    pub(crate) backend: String,
    pub(crate) state: Change,
    pub(crate) reason: String,
}

#[derive(Debug)]
pub(crate) struct Backends {
    list: Published<Vec<Arc<Backend>>>,
    next: AtomicUsize,
    events: Mutex<VecDeque<Event>>,
}

impl Default for Backends {
    fn default() -> Self {
        Backends {
            list: Published::new(Vec::new()),
            next: AtomicUsize::new(0),
            events: Mutex::new(VecDeque::new()),
        }
    }
}

impl Backends {
    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Backend>>> {
        self.list.get()
    }

    fn update(&self, change: impl FnOnce(&mut Vec<Arc<Backend>>)) {
        self.list.update(|list| {
            let mut next = list.clone();
            change(&mut next);
            next
        });
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Backend>> {
        self.snapshot().iter().find(|b| b.name() == name).cloned()
    }

    /// Adds a backend unless one with its name exists.
    pub(crate) fn add(&self, backend: Arc<Backend>) -> bool {
        let mut added = false;
        self.update(|list| {
            if list.iter().all(|b| b.name() != backend.name()) {
                list.push(Arc::clone(&backend));
                added = true;
            }
        });
        if added {
            self.record(backend.name(), Change::Added, backend.spec.addr.to_string());
        }
        added
    }

    /// Takes a backend out of rotation; requests in flight on it finish.
    pub(crate) fn remove(&self, name: &str) -> Option<Arc<Backend>> {
        let mut removed = None;
        self.update(|list| {
            if let Some(at) = list.iter().position(|b| b.name() == name) {
                removed = Some(list.remove(at));
            }
        });
        if let Some(backend) = &removed {
            backend.mark_removed();
            self.record(name, Change::Removed, String::new());
        }
        removed
    }

    pub(crate) fn views(&self) -> Vec<BackendView> {
        let now = Instant::now();
        self.snapshot().iter().map(|b| b.view(now)).collect()
    }

    pub(crate) fn record(&self, backend: &str, state: Change, reason: String) {
        let at_ms = flashguard_telemetry::unix_ms();
        tracing::info!(backend, ?state, reason, "backend state changed");
        let mut events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        if events.len() == EVENTS_KEPT {
            events.pop_front();
        }
        events.push_back(Event {
            at_ms,
            backend: backend.to_string(),
            state,
            reason,
        });
    }

    pub(crate) fn events(&self) -> Vec<Event> {
        let events = self.events.lock().unwrap_or_else(|p| p.into_inner());
        events.iter().cloned().collect()
    }

    /// The backend for the next try, never one in `tried`.
    #[cfg(test)]
    pub(crate) fn pick(
        &self,
        policy: Policy,
        slow_start: Duration,
        tried: &[Arc<Backend>],
    ) -> Option<Arc<Backend>> {
        let list = self.snapshot();
        let tried: Vec<usize> = (0..list.len())
            .filter(|&i| tried.iter().any(|t| Arc::ptr_eq(t, &list[i])))
            .collect();
        match self.pick_in(&list, policy, slow_start, &tried) {
            Pick::Backend(chosen) => Some(Arc::clone(&list[chosen])),
            Pick::Full | Pick::Nothing => None,
        }
    }

    /// Where in `list` (a [`Backends::snapshot`]) the backend for the next
    /// try is, never one at a place in `tried`, among those of the first
    /// tier that can serve which have room under their limit. By place,
    /// not by `Arc`: the request path then never touches a reference count
    /// both serving threads share.
    pub(crate) fn pick_in(
        &self,
        list: &[Arc<Backend>],
        policy: Policy,
        slow_start: Duration,
        tried: &[usize],
    ) -> Pick {
        let now = Instant::now();
        // One look at each backend (one lock), then decide on the copies;
        // kept on the stack for the usual handful of backends.
        const ON_STACK: usize = 16;
        let mut stack = [Sample::TRIED; ON_STACK];
        let mut heap = Vec::new();
        let samples: &mut [Sample] = if list.len() <= ON_STACK {
            &mut stack[..list.len()]
        } else {
            heap.resize(list.len(), Sample::TRIED);
            &mut heap
        };
        for (i, (sample, b)) in samples.iter_mut().zip(list.iter()).enumerate() {
            if !tried.contains(&i) {
                *sample = b.sample(now, slow_start);
            }
        }
        let (backends, samples) = (list, &*samples);
        let available = |pool: Pool| {
            move |i: usize| {
                backends[i].spec.pool == pool && samples[i].untried && samples[i].state == State::Up
            }
        };
        let last_resort = |i: usize| samples[i].untried && samples[i].healthy;
        let tiers: [Tier<'_>; 3] = [
            &available(Pool::Primary),
            &available(Pool::Backup),
            &last_resort,
        ];
        for serves in tiers {
            if !(0..list.len()).any(serves) {
                continue;
            }
            // A full tier waits for room rather than spill to the next:
            // a busy primary is no reason to wake the backups.
            let in_tier = |i: usize| serves(i) && samples[i].has_room;
            let count = (0..list.len()).filter(|&i| in_tier(i)).count();
            // The tier's k-th member.
            let member = |k: usize| {
                (0..list.len())
                    .filter(|&i| in_tier(i))
                    .nth(k % count)
                    .unwrap_or(0)
            };
            let chosen = match (count, policy) {
                (0, _) => return Pick::Full,
                (1, _) => member(0),
                (count, Policy::PeakEwma) => {
                    let a = fastrand::usize(..count);
                    let b = (a + 1 + fastrand::usize(..count - 1)) % count;
                    let (first, second) = (member(a), member(b));
                    if samples[first].load <= samples[second].load {
                        first
                    } else {
                        second
                    }
                }
                (count, Policy::RoundRobin) => {
                    let start = self.next.fetch_add(1, Ordering::Relaxed);
                    // Weighted by slow start: a returning backend's turn is
                    // skipped with the probability it is not yet trusted.
                    (0..count)
                        .map(|step| member(start + step))
                        .find(|&i| fastrand::f64() < samples[i].weight)
                        .unwrap_or_else(|| member(start))
                }
            };
            return Pick::Backend(chosen);
        }
        Pick::Nothing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{EjectionRules, Lesson};
    use crate::config::{BackendSpec, Config};

    const LIMITS: crate::backend::LimitRules = crate::backend::LimitRules {
        adaptive: true,
        initial: 32,
        min: 4,
        max: 256,
        max_waiting_on_clients: 256,
    };

    fn add(backends: &Backends, name: &str, pool: Pool) -> Arc<Backend> {
        let spec = BackendSpec {
            name: name.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            pool,
        };
        let backend = Backend::new(
            spec,
            &Config::default().settings,
            false,
            Arc::new(crate::queue::WaitQueue::default()),
        );
        assert!(backends.add(Arc::clone(&backend)));
        backend
    }

    const RULES: EjectionRules = EjectionRules {
        after_connect_failures: 1,
        after_5xx: 1,
        base: Duration::from_secs(60),
        max: Duration::from_secs(60),
        penalty: Duration::from_secs(1),
    };

    fn eject(backend: &Backend) {
        backend.learn(Lesson::FailedAfterSend, (&RULES, &LIMITS), Instant::now());
    }

    fn mark_down(backend: &Backend) {
        backend.learn(Lesson::Unreachable, (&RULES, &LIMITS), Instant::now());
    }

    #[tokio::test(start_paused = true)]
    async fn backups_serve_only_when_no_primary_can_and_ejected_ones_are_the_last_resort() {
        let backends = Backends::default();
        let p1 = add(&backends, "p1", Pool::Primary);
        let p2 = add(&backends, "p2", Pool::Primary);
        let b1 = add(&backends, "b1", Pool::Backup);
        for policy in [Policy::PeakEwma, Policy::RoundRobin] {
            for _ in 0..50 {
                let chosen = backends.pick(policy, Duration::ZERO, &[]).unwrap();
                assert_eq!(chosen.spec.pool, Pool::Primary);
            }
        }
        let chosen = backends.pick(Policy::PeakEwma, Duration::ZERO, &[Arc::clone(&p1)]);
        assert_eq!(
            chosen.unwrap().name(),
            "p2",
            "a retry goes to another primary"
        );
        eject(&p1);
        mark_down(&p2);
        assert_eq!(
            backends
                .pick(Policy::PeakEwma, Duration::ZERO, &[])
                .unwrap()
                .name(),
            "b1"
        );
        mark_down(&b1);
        let last = backends
            .pick(Policy::PeakEwma, Duration::ZERO, &[])
            .unwrap();
        assert_eq!(last.name(), "p1", "ejected but healthy beats nothing");
        assert!(backends
            .pick(Policy::PeakEwma, Duration::ZERO, &[Arc::clone(&p1)])
            .is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn peak_ewma_prefers_the_faster_backend() {
        let backends = Backends::default();
        let fast = add(&backends, "fast", Pool::Primary);
        let slow = add(&backends, "slow", Pool::Primary);
        let answered = |ms| Lesson::Answered {
            rtt: Duration::from_millis(ms),
        };
        fast.learn(answered(1), (&RULES, &LIMITS), Instant::now());
        slow.learn(answered(200), (&RULES, &LIMITS), Instant::now());
        for _ in 0..20 {
            let chosen = backends
                .pick(Policy::PeakEwma, Duration::ZERO, &[])
                .unwrap();
            assert_eq!(chosen.name(), "fast");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn round_robin_takes_turns() {
        let backends = Backends::default();
        for name in ["a", "b", "c"] {
            add(&backends, name, Pool::Primary);
        }
        let mut counts = std::collections::HashMap::new();
        for _ in 0..300 {
            let chosen = backends
                .pick(Policy::RoundRobin, Duration::ZERO, &[])
                .unwrap();
            *counts.entry(chosen.name().to_string()).or_insert(0) += 1;
        }
        assert_eq!(
            counts.values().copied().collect::<Vec<_>>(),
            [100, 100, 100]
        );
    }
}
