//! A try's place on a backend: one of the backend's slots under its
//! concurrency limit, taken before the request is written and given back
//! once the answer has been relayed to the client, or once it waits on
//! the client rather than on the backend. When the backends that
//! should serve are all at their limit, the request waits for a slot in
//! the gateway's queue (`crate::queue`), bounded in time.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::time::Instant;

use super::answer::Refusal;
use super::failure::TryError;
use super::forward::Route;
use super::Alarm;
use crate::backend::Backend;
use crate::balance::Pick;
use crate::http1::Stream;
use crate::metrics::QueueOutcome;
use crate::queue::{self, Entered, Look, Refused};

/// Attempts to take a free slot before waiting: another thread may take
/// the one a pick saw free.
const TAKES: usize = 4;

/// A slot held on a backend; given back when dropped, or earlier, once
/// the answer waits on the client (`wait_on_client`).
pub(crate) struct Slot {
    on: On,
    /// Given back already: the answer waits on its client.
    waits_on_client: AtomicBool,
}

/// Where a slot is held.
enum On {
    /// On a backend of the serving thread's own list: the common case,
    /// which touches no reference count another thread shares.
    Listed {
        backends: Arc<Vec<Arc<Backend>>>,
        at: usize,
    },
    /// Handed over through the queue by a request that finished.
    Granted(Arc<Backend>),
}

impl Slot {
    fn new(on: On) -> Slot {
        Slot {
            on,
            waits_on_client: AtomicBool::new(false),
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        match &self.on {
            On::Listed { backends, at } => &backends[*at],
            On::Granted(backend) => backend,
        }
    }

    /// The backend's place in `list`, if it is there (a granted one may
    /// come from a newer list).
    pub(crate) fn place_in(&self, list: &[Arc<Backend>]) -> Option<usize> {
        match &self.on {
            On::Listed { at, .. } => Some(*at),
            On::Granted(backend) => list.iter().position(|b| Arc::ptr_eq(b, backend)),
        }
    }

    /// The answer waits on the client: the slot goes back to the backend
    /// if fewer than `most` of its answers wait so
    /// (`Backend::wait_on_client`). Only the request's own task calls it.
    pub(crate) fn wait_on_client(&self, most: u32) {
        if !self.waits_on_client.load(Ordering::Relaxed) && self.backend().wait_on_client(most) {
            self.waits_on_client.store(true, Ordering::Relaxed);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if *self.waits_on_client.get_mut() {
            self.backend().client_done();
        } else {
            self.backend().finish();
        }
    }
}

/// A slot on a backend that should serve and is not in `tried`: at once if
/// one has room, else after a wait in the queue. Why there is none is a
/// `TryError`: no backend can serve, or the queue is full, or the wait ran
/// out.
pub(super) async fn acquire<C: Stream>(
    route: &Route<'_>,
    list: &Arc<Vec<Arc<Backend>>>,
    tried: &[usize],
    (alarm, client): (&mut Alarm, &mut C),
) -> Result<Slot, TryError> {
    let s = &route.live.settings;
    let take = || {
        for _ in 0..TAKES {
            match route.backends.pick_in(list, s.policy, s.slow_start, tried) {
                Pick::Backend(at) if list[at].try_start() => return Pick::Backend(at),
                Pick::Backend(_) => continue,
                other => return other,
            }
        }
        Pick::Full
    };
    // While requests wait, a newcomer goes behind them without a look of
    // its own: a slot freed now is theirs (its finisher hands it over),
    // and the look, at every backend under its lock, would find none.
    // The last look inside `enter` still finds room any waiter may not
    // take (a backend they all tried) and tells when none can serve.
    if route.queue.waiting() == 0 {
        match take() {
            Pick::Backend(at) => {
                return Ok(Slot::new(On::Listed {
                    backends: Arc::clone(list),
                    at,
                }))
            }
            Pick::Nothing => return Err(TryError::no_backend()),
            Pick::Full => {}
        }
    }
    let excluded = tried.iter().map(|&at| queue::address(&list[at])).collect();
    let last_look = || match take() {
        Pick::Backend(at) => Look::Room(Arc::clone(&list[at])),
        Pick::Full => Look::Full,
        Pick::Nothing => Look::NoBackend,
    };
    let place = match route
        .queue
        .enter((excluded, Instant::now()), s.queue_max_waiting, last_look)
    {
        Ok(Entered::Waiting(place)) => place,
        Ok(Entered::Room(backend)) => return Ok(Slot::new(On::Granted(backend))),
        Err(Refused::NoBackend) => return Err(TryError::no_backend()),
        Err(Refused::Full) => {
            route.queue.count_refusal();
            route.metrics.shed("queue_full");
            return Err(TryError::queue(
                Refusal::QueueFull,
                format!(
                    "every shop is at its limit and {} requests wait already; retry shortly",
                    s.queue_max_waiting
                ),
            ));
        }
    };
    let waited = place.since;
    let mut place = place;
    // A client that gives up while it waits (a reset HTTP/2 stream) leaves
    // the line: its place would otherwise take a slot for nobody.
    let mut abandoned = false;
    let granted = tokio::select! {
        biased;
        granted = &mut place.granted => granted.ok(),
        () = alarm.until(waited + s.queue_timeout) => None,
        () = poll_fn(|cx| client.poll_abandoned(cx)) => {
            abandoned = true;
            None
        }
    };
    let granted = match granted {
        Some(backend) => Some(backend),
        // Not granted in time, unless a grant raced the deadline.
        None if route.queue.leave(&place) => None,
        None => place.granted.try_recv().ok(),
    };
    let outcome = match &granted {
        Some(_) => QueueOutcome::Granted,
        None if abandoned => QueueOutcome::Abandoned,
        None => QueueOutcome::TimedOut,
    };
    route.metrics.queued(waited.elapsed(), outcome);
    match granted {
        Some(backend) => Ok(Slot::new(On::Granted(backend))),
        None if abandoned => Err(TryError::client(
            Refusal::ClientGone,
            "the client reset the request while it waited for a shop".to_string(),
        )),
        None => {
            route.queue.count_refusal();
            route.metrics.shed("queue_timeout");
            Err(TryError::queue(
                Refusal::QueueTimeout,
                format!(
                    "every shop stayed at its limit for {} ms; retry shortly",
                    s.queue_timeout.as_millis()
                ),
            ))
        }
    }
}
