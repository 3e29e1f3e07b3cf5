//! The queue in front of the backends. When every backend is at its
//! concurrency limit, a request waits here — bounded in length and in
//! time — instead of opening one more connection to a saturated shop (which
//! is how a surge turns into a collapse: HAProxy without `maxconn` collapses
//! the same way).
//!
//! One queue for the whole gateway, shared by its serving threads, first in
//! first out: whichever thread frees a slot on a backend hands it to the
//! oldest waiting request that may go to that backend (a retry never goes
//! back to a backend it already tried), whatever thread that request is
//! on. So requests are served in the order they started waiting, across
//! threads. The price is a lock taken only when requests wait (a free slot
//! is taken without it) and a wake-up across threads per handed-over slot.
//!
//! Lost wake-ups are ruled out by the order of two atomics: a waiter
//! counts itself waiting before it looks for room a last time (under the
//! lock), and a finishing request gives back its slot before it looks for
//! waiters. Either the waiter sees the room, or the finisher sees the
//! waiter.
//!
//! Memory: a waiting request costs its entry here (about 64 bytes) plus
//! its client connection's buffers, which it holds anyway.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::backend::Backend;

/// A request waiting for a slot.
struct Waiter {
    id: u64,
    /// Backends it must not be given (those it already tried), by address.
    excluded: Vec<usize>,
    grant: oneshot::Sender<Arc<Backend>>,
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
    pub(crate) granted: oneshot::Receiver<Arc<Backend>>,
}

#[derive(Default)]
pub(crate) struct WaitQueue {
    waiting: AtomicUsize,
    next_id: AtomicU64,
    entries: Mutex<VecDeque<Waiter>>,
    /// Requests refused (queue full) or timed out, ever: what the waiting
    /// room reads as "the backends are full".
    refusals: AtomicU64,
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

impl WaitQueue {
    fn entries(&self) -> MutexGuard<'_, VecDeque<Waiter>> {
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

    /// Takes a place at the back, unless `look` finds a free slot first
    /// (looked for after counting this request as waiting, see the module
    /// doc) or finds that no backend can serve it.
    pub(crate) fn enter(
        &self,
        excluded: Vec<usize>,
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
                entries.push_back(Waiter {
                    id,
                    excluded,
                    grant,
                });
                return Ok(Entered::Waiting(Place { id, granted }));
            }
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Err(refused)
    }

    /// Gives up a place (the wait ran out). `false` if it was already
    /// granted: the grant is then in the place's channel.
    pub(crate) fn leave(&self, place: &Place) -> bool {
        let mut entries = self.entries();
        match entries.iter().position(|w| w.id == place.id) {
            Some(at) => {
                entries.remove(at);
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                true
            }
            None => false,
        }
    }

    /// Hands free slots of `backend` to the oldest requests that may take
    /// it, while it has room. Called when a request on it ends, when its
    /// limit grows, and when it comes back.
    pub(crate) fn hand_over(&self, backend: &Arc<Backend>) {
        if self.waiting() == 0 {
            return;
        }
        let mut entries = self.entries();
        let me = address(backend);
        let mut at = 0;
        while at < entries.len() {
            if entries[at].excluded.contains(&me) {
                at += 1;
                continue;
            }
            if !backend.try_start() {
                return;
            }
            let Some(waiter) = entries.remove(at) else {
                backend.finish_quietly();
                return;
            };
            self.waiting.fetch_sub(1, Ordering::SeqCst);
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
            match queue.enter(excluded, 10, || Look::Full) {
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
        let mut place = match queue.enter(vec![], 10, || Look::Full) {
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
        let place = match queue.enter(vec![], 1, || Look::Full) {
            Ok(Entered::Waiting(place)) => place,
            _ => panic!("a place"),
        };
        assert_eq!(
            queue.enter(vec![], 1, || Look::Full).err(),
            Some(Refused::Full)
        );
        assert_eq!(
            queue.enter(vec![], 1, || Look::NoBackend).err(),
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
        let found = queue.enter(vec![], 10, || look_at(&a));
        assert!(matches!(found, Ok(Entered::Room(_))));
        assert_eq!(queue.waiting(), 0);
        // Even with the queue full, room found at the last look is taken.
        let b = backend("b", 1, &queue);
        let full = Arc::new(WaitQueue::default());
        let _place = full.enter(vec![], 1, || Look::Full);
        let found = full.enter(vec![], 1, || look_at(&b));
        assert!(matches!(found, Ok(Entered::Room(_))));
    }
}
