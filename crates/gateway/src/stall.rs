//! The gateway's own stalls: stretches when a serving thread did not run
//! at all, because the CPU quota it runs under was spent (a container's
//! CPU limit, a cgroup's `cpu.max`) or the machine gave its core to
//! something else.
//!
//! Why it matters: the adaptive limit (`backend::limit`) reads a
//! backend's queueing from the time between writing a request and reading
//! its answer. A request in flight while the gateway is frozen is
//! answered in microseconds and read 50 ms later, and every request in
//! flight then looks 100 times slower at once: measured under half a
//! core, the limit of an nginx backend that never slowed fell from 64 to
//! the floor of 4 in a few milliseconds, several times a minute. So an
//! answer whose wait spanned a stall teaches the limit nothing, and each
//! stall is counted (`gateway_serving_stalls`): a gateway that stalls
//! often needs more CPU than its quota gives.
//!
//! How a stall is seen: each serving thread runs a tick every `TICK`
//! while it awaits an answer from a backend (`Awaiting`); a tick that comes
//! `STALL` or more late means the thread did not run for that long. The
//! thread's tick may itself come after the answers that were held up with
//! it (the runtime polls them in the order they became ready), so a thread
//! whose tick is overdue counts as stalled too.
//!
//! Cost: a thread-local count per request sent, and while requests are
//! awaited one timer wake per serving thread every `TICK`. An idle thread
//! does not tick: there is no answer to judge, and ticking cost an idle
//! gateway 1 % of a core.

use std::cell::Cell;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::task::{Poll, Waker};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::{Instant, MissedTickBehavior};

/// How often each serving thread ticks while it awaits answers.
const TICK: Duration = Duration::from_millis(5);
/// A tick this late is a stall: a thread at full load still runs its
/// timers within a millisecond or two.
const STALL: Duration = Duration::from_millis(5);

/// What every stall is measured from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// When the last stall of any serving thread ended, in µs since `epoch`
/// (0: none yet). The threads share a quota, so a stall of one is
/// usually a stall of all.
static LAST_STALL_ENDED: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// When this thread last ticked; `None` while it does not tick (idle,
    /// or a thread that serves no clients).
    static LAST_TICK: Cell<Option<Instant>> = const { Cell::new(None) };
    /// This thread's requests awaiting a backend's answer.
    static AWAITED: Cell<u32> = const { Cell::new(0) };
    /// The tick, parked while nothing is awaited.
    static PARKED: Cell<Option<Waker>> = const { Cell::new(None) };
}

fn micros_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_micros() as u64
}

/// A request of this thread awaiting a backend's answer, for as long as it
/// is held: the thread ticks meanwhile.
pub(crate) struct Awaiting(());

pub(crate) fn awaiting() -> Awaiting {
    let before = AWAITED.with(|awaited| awaited.replace(awaited.get() + 1));
    if before == 0 {
        if let Some(tick) = PARKED.with(Cell::take) {
            // The wake is this thread's first tick, due now: a stall
            // before the tick runs shows as overdue, or as a late tick.
            LAST_TICK.with(|last| last.set(Some(Instant::now())));
            tick.wake();
        }
    }
    Awaiting(())
}

impl Drop for Awaiting {
    fn drop(&mut self) {
        AWAITED.with(|awaited| awaited.set(awaited.get().saturating_sub(1)));
    }
}

/// Ticks on the calling thread's runtime while it awaits answers, for as
/// long as the runtime runs, counting each stall in `stalls`.
pub(crate) async fn watch(stalls: Counter) {
    epoch();
    loop {
        poll_fn(|cx| {
            if AWAITED.with(Cell::get) > 0 {
                return Poll::Ready(());
            }
            PARKED.with(|parked| parked.set(Some(cx.waker().clone())));
            Poll::Pending
        })
        .await;
        // Woken by a request: late if the thread stalled since.
        let now = Instant::now();
        if let Some(woken) = LAST_TICK.with(Cell::get) {
            late(&stalls, woken, now);
        }
        LAST_TICK.with(|last| last.set(Some(now)));
        let mut ticks = tokio::time::interval_at(now + TICK, TICK);
        // After a stall the next tick is a whole `TICK` later, not a burst
        // of the ones missed.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while AWAITED.with(Cell::get) > 0 {
            let due = ticks.tick().await;
            let now = Instant::now();
            LAST_TICK.with(|last| last.set(Some(now)));
            late(&stalls, due, now);
        }
        LAST_TICK.with(|last| last.set(None));
    }
}

/// A tick due at `due` that ran at `now`: a stall if `STALL` late.
fn late(stalls: &Counter, due: Instant, now: Instant) {
    if now.saturating_duration_since(due) >= STALL {
        stalls.inc();
        LAST_STALL_ENDED.fetch_max(micros_since_epoch(now), Ordering::Relaxed);
    }
}

/// Whether this thread may have stalled since `since`: a stall ended
/// after it, or this thread's tick is overdue now.
pub(crate) fn spanned(since: Instant, now: Instant) -> bool {
    let ended = LAST_STALL_ENDED.load(Ordering::Relaxed);
    if ended != 0 && ended > micros_since_epoch(since) {
        return true;
    }
    LAST_TICK.with(|last| {
        last.get()
            .is_some_and(|tick| now.saturating_duration_since(tick) >= TICK + STALL)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A thread blocked (as a throttled one is frozen) for 30 ms: an
    /// answer awaited across it is flagged, both before the tick has
    /// seen the stall and after, and counted; one awaited in a quiet
    /// stretch after it is not.
    #[test]
    fn a_wait_across_a_frozen_thread_is_flagged_and_one_after_it_is_not() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let stalls = Counter::default();
            tokio::spawn(watch(stalls.clone()));
            let held = awaiting();
            tokio::time::sleep(TICK * 4).await;
            let before = Instant::now();
            let counted = stalls.get();
            std::thread::sleep(Duration::from_millis(30));
            // Back from the freeze, the tick not yet run: overdue.
            assert!(spanned(before, Instant::now()), "overdue tick");
            tokio::time::sleep(TICK * 2).await;
            assert!(stalls.get() > counted, "the late tick is counted");
            assert!(spanned(before, Instant::now()), "stall seen by the tick");
            // A shared machine may stall this thread for real now and
            // then (under CI's parallel tests, in each of ten stretches in
            // a row once): one quiet stretch within 5 s is enough.
            let mut quiet = false;
            let give_up = Instant::now() + Duration::from_secs(5);
            while Instant::now() < give_up {
                let after = Instant::now();
                tokio::time::sleep(TICK * 4).await;
                if !spanned(after, Instant::now()) {
                    quiet = true;
                    break;
                }
            }
            assert!(quiet, "a wait with no stall in it is not flagged");
            // Nothing awaited: the thread stops ticking, and a freeze then
            // is neither counted nor flagged (no answer waits through it).
            drop(held);
            tokio::time::sleep(TICK * 3).await;
            let counted = stalls.get();
            std::thread::sleep(Duration::from_millis(30));
            tokio::time::sleep(TICK * 3).await;
            assert_eq!(stalls.get(), counted, "an idle thread does not tick");
            assert!(LAST_TICK.with(Cell::get).is_none());
            // A request wakes it, and the thread freezes before the tick
            // has run: overdue from the wake, then counted.
            let before = Instant::now();
            let _awaiting = awaiting();
            std::thread::sleep(Duration::from_millis(30));
            assert!(spanned(before, Instant::now()), "overdue since the wake");
            tokio::time::sleep(TICK).await;
            assert!(stalls.get() > counted, "the late wake is counted");
        });
    }
}
