//! One backend (a shop) as the gateway sees it: health from active checks,
//! ejection from live traffic, latency, load, and slow start after it comes
//! back. The parts are small state machines with their own tests.

mod ejection;
mod ewma;
mod health;
mod limit;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

pub(crate) use ejection::EjectionRules;
use ejection::Failure;
pub(crate) use limit::LimitRules;
use limit::Limiter;

use crate::config::{BackendSpec, Pool, Settings};
use crate::queue::WaitQueue;
use ejection::Ejection;
use ewma::PeakEwma;
use health::Hysteresis;

/// What one try showed of a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lesson {
    /// It answered, after `rtt`, with a status that is not a 5xx.
    Answered { rtt: Duration },
    /// It answered with a status that is not a 5xx, but the gateway
    /// itself stalled while it waited (`crate::stall`): the time it took
    /// says nothing of the backend.
    AnsweredThroughStall,
    /// It answered `503`: full, shedding on purpose, alive.
    Shed,
    /// A connection could not be made in time, but it keeps answering on
    /// the connections it has: busy, not dead.
    Busy,
    /// The connection was refused, or could not be made while it has said
    /// nothing for `hung_after`: nothing reached it.
    Unreachable,
    /// It failed after the request may have reached it: reset, cut off,
    /// a malformed answer, no answer in time, or a 5xx.
    FailedAfterSend,
}

impl Lesson {
    /// What an answer with `status` shows.
    pub(crate) fn of_answer(status: http::StatusCode, rtt: Duration) -> Lesson {
        match status.as_u16() {
            503 => Lesson::Shed,
            500..=599 => Lesson::FailedAfterSend,
            _ => Lesson::Answered { rtt },
        }
    }

    /// What an answer with `status`, awaited from `sent` to `answered`
    /// on this serving thread, shows.
    pub(crate) fn of_timed_answer(
        status: http::StatusCode,
        (sent, answered): (Instant, Instant),
    ) -> Lesson {
        match Lesson::of_answer(status, answered.saturating_duration_since(sent)) {
            Lesson::Answered { .. } if crate::stall::spanned(sent, answered) => {
                Lesson::AnsweredThroughStall
            }
            lesson => lesson,
        }
    }
}

/// What a lesson changed, for the event log and the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Learned {
    /// It was up and is now down.
    pub(crate) marked_down: bool,
    /// It was ejected, for this long.
    pub(crate) ejected_for: Option<Duration>,
}

/// What `/admin/backends` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    Up,
    Down,
    Draining,
    Ejected,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            State::Up => "up",
            State::Down => "down",
            State::Draining => "draining",
            State::Ejected => "ejected",
        }
    }
}

/// A backend's row in `GET /admin/backends`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackendView {
    pub(crate) name: String,
    pub(crate) addr: String,
    pub(crate) pool: Pool,
    pub(crate) state: State,
    pub(crate) inflight: u64,
    /// Its answers that wait on their clients (`Backend::wait_on_client`).
    pub(crate) waiting_on_clients: u64,
    /// Its concurrency limit now.
    pub(crate) limit: u32,
    pub(crate) ewma_ms: f64,
    pub(crate) requests: u64,
    pub(crate) failures: u64,
}

/// What the balancer needs to know of a backend, read under one lock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) untried: bool,
    pub(crate) state: State,
    pub(crate) healthy: bool,
    /// Fewer requests in flight than its limit.
    pub(crate) has_room: bool,
    pub(crate) load: f64,
    pub(crate) weight: f64,
}

impl Sample {
    /// A backend this request already tried: never chosen again.
    pub(crate) const TRIED: Sample = Sample {
        untried: false,
        state: State::Down,
        healthy: false,
        has_room: false,
        load: f64::MAX,
        weight: 0.0,
    };
}

/// A latency a new backend starts with: typical for a shop on loopback.
const INITIAL_LATENCY: Duration = Duration::from_millis(5);
/// The smallest share of traffic a backend in slow start gets.
const SLOW_START_FLOOR: f64 = 0.05;

#[derive(Debug)]
struct Inner {
    health: Hysteresis,
    ejection: Ejection,
    ewma: PeakEwma,
    draining: bool,
    /// When it last came back into service, for slow start; `None` for a
    /// backend that has served since the gateway started.
    back_since: Option<Instant>,
    limiter: Limiter,
}

#[derive(Debug)]
pub(crate) struct Backend {
    pub(crate) spec: BackendSpec,
    /// The name, shared with metric labels.
    pub(crate) label: Arc<str>,
    pub(crate) authority: http::uri::Authority,
    inner: Mutex<Inner>,
    /// Requests it is working on: sent, their answer not yet waiting on
    /// the client (`wait_on_client`).
    inflight: AtomicU64,
    /// Answers of its that wait on their clients: they keep a connection
    /// to it, but not one of its slots.
    waiting_on_clients: AtomicU64,
    /// The concurrency limit: `inflight` never passes it.
    limit: AtomicU32,
    /// When a byte last came from it on any connection, in ms since
    /// `born`: what tells a busy backend from a hung one.
    heard_ms: AtomicU64,
    born: Instant,
    requests: AtomicU64,
    failures: AtomicU64,
    removed: AtomicBool,
    /// Where requests wait when every backend is full; a freed slot of
    /// this backend is handed to them.
    queue: Arc<WaitQueue>,
    /// Itself, to hand itself to a waiting request.
    me: Weak<Backend>,
}

impl Backend {
    /// `fresh` backends (added while the gateway runs) start in slow start.
    pub(crate) fn new(
        spec: BackendSpec,
        settings: &Settings,
        fresh: bool,
        queue: Arc<WaitQueue>,
    ) -> Arc<Backend> {
        let now = Instant::now();
        let authority = http::uri::Authority::try_from(spec.addr.to_string())
            .expect("a socket address is a valid authority");
        Arc::new_cyclic(|me| Backend {
            label: Arc::from(spec.name.as_str()),
            spec,
            authority,
            inner: Mutex::new(Inner {
                health: Hysteresis::new(),
                ejection: Ejection::default(),
                ewma: PeakEwma::new(INITIAL_LATENCY, settings.ewma_decay, now),
                draining: false,
                back_since: fresh.then_some(now),
                limiter: Limiter::new(&settings.limit),
            }),
            inflight: AtomicU64::new(0),
            waiting_on_clients: AtomicU64::new(0),
            limit: AtomicU32::new(settings.limit.initial),
            heard_ms: AtomicU64::new(0),
            born: now,
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            removed: AtomicBool::new(false),
            queue,
            me: me.clone(),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.spec.name
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // Poisoning needs a panic while holding the lock, and nothing in
        // here panics; carry on with the data rather than take the
        // gateway down.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn state(&self, now: Instant) -> State {
        Self::state_of(&self.inner(), now)
    }

    fn state_of(inner: &Inner, now: Instant) -> State {
        if inner.draining {
            State::Draining
        } else if !inner.health.is_up() {
            State::Down
        } else if inner.ejection.is_ejected(now) {
            State::Ejected
        } else {
            State::Up
        }
    }

    /// State, health, load and weight at once.
    pub(crate) fn sample(&self, now: Instant, slow_start: Duration) -> Sample {
        let inner = self.inner();
        let weight = Self::weight_of(&inner, now, slow_start);
        let inflight = self.inflight.load(Ordering::Relaxed);
        let has_room = inflight < u64::from(self.limit.load(Ordering::Relaxed));
        // A full backend is never compared by load, and the estimate's
        // decay (an exp) is most of a look: when every backend is full,
        // as through a surge, each request looks twice before it queues.
        let load = if has_room {
            (inner.ewma.estimate_ms(now) + 0.01) * (inflight + 1) as f64 / weight
        } else {
            f64::MAX
        };
        Sample {
            untried: true,
            state: Self::state_of(&inner, now),
            healthy: !inner.draining && inner.health.is_up(),
            has_room,
            load,
            weight,
        }
    }

    /// Its share of traffic during slow start, 0.05 to 1.
    #[cfg(test)]
    pub(crate) fn weight(&self, now: Instant, slow_start: Duration) -> f64 {
        Self::weight_of(&self.inner(), now, slow_start)
    }

    fn weight_of(inner: &Inner, now: Instant, slow_start: Duration) -> f64 {
        let since = match (inner.back_since, inner.ejection.ejected_until()) {
            (Some(back), Some(ejected)) => Some(back.max(ejected)),
            (back, ejected) => back.or(ejected),
        };
        match since {
            Some(since) if !slow_start.is_zero() && now >= since => {
                let ramp = now.duration_since(since).as_secs_f64() / slow_start.as_secs_f64();
                ramp.clamp(SLOW_START_FLOOR, 1.0)
            }
            _ => 1.0,
        }
    }

    /// Expected cost of one more request: latency × queue, divided by the
    /// slow-start weight (lower is better).
    #[cfg(test)]
    pub(crate) fn load(&self, now: Instant, slow_start: Duration) -> f64 {
        self.sample(now, slow_start).load
    }

    /// Takes one of its slots if it has room (fewer requests in flight
    /// than its limit); give it back with `finish`.
    pub(crate) fn try_start(&self) -> bool {
        let limit = u64::from(self.limit.load(Ordering::Relaxed));
        self.inflight
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// A request is written to it (on a slot it holds).
    pub(crate) fn sending(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Gives back a slot; a request waiting for one gets it.
    pub(crate) fn finish(&self) {
        self.inflight.fetch_sub(1, Ordering::SeqCst);
        self.offer_room();
    }

    /// The answer to a request on one of its slots now waits on the
    /// client, not on it: the slot is given back (a waiting request gets
    /// it), while the answer keeps its connection. At most `most` answers
    /// wait so at once; past that, one keeps its slot. Returns whether
    /// the slot was given back.
    ///
    /// Why: a slot stands for work the backend does, and the limiter
    /// learns from its latency to the answer's head. An answer the client
    /// takes slowly (a large page on a slow phone, or an HTTP/2 client
    /// that opens no window) costs the backend nothing more, yet held its
    /// slot for up to `client_send_ms`; enough of them held every slot,
    /// and with no answers coming the adaptive limit, once it fell below
    /// them, never rose again (BENCHMARKS.md, eleventh session).
    pub(crate) fn wait_on_client(&self, most: u32) -> bool {
        let set_aside = self
            .waiting_on_clients
            .fetch_update(Ordering::SeqCst, Ordering::Relaxed, |n| {
                (n < u64::from(most)).then_some(n + 1)
            })
            .is_ok();
        if set_aside {
            self.finish();
        }
        set_aside
    }

    /// An answer that waited on its client is done.
    pub(crate) fn client_done(&self) {
        self.waiting_on_clients.fetch_sub(1, Ordering::SeqCst);
    }

    /// Gives back a slot without looking for waiters (the queue does that
    /// itself, under its lock).
    pub(crate) fn finish_quietly(&self) {
        self.inflight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Hands whatever room it has to waiting requests.
    pub(crate) fn offer_room(&self) {
        if self.queue.waiting() > 0 {
            if let Some(me) = self.me.upgrade() {
                self.queue.hand_over(&me);
            }
        }
    }

    /// A byte came from it: it lives.
    pub(crate) fn heard(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.born).as_millis() as u64;
        self.heard_ms.store(ms, Ordering::Relaxed);
    }

    /// How long since a byte last came from it (since it was added, if
    /// none has).
    pub(crate) fn silent_for(&self, now: Instant) -> Duration {
        let heard = self.born + Duration::from_millis(self.heard_ms.load(Ordering::Relaxed));
        now.saturating_duration_since(heard)
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn inflight(&self) -> u64 {
        self.inflight.load(Ordering::Relaxed)
    }

    pub(crate) fn waiting_on_clients(&self) -> u64 {
        self.waiting_on_clients.load(Ordering::Relaxed)
    }

    /// Takes in what one try showed of this backend — its latency, a
    /// failure, a refused connection — and returns what that changed. The
    /// one place an outcome reaches the balancer's view of a backend.
    pub(crate) fn learn(
        &self,
        lesson: Lesson,
        (rules, limits): (&EjectionRules, &LimitRules),
        now: Instant,
    ) -> Learned {
        let before = self.limit();
        let learned = self.learn_locked(lesson, (rules, limits), now);
        // More room: requests waiting in the queue may have it (outside
        // the backend's lock: the queue's lock comes first).
        if self.limit() > before {
            self.offer_room();
        }
        learned
    }

    fn learn_locked(
        &self,
        lesson: Lesson,
        (rules, limits): (&EjectionRules, &LimitRules),
        now: Instant,
    ) -> Learned {
        let mut inner = self.inner();
        let mut learned = Learned::default();
        let in_flight = self.inflight.load(Ordering::Relaxed);
        let failure = match lesson {
            Lesson::Answered { rtt } => {
                inner.ewma.observe(rtt, now);
                inner.ejection.record_success();
                let limit = inner.limiter.answered((rtt, now), in_flight, limits);
                self.limit.store(limit, Ordering::Relaxed);
                return learned;
            }
            Lesson::AnsweredThroughStall => {
                inner.ejection.record_success();
                return learned;
            }
            // A shop sheds load with 503 on purpose: make it look slow so
            // traffic moves elsewhere, and give it fewer requests at once,
            // but never eject it for that.
            Lesson::Shed | Lesson::Busy => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                inner.ewma.observe(rules.penalty, now);
                let limit = inner.limiter.dropped(limits);
                self.limit.store(limit, Ordering::Relaxed);
                return learned;
            }
            // Nothing reached it: the process is gone. Out of rotation at
            // once; `rise` passing checks bring it back.
            Lesson::Unreachable => {
                learned.marked_down = inner.health.force_down();
                Failure::Connect
            }
            Lesson::FailedAfterSend => {
                let limit = inner.limiter.dropped(limits);
                self.limit.store(limit, Ordering::Relaxed);
                Failure::ServerError
            }
        };
        // A failure counts as maximally slow, so a backend that fails fast
        // does not attract traffic.
        self.failures.fetch_add(1, Ordering::Relaxed);
        inner.ewma.observe(rules.penalty, now);
        learned.ejected_for = inner.ejection.record_failure(failure, rules, now);
        learned
    }

    /// Records an active check; returns the new health when it changed.
    pub(crate) fn record_check(
        &self,
        ok: bool,
        rise: u32,
        fall: u32,
        now: Instant,
    ) -> Option<bool> {
        let mut inner = self.inner();
        let changed = inner.health.record(ok, rise, fall);
        if changed == Some(true) {
            inner.back_since = Some(now);
        }
        drop(inner);
        if changed == Some(true) {
            self.offer_room();
        }
        changed
    }

    pub(crate) fn start_draining(&self) {
        self.inner().draining = true;
    }

    pub(crate) fn set_decay(&self, decay: Duration) {
        self.inner().ewma.set_decay(decay);
    }

    pub(crate) fn mark_removed(&self) {
        self.removed.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.removed.load(Ordering::Relaxed)
    }

    pub(crate) fn view(&self, now: Instant) -> BackendView {
        BackendView {
            name: self.spec.name.clone(),
            addr: self.spec.addr.to_string(),
            pool: self.spec.pool,
            state: self.state(now),
            inflight: self.inflight(),
            waiting_on_clients: self.waiting_on_clients(),
            limit: self.limit(),
            ewma_ms: (self.inner().ewma.estimate_ms(now) * 1000.0).round() / 1000.0,
            requests: self.requests.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const LIMITS: crate::backend::LimitRules = crate::backend::LimitRules {
        adaptive: true,
        initial: 32,
        min: 4,
        max: 256,
        max_waiting_on_clients: 256,
    };

    fn backend(fresh: bool) -> Arc<Backend> {
        let spec = BackendSpec {
            name: "shop-1".into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            pool: Pool::Primary,
        };
        Backend::new(
            spec,
            &Config::default().settings,
            fresh,
            Arc::new(crate::queue::WaitQueue::default()),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_ramps_a_returning_backend_from_a_trickle_to_full_share() {
        let window = Duration::from_secs(10);
        assert_eq!(backend(false).weight(Instant::now(), window), 1.0);
        let returning = backend(true);
        assert_eq!(returning.weight(Instant::now(), window), SLOW_START_FLOOR);
        tokio::time::advance(Duration::from_secs(5)).await;
        let half = returning.weight(Instant::now(), window);
        assert!((half - 0.5).abs() < 1e-6, "{half}");
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(returning.weight(Instant::now(), window), 1.0);
        assert_eq!(returning.weight(Instant::now(), Duration::ZERO), 1.0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backend_back_from_ejection_ramps_up_again() {
        let window = Duration::from_secs(10);
        let backend = backend(false);
        let rules = EjectionRules {
            after_connect_failures: 1,
            after_5xx: 3,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            penalty: Duration::from_secs(5),
        };
        for _ in 0..2 {
            backend.learn(Lesson::FailedAfterSend, (&rules, &LIMITS), Instant::now());
        }
        let learned = backend.learn(Lesson::FailedAfterSend, (&rules, &LIMITS), Instant::now());
        assert_eq!(
            learned,
            Learned {
                marked_down: false,
                ejected_for: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(backend.state(Instant::now()), State::Ejected);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(backend.state(Instant::now()), State::Up);
        assert_eq!(backend.weight(Instant::now(), window), SLOW_START_FLOOR);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(backend.weight(Instant::now(), window), 1.0);
    }

    /// Rules under which no test here gets a backend ejected.
    fn never_ejecting() -> EjectionRules {
        EjectionRules {
            after_connect_failures: 100,
            after_5xx: 100,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            penalty: Duration::from_secs(5),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn errors_make_a_fast_failing_backend_look_slow() {
        let (good, bad) = (backend(false), backend(false));
        let rules = never_ejecting();
        let now = Instant::now();
        let answered = Lesson::of_answer(http::StatusCode::OK, Duration::from_millis(20));
        good.learn(answered, (&rules, &LIMITS), now);
        bad.learn(Lesson::FailedAfterSend, (&rules, &LIMITS), now);
        assert!(bad.load(now, Duration::ZERO) > 100.0 * good.load(now, Duration::ZERO));
    }

    /// Answers awaited while the gateway's own thread was frozen (its CPU
    /// quota spent) are late for the gateway's sake, not the shop's: they
    /// leave the limit where it was, where the same delays seen as the
    /// shop's own cut it.
    #[test]
    fn answers_awaited_across_the_gateways_own_stall_leave_the_limit_alone() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::spawn(crate::stall::watch(Default::default()));
            let _awaiting = crate::stall::awaiting();
            tokio::time::sleep(Duration::from_millis(20)).await;
            let rules = never_ejecting();
            let (through_stall, slow) = (backend(false), backend(false));
            // Every slot in use, so the limiter listens and learns no new
            // usual latency (it learns that while the backend has room).
            let fill = |backend: &Backend| while backend.try_start() {};
            let usual = Lesson::Answered {
                rtt: Duration::from_millis(1),
            };
            for backend in [&through_stall, &slow] {
                fill(backend);
                backend.learn(usual, (&rules, &LIMITS), Instant::now());
                fill(backend);
            }
            let before = through_stall.limit();
            let sent = Instant::now();
            std::thread::sleep(Duration::from_millis(30));
            let lesson = Lesson::of_timed_answer(http::StatusCode::OK, (sent, Instant::now()));
            assert_eq!(lesson, Lesson::AnsweredThroughStall);
            let late = Lesson::Answered {
                rtt: Duration::from_millis(30),
            };
            for _ in 0..30 {
                through_stall.learn(lesson, (&rules, &LIMITS), Instant::now());
                slow.learn(late, (&rules, &LIMITS), Instant::now());
            }
            assert_eq!(through_stall.limit(), before);
            // Seen as the shop's own, they shrink it (once: the limit
            // shrinks at most once in `limit::SHRINK_EVERY`).
            assert!(slow.limit() < before, "{before} -> {}", slow.limit());
            // A 503 is a shed whatever the gateway went through.
            let shed = Lesson::of_timed_answer(
                http::StatusCode::SERVICE_UNAVAILABLE,
                (sent, Instant::now()),
            );
            assert_eq!(shed, Lesson::Shed);
        });
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_connection_takes_a_backend_down_and_a_shed_503_never_ejects() {
        let rules = EjectionRules {
            after_connect_failures: 1,
            after_5xx: 1,
            base: Duration::from_secs(1),
            max: Duration::from_secs(30),
            penalty: Duration::from_secs(5),
        };
        let shedding = backend(false);
        for _ in 0..10 {
            let shed = Lesson::of_answer(http::StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO);
            assert_eq!(
                shedding.learn(shed, (&rules, &LIMITS), Instant::now()),
                Learned::default()
            );
        }
        assert_eq!(shedding.state(Instant::now()), State::Up);
        let gone = backend(false);
        let learned = gone.learn(Lesson::Unreachable, (&rules, &LIMITS), Instant::now());
        assert!(learned.marked_down);
        assert_eq!(gone.state(Instant::now()), State::Down);
        assert!(
            !gone
                .learn(Lesson::Unreachable, (&rules, &LIMITS), Instant::now())
                .marked_down
        );
    }
}
