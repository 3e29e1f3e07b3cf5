//! Polling a part of a task only when that part was woken. The HTTP/2
//! connection's task drives both h2's connection and the connection's
//! streams; most wake-ups are a stream's (its backend answered), and
//! polling h2's connection on each of them costs a full pass over its
//! streams and its write buffer for nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures::task::AtomicWaker;

/// Whether the part has been woken since it was last polled, and the task
/// to wake when it is.
#[derive(Default)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

pub(crate) struct WokenOnly {
    flag: Arc<Flag>,
    waker: Waker,
}

impl WokenOnly {
    /// The first poll always goes through.
    pub(crate) fn new() -> WokenOnly {
        let flag = Arc::new(Flag {
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(Arc::clone(&flag));
        WokenOnly { flag, waker }
    }

    /// Has the part polled at the next turn: for a change made to it
    /// from outside, which wakes nothing.
    pub(crate) fn wake(&self) {
        self.flag.woken.store(true, Ordering::Release);
    }

    /// Polls `part` with a waker of its own if it was woken (or last came
    /// back ready, when it may have more to give); otherwise pending, with
    /// the task woken when the part is.
    pub(crate) fn poll<T>(
        &self,
        cx: &mut Context<'_>,
        part: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let polled = part(&mut Context::from_waker(&self.waker));
        if polled.is_ready() {
            self.flag.woken.store(true, Ordering::Release);
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_part_is_polled_again_only_once_its_own_waker_fired() {
        let gate = WokenOnly::new();
        let polls = AtomicUsize::new(0);
        let stored: std::sync::Mutex<Option<Waker>> = Default::default();
        let mut part = |cx: &mut Context<'_>| {
            polls.fetch_add(1, Ordering::Relaxed);
            *stored.lock().unwrap() = Some(cx.waker().clone());
            Poll::<()>::Pending
        };
        let mut cx = Context::from_waker(Waker::noop());
        assert!(gate.poll(&mut cx, &mut part).is_pending());
        assert!(gate.poll(&mut cx, &mut part).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 1, "not woken: not polled");
        stored.lock().unwrap().take().unwrap().wake();
        assert!(gate.poll(&mut cx, &mut part).is_pending());
        assert_eq!(polls.load(Ordering::Relaxed), 2, "woken: polled");
        assert!(gate.poll(&mut cx, &mut part).is_pending());
        gate.wake();
        assert!(gate.poll(&mut cx, &mut part).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            3,
            "woken from outside: polled"
        );
    }

    #[test]
    fn a_part_that_was_ready_is_polled_again() {
        let gate = WokenOnly::new();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(gate.poll(&mut cx, |_| Poll::Ready(1)).is_ready());
        assert_eq!(gate.poll(&mut cx, |_| Poll::Ready(2)), Poll::Ready(2));
    }
}
