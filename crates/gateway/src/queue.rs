//! The queue in front of the backends. When every backend is at its
//! concurrency limit, a request waits here — bounded in length and in
//! time — instead of opening one more connection to a saturated shop (which
//! is how a surge turns into a collapse: HAProxy without `maxconn` collapses
//! the same way).
//!
//! One queue for the whole gateway, shared by its serving threads, first in
//! first out within a millisecond: whichever thread frees a slot on a
//! backend hands it to the oldest waiting request that may go to that
//! backend (a retry never goes back to a backend it already tried) — or,
//! when one waiting on the same thread began waiting at most `NEAR_TURN`
//! after that oldest, to that one. So no request is served after one that
//! began waiting more than a millisecond later, on any thread, and most
//! slots stay on the thread that freed them.
//!
//! Why the millisecond: handing a slot to a request on the other thread
//! wakes that thread (an `eventfd` write, and a sleep and a wake-up of its
//! runtime) about once in ten requests, which made a queued HTTP/2 request
//! cost 2.5 µs more than an unqueued one at two threads (BENCHMARKS.md,
//! tenth session); a woken request on the same thread is a push onto its
//! own run queue. A customer cannot tell a millisecond's order; a queue's
//! waits are seconds.
//!
//! Each thread's waiters are a line of their own (`Lines`), in the order
//! they came; the oldest of all is the oldest of the lines' first ones. A
//! lock is taken only when requests wait (a free slot is taken without
//! it).
//!
//! Lost wake-ups are ruled out by the order of two atomics: a waiter
//! counts itself waiting before it looks for room a last time (under the
//! lock), and a finishing request gives back its slot before it looks for
//! waiters. Either the waiter sees the room, or the finisher sees the
//! waiter.
//!
//! Memory: a waiting request costs its entry here (about 80 bytes) plus
//! its client connection's buffers, which it holds anyway.

use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::backend::Backend;

/// How much later than the oldest waiter a waiter on the freeing thread
/// may have begun and still be handed the slot first.
const NEAR_TURN: Duration = Duration::from_millis(1);

thread_local! {
    /// The line of the serving thread this runs on: its number plus one;
    /// 0 on a thread that serves no client (health checks, admin).
    static LINE: Cell<usize> = const { Cell::new(0) };
}

/// Marks the calling thread as serving thread `number`: its waiters form
/// a line of their own, and slots it frees go to them first.
pub(crate) fn serving_thread(number: usize) {
    LINE.with(|line| line.set(number + 1));
}

fn this_line() -> usize {
    LINE.with(Cell::get)
}

/// A request waiting for a slot.
struct Waiter {
    id: u64,
    since: Instant,
    /// Backends it must not be given (those it already tried), by address.
    excluded: Vec<usize>,
    grant: oneshot::Sender<Arc<Backend>>,
}

/// Each thread's waiters, in the order they came.
#[derive(Default)]
struct Lines {
    lines: Vec<VecDeque<Waiter>>,
}

impl Lines {
    /// Waiters in every line: a sum over one line per serving thread.
    fn len(&self) -> usize {
        self.lines.iter().map(VecDeque::len).sum()
    }

    fn line(&mut self, line: usize) -> &mut VecDeque<Waiter> {
        if self.lines.len() <= line {
            self.lines.resize_with(line + 1, VecDeque::new);
        }
        &mut self.lines[line]
    }
}

/// Why a request got no place in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// `max_waiting` requests wait already.
    Full,
    /// No backend could serve it, full or not: waiting would not help.
    NoBackend,
}

/// What a last look for room found.
pub(crate) enum Look {
    Room(Arc<Backend>),
    Full,
    NoBackend,
}

/// What entering the queue gave: a place, or room found at the last look.
pub(crate) enum Entered {
    Waiting(Place),
    Room(Arc<Backend>),
}

/// A place in the queue; its grant comes on `granted`.
pub(crate) struct Place {
    id: u64,
    line: usize,
    /// When it began waiting.
    pub(crate) since: Instant,
    pub(crate) granted: oneshot::Receiver<Arc<Backend>>,
}

/// A slot handed to a waiter on the thread that freed it, or on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandedTo {
    SameThread,
    OtherThread,
}

impl HandedTo {
    pub(crate) const ALL: [HandedTo; 2] = [HandedTo::SameThread, HandedTo::OtherThread];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            HandedTo::SameThread => "same_thread",
            HandedTo::OtherThread => "other_thread",
        }
    }
}

#[derive(Default)]
pub(crate) struct WaitQueue {
    waiting: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<Lines>,
    /// Requests refused (queue full) or timed out, ever: what the waiting
    /// room reads as "the backends are full".
    refusals: AtomicU64,
    /// Slots handed over, by `HandedTo`.
    handed: [AtomicU64; 2],
}

impl std::fmt::Debug for WaitQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitQueue")
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

/// Identifies a backend in a waiter's exclusions.
pub(crate) fn address(backend: &Backend) -> usize {
    backend as *const Backend as usize
}

/// A waiter a freed slot may go to: its line and place in it.
#[derive(Clone, Copy)]
struct Candidate {
    line: usize,
    at: usize,
    id: u64,
    since: Instant,
}

impl WaitQueue {
    fn entries(&self) -> MutexGuard<'_, Lines> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests waiting now.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A request was refused a place, or its wait ran out.
    pub(crate) fn count_refusal(&self) {
        self.refusals.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refusals(&self) -> u64 {
        self.refusals.load(Ordering::Relaxed)
    }

    /// Slots handed over to waiters `to` the freeing thread or another.
    pub(crate) fn handed(&self, to: HandedTo) -> u64 {
        self.handed[to as usize].load(Ordering::Relaxed)
    }

    /// Takes a place at the back of this thread's line, waiting since
    /// `now`, unless `look` finds a free slot first (looked for after
    /// counting this request as waiting, see the module doc) or finds that
    /// no backend can serve it.
    pub(crate) fn enter(
        &self,
        (excluded, now): (Vec<usize>, Instant),
        max_waiting: usize,
        look: impl FnOnce() -> Look,
    ) -> Result<Entered, Refused> {
        let mut entries = self.entries();
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let refused = match look() {
            Look::Room(backend) => {
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                return Ok(Entered::Room(backend));
            }
            Look::NoBackend => Refused::NoBackend,
            Look::Full if entries.len() >= max_waiting => Refused::Full,
            Look::Full => {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (grant, granted) = oneshot::channel();
                let line = this_line();
                entries.line(line).push_back(Waiter {
                    id,
                    since: now,
                    excluded,
                    grant,
                });
                return Ok(Entered::Waiting(Place {
                    id,
                    line,
                    since: now,
                    granted,
                }));
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Err(refused)
    }

    /// Gives up a place (the wait ran out). `false` if it was already
    /// granted: the grant is then in the place's channel.
    pub(crate) fn leave(&self, place: &Place) -> bool {
        let mut entries = self.entries();
        let line = entries.line(place.line);
        match line.iter().position(|w| w.id == place.id) {
            Some(at) => {
                line.remove(at);
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Hands free slots of `backend` to waiting requests that may take it,
    /// while it has room: each to the oldest, or to one on this thread
    /// near its turn (see the module doc). Called when a request on it
    /// ends, when its limit grows, and when it comes back.
    pub(crate) fn hand_over(&self, backend: &Arc<Backend>) {
        if self.waiting() == 0 {
            return;
        }
        let mut entries = self.entries();
        let me = address(backend);
        let mine = this_line();
        loop {
            // Each line's first waiter that may take this backend (those
            // before it tried it already: retries, rare).
            let mut oldest: Option<Candidate> = None;
            let mut local: Option<Candidate> = None;
            for (line, waiters) in entries.lines.iter().enumerate() {
                let Some(at) = waiters.iter().position(|w| !w.excluded.contains(&me)) else {
                    continue;
                };
                let candidate = Candidate {
                    line,
                    at,
                    id: waiters[at].id,
                    since: waiters[at].since,
                };
                if oldest.is_none_or(|o| candidate.id < o.id) {
                    oldest = Some(candidate);
                }
                // Line 0 is every thread that serves no client: not one
                // thread, so nothing is local to it.
                if line == mine && mine != 0 {
                    local = Some(candidate);
                }
            }
            let Some(oldest) = oldest else { return };
            let (chosen, to) = match local {
                Some(local) if local.since <= oldest.since + NEAR_TURN => {
                    (local, HandedTo::SameThread)
                }
                _ => (oldest, HandedTo::OtherThread),
            };
            if !backend.try_start() {
                return;
            }
            let Some(waiter) = entries.lines[chosen.line].remove(chosen.at) else {
                backend.finish_quietly();
                return;
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            self.handed[to as usize].fetch_add(1, Ordering::Relaxed);
            if let Err(unwanted) = waiter.grant.send(Arc::clone(backend)) {
                // Its wait ran out a moment ago: the slot goes on.
                drop(unwanted);
                backend.finish_quietly();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LimitRules;
    use crate::config::{BackendSpec, Config, Pool};

    fn backend(name: &str, limit: u32, queue: &Arc<WaitQueue>) -> Arc<Backend> {
        let spec = BackendSpec {
            name: name.into(),
            addr: "127.0.0.1:1".parse().unwrap(),
            pool: Pool::Primary,
        };
        let mut settings = Config::default().settings;
        settings.limit = LimitRules {
            adaptive: false,
            initial: limit,
            min: 1,
            max: limit,
            max_waiting_on_clients: 256,
        };
        Backend::new(spec, &settings, false, Arc::clone(queue))
    }

    #[test]
    fn a_freed_slot_goes_to_the_oldest_waiter_that_may_take_it() {
        let queue = Arc::new(WaitQueue::default());
        let (a, b) = (backend("a", 1, &queue), backend("b", 1, &queue));
        assert!(a.try_start() && b.try_start(), "both full now");
        let mut places = Vec::new();
        // The first waiter already tried `a`; the second may go anywhere.
        for excluded in [vec![address(&a)], vec![]] {
            match queue.enter((excluded, Instant::now()), 10, || Look::Full) {
                Ok(Entered::Waiting(place)) => places.push(place),
                _ => panic!("a place"),
            }
        }
        assert_eq!(queue.waiting(), 2);
        a.finish();
        let mut second = places.pop().unwrap();
        let granted = second.granted.try_recv().expect("the second gets a's slot");
        assert_eq!(granted.name(), "a");
        assert_eq!(queue.waiting(), 1);
        b.finish();
        let mut first = places.pop().unwrap();
        assert_eq!(first.granted.try_recv().unwrap().name(), "b");
        assert_eq!(queue.waiting(), 0);
    }

    #[test]
    fn an_answer_waiting_on_its_client_hands_its_slot_on_up_to_the_bound() {
        let queue = Arc::new(WaitQueue::default());
        let a = backend("a", 1, &queue);
        assert!(a.try_start());
        let mut place = match queue.enter((vec![], Instant::now()), 10, || Look::Full) {
            Ok(Entered::Waiting(place)) => place,
            _ => panic!("a place"),
        };
        // The answer now waits on its client: the waiter gets the slot.
        assert!(a.wait_on_client(1));
        assert_eq!(place.granted.try_recv().unwrap().name(), "a");
        assert_eq!((a.inflight(), a.waiting_on_clients()), (1, 1));
        // The bound (1) is reached: the next keeps its slot.
        assert!(!a.wait_on_client(1));
        assert_eq!((a.inflight(), a.waiting_on_clients()), (1, 1));
        // The first answer is done; its slot was given back already.
        a.client_done();
        assert_eq!((a.inflight(), a.waiting_on_clients()), (1, 0));
        assert!(!a.try_start(), "the limit of 1 still holds");
    }

    #[test]
    fn the_queue_is_bounded_and_a_wait_that_runs_out_leaves_it() {
        let queue = Arc::new(WaitQueue::default());
        let a = backend("a", 1, &queue);
        assert!(a.try_start());
        let place = match queue.enter((vec![], Instant::now()), 1, || Look::Full) {
            Ok(Entered::Waiting(place)) => place,
            _ => panic!("a place"),
        };
        assert_eq!(
            queue
                .enter((vec![], Instant::now()), 1, || Look::Full)
                .err(),
            Some(Refused::Full)
        );
        assert_eq!(
            queue
                .enter((vec![], Instant::now()), 1, || Look::NoBackend)
                .err(),
            Some(Refused::NoBackend),
            "no backend: refused as such, full queue or not"
        );
        assert_eq!(queue.waiting(), 1);
        assert!(queue.leave(&place));
        assert_eq!(queue.waiting(), 0);
        // Nobody waits: the slot is simply free again.
        a.finish();
        assert!(a.try_start());
    }

    /// A place taken from serving thread `thread`, waiting since `since`.
    fn wait_on(queue: &WaitQueue, thread: usize, since: Instant) -> Place {
        serving_thread(thread);
        match queue.enter((vec![], since), 10, || Look::Full) {
            Ok(Entered::Waiting(place)) => place,
            _ => panic!("a place"),
        }
    }

    #[test]
    fn a_slot_stays_on_its_thread_for_a_waiter_near_its_turn_and_no_further() {
        let queue = Arc::new(WaitQueue::default());
        let a = backend("a", 1, &queue);
        assert!(a.try_start());
        let start = Instant::now();
        // The oldest waits on thread 1; thread 0's waiter came 0.5 ms
        // later, near its turn; thread 0's next 3 ms later.
        let mut oldest = wait_on(&queue, 1, start);
        let mut near = wait_on(&queue, 0, start + NEAR_TURN / 2);
        let mut late = wait_on(&queue, 0, start + 3 * NEAR_TURN);
        // A slot freed on thread 0 goes to its own waiter near its turn.
        serving_thread(0);
        a.finish();
        assert_eq!(near.granted.try_recv().unwrap().name(), "a");
        assert!(oldest.granted.try_recv().is_err());
        // The next: thread 0's own waiter is too far behind the oldest.
        a.finish();
        assert_eq!(oldest.granted.try_recv().unwrap().name(), "a");
        assert!(late.granted.try_recv().is_err());
        // Thread 1 frees one: only thread 0's waiter is left, and gets it.
        serving_thread(1);
        a.finish();
        assert_eq!(late.granted.try_recv().unwrap().name(), "a");
        assert_eq!(
            (
                queue.handed(HandedTo::SameThread),
                queue.handed(HandedTo::OtherThread)
            ),
            (1, 2)
        );
        assert_eq!(queue.waiting(), 0);
        LINE.with(|line| line.set(0));
    }

    #[test]
    fn a_waiter_that_leaves_its_line_is_gone_from_it() {
        let queue = Arc::new(WaitQueue::default());
        let a = backend("a", 1, &queue);
        assert!(a.try_start());
        let start = Instant::now();
        let first = wait_on(&queue, 2, start);
        let mut second = wait_on(&queue, 0, start);
        assert!(queue.leave(&first));
        assert!(!queue.leave(&first), "gone already");
        assert_eq!(queue.waiting(), 1);
        serving_thread(2);
        a.finish();
        assert_eq!(second.granted.try_recv().unwrap().name(), "a");
        LINE.with(|line| line.set(0));
    }

    /// A last look at one backend: its slot if it has room.
    fn look_at(backend: &Arc<Backend>) -> Look {
        if backend.try_start() {
            Look::Room(Arc::clone(backend))
        } else {
            Look::Full
        }
    }

    #[test]
    fn room_found_at_the_last_look_takes_no_place() {
        let queue = Arc::new(WaitQueue::default());
        let a = backend("a", 1, &queue);
        let found = queue.enter((vec![], Instant::now()), 10, || look_at(&a));
        assert!(matches!(found, Ok(Entered::Room(_))));
        assert_eq!(queue.waiting(), 0);
        // Even with the queue full, room found at the last look is taken.
        let b = backend("b", 1, &queue);
        let full = Arc::new(WaitQueue::default());
        let _place = full.enter((vec![], Instant::now()), 1, || Look::Full);
        let found = full.enter((vec![], Instant::now()), 1, || look_at(&b));
        assert!(matches!(found, Ok(Entered::Room(_))));
    }
}
