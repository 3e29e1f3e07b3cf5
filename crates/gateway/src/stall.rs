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
//! How a stall is seen: each serving thread runs a tick every `TICK`; a
//! tick that comes `STALL` or more late means the thread did not run for
//! that long. The thread's tick may itself come after the answers that
//! were held up with it (the runtime polls them in the order they became
//! ready), so a thread whose tick is overdue counts as stalled too.
//!
//! Cost: one timer wake per serving thread every `TICK`, also when idle.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::{Instant, MissedTickBehavior};

/// How often each serving thread ticks.
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
    /// When this thread last ticked; `None` where no tick runs (threads
    /// that serve no clients, tests).
    static LAST_TICK: Cell<Option<Instant>> = const { Cell::new(None) };
}

fn micros_since_epoch(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_micros() as u64
}

/// Ticks on the calling thread's runtime for as long as it runs, counting
/// each stall in `stalls`.
pub(crate) async fn watch(stalls: Counter) {
    epoch();
    let mut ticks = tokio::time::interval(TICK);
    // After a stall the next tick is a whole `TICK` later, not a burst of
    // the ones missed.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let due = ticks.tick().await;
        let now = Instant::now();
        LAST_TICK.with(|last| last.set(Some(now)));
        if now.saturating_duration_since(due) >= STALL {
            stalls.inc();
            LAST_STALL_ENDED.fetch_max(micros_since_epoch(now), Ordering::Relaxed);
        }
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
            // then: one quiet stretch of a few is enough.
            let mut quiet = false;
            for _ in 0..10 {
                let after = Instant::now();
                tokio::time::sleep(TICK * 4).await;
                if !spanned(after, Instant::now()) {
                    quiet = true;
                    break;
                }
            }
            assert!(quiet, "a wait with no stall in it is not flagged");
        });
    }
}
