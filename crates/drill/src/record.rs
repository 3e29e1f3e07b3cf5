//! The books of a run: per-request outcomes, latency histograms, a
//! per-second timeline, acknowledged orders. One recorder per load thread,
//! merged at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::Instant;

use crate::oracle::Acknowledged;

/// One second of the run.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Second {
    pub second: u64,
    pub offered: u64,
    pub answered: u64,
    pub errors: BTreeMap<String, u64>,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// A chaos action as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosEvent {
    pub at_ms: u64,
    pub action: flashguard_telemetry::ChaosAction,
    pub part: String,
    pub outcome: String,
}

/// The stack's parts as the control API reported them at one second.
#[derive(Debug, Clone, Serialize)]
pub struct PartsSample {
    pub second: u64,
    /// (part, state) from the stack.
    pub parts: Vec<(String, String)>,
    /// (backend, state) as the gateway sees them.
    pub backends: Vec<(String, String)>,
    /// Primary shops up at the gateway: the capacity serving.
    pub shops_serving: usize,
    /// Customers in the gateway's waiting room line, when it has one.
    pub waiting: Option<u64>,
}

/// What the run saw, before the oracle.
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) total: u64,
    pub(crate) succeeded: u64,
    pub(crate) by_design: u64,
    /// Answers from a waiting room: "your place is N, come back then".
    pub(crate) waiting: u64,
    pub(crate) errors: u64,
    pub(crate) errors_by_kind: BTreeMap<String, u64>,
    pub(crate) latency: Histogram<u64>,
    /// The latency of orders acknowledged (201): what served customers saw.
    pub(crate) served: Histogram<u64>,
    pub(crate) room: crate::room::RoomBooks,
    pub(crate) timeline: Vec<Second>,
    pub(crate) chaos: Vec<ChaosEvent>,
    pub(crate) parts: Vec<PartsSample>,
    /// (ms since start, was an error), in completion order.
    pub(crate) outcomes: Vec<(u64, bool)>,
    pub(crate) acknowledged: Vec<Acknowledged>,
    pub(crate) gave_up: u64,
    pub(crate) dropped: u64,
    pub(crate) duration: Duration,
    pub(crate) attack: crate::attack::AttackTally,
}

impl Observed {
    /// Adds another thread's books to these.
    pub(crate) fn absorb(&mut self, other: Observed) {
        self.total += other.total;
        self.succeeded += other.succeeded;
        self.by_design += other.by_design;
        self.waiting += other.waiting;
        self.errors += other.errors;
        for (kind, n) in other.errors_by_kind {
            *self.errors_by_kind.entry(kind).or_default() += n;
        }
        let _ = self.latency.add(&other.latency);
        let _ = self.served.add(&other.served);
        self.room.absorb(other.room);
        for second in other.timeline {
            let mine = Recorder::second(self, second.second as usize);
            mine.offered += second.offered;
            mine.answered += second.answered;
            for (kind, n) in second.errors {
                *mine.errors.entry(kind).or_default() += n;
            }
        }
        self.outcomes.extend(other.outcomes);
        self.acknowledged.extend(other.acknowledged);
        self.gave_up += other.gave_up;
        self.dropped += other.dropped;
    }

    pub(crate) fn set_percentiles(&mut self, per_second: &[Histogram<u64>]) {
        for (n, h) in per_second.iter().enumerate() {
            let second = Recorder::second(self, n);
            if !h.is_empty() {
                second.p50_ms = h.value_at_quantile(0.5) as f64 / 1000.0;
                second.p99_ms = h.value_at_quantile(0.99) as f64 / 1000.0;
            }
        }
    }
}

pub(crate) struct Recorder {
    start: Instant,
    inner: Mutex<Observed>,
    per_second: Mutex<Vec<Histogram<u64>>>,
}

/// How a request ended, for the books.
pub(crate) enum Answer {
    Success,
    ByDesign,
    /// A waiting room's "not yet": deliberate, not an error.
    Waiting,
    Error(String),
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static bounds are valid")
}

impl Recorder {
    pub(crate) fn new(start: Instant) -> Recorder {
        Recorder::with_capacity(start, 0)
    }

    /// A recorder expecting about `requests` requests: their outcomes are
    /// kept in one allocation instead of a growing, copied list.
    pub(crate) fn with_capacity(start: Instant, requests: usize) -> Recorder {
        Recorder {
            start,
            inner: Mutex::new(Observed {
                total: 0,
                succeeded: 0,
                by_design: 0,
                waiting: 0,
                errors: 0,
                errors_by_kind: BTreeMap::new(),
                latency: histogram(),
                served: histogram(),
                room: Default::default(),
                timeline: Vec::new(),
                chaos: Vec::new(),
                parts: Vec::new(),
                outcomes: Vec::with_capacity(requests),
                acknowledged: Vec::new(),
                gave_up: 0,
                dropped: 0,
                duration: Duration::ZERO,
                attack: Default::default(),
            }),
            per_second: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Observed> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn second(observed: &mut Observed, second: usize) -> &mut Second {
        while observed.timeline.len() <= second {
            let n = observed.timeline.len() as u64;
            observed.timeline.push(Second {
                second: n,
                ..Second::default()
            });
        }
        &mut observed.timeline[second]
    }

    pub(crate) fn offered(&self, at: Instant) {
        let second = at.duration_since(self.start).as_secs() as usize;
        Self::second(&mut self.lock(), second).offered += 1;
    }

    /// Records one request; `intended` is when it was meant to be sent, so
    /// queueing in the generator or the system is not hidden.
    pub(crate) fn request(&self, intended: Instant, answer: Answer) {
        let now = Instant::now();
        let micros = now.saturating_duration_since(intended).as_micros() as u64;
        let since = now.duration_since(self.start);
        let second = since.as_secs() as usize;
        let mut observed = self.lock();
        observed.total += 1;
        let _ = observed.latency.record(micros.max(1));
        let is_error = matches!(answer, Answer::Error(_));
        observed.outcomes.push((since.as_millis() as u64, is_error));
        match answer {
            Answer::Success => observed.succeeded += 1,
            Answer::ByDesign => observed.by_design += 1,
            Answer::Waiting => observed.waiting += 1,
            Answer::Error(kind) => {
                observed.errors += 1;
                *observed.errors_by_kind.entry(kind.clone()).or_default() += 1;
                *Self::second(&mut observed, second)
                    .errors
                    .entry(kind)
                    .or_default() += 1;
            }
        }
        if !is_error {
            Self::second(&mut observed, second).answered += 1;
        }
        drop(observed);
        let mut per_second = self.per_second.lock().unwrap_or_else(|p| p.into_inner());
        while per_second.len() <= second {
            per_second.push(histogram());
        }
        let _ = per_second[second].record(micros.max(1));
    }

    /// An order acknowledged, sent at `sent`.
    pub(crate) fn served(&self, sent: Instant) {
        let micros = Instant::now().saturating_duration_since(sent).as_micros() as u64;
        let _ = self.lock().served.record(micros.max(1));
    }

    pub(crate) fn into_parts(self) -> (Observed, Vec<Histogram<u64>>) {
        let per_second = self
            .per_second
            .into_inner()
            .unwrap_or_else(|p| p.into_inner());
        let observed = self.inner.into_inner().unwrap_or_else(|p| p.into_inner());
        (observed, per_second)
    }
}
