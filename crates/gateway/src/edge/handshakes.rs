//! TLS handshakes in turns, so that a flood of new connections (a sale's
//! opening, or an attack) does not take the CPU from the customers
//! already connected, and a line of client hellos, bounded, beyond which
//! the gateway stops accepting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

use super::metrics::EdgeMetrics;
use crate::threads::Accepting;

/// One serving thread's TLS handshakes, one costly step at a time, each
/// followed by a turn for every connection of the thread that is ready to
/// run. A full handshake's key exchange and signature cost as much CPU as
/// tens of requests on a kept connection. Answered as they came, a burst
/// of hellos (a sale's opening, when everyone reloads on the hour) ran in
/// one block: a customer already connected, mid-checkout, got one or two
/// requests through 400 handshakes; in turns it gets about one request per
/// two handshakes. Handshakes still take whatever CPU the connected
/// customers leave, and wait in line when there is none, within the
/// handshake timeout.
#[derive(Debug)]
pub(crate) struct HandshakeTurns {
    turn: tokio::sync::Mutex<()>,
    line: Arc<HandshakeLine>,
}

impl HandshakeTurns {
    pub(crate) fn new(line: Arc<HandshakeLine>) -> HandshakeTurns {
        HandshakeTurns {
            turn: tokio::sync::Mutex::new(()),
            line,
        }
    }

    /// Runs `costly` in this thread's turn, first come first served.
    pub(super) async fn take<T>(&self, costly: impl FnOnce() -> T) -> T {
        // Left when the turn comes, or when the handshake is given up
        // (its timeout) while waiting.
        let in_line = self.line.join();
        let turn = self.turn.lock().await;
        drop(in_line);
        let done = costly();
        // Held across the yield: the next handshake starts only once every
        // task that was ready has run.
        tokio::task::yield_now().await;
        drop(turn);
        done
    }
}

/// Client hellos waiting for a turn, on every serving thread. While
/// `most` wait the gateway accepts no more connections (`room`): the rest
/// wait in the kernel's accept queue, where they cost the gateway nothing,
/// and beyond it their SYNs are dropped and retried by the client, as
/// under HAProxy's `maxsslrate`. Accepted, each would cost an accept, a
/// read and a close on the CPU the served need. Counted across threads:
/// a thread hands connections to the others. The bound is per thread that
/// accepts (`crate::threads`): under a CPU quota fewer threads take the
/// handshakes, and the line is as long in time as before.
#[derive(Debug)]
pub(crate) struct HandshakeLine {
    waiting: AtomicUsize,
    room: Notify,
    accepting: Accepting,
    shown: Gauge,
    pauses: Counter,
}

/// A hello's place in the line, left when dropped.
struct InLine<'a>(&'a HandshakeLine);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.shown.dec();
        // Was full, or above a bound just lowered: room may come now.
        if self.0.waiting.fetch_sub(1, Ordering::Relaxed) >= self.0.most() {
            self.0.room.notify_waiters();
        }
    }
}

/// Hellos that may wait per serving thread: at a few hundred microseconds
/// a handshake, a wait of tens of milliseconds.
const LINE_PER_THREAD: usize = 64;

impl HandshakeLine {
    pub(crate) fn new(accepting: Accepting, metrics: &EdgeMetrics) -> HandshakeLine {
        HandshakeLine {
            waiting: AtomicUsize::new(0),
            room: Notify::new(),
            accepting,
            shown: metrics.hellos_waiting.clone(),
            pauses: metrics.accept_pauses.clone(),
        }
    }

    fn join(&self) -> InLine<'_> {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        self.shown.inc();
        InLine(self)
    }

    /// Hellos that may wait now.
    fn most(&self) -> usize {
        LINE_PER_THREAD * self.accepting.now().max(1)
    }

    /// Returns once fewer than `most` hellos wait for a turn.
    pub(crate) async fn room(&self) {
        let mut paused = false;
        loop {
            let freed = self.room.notified();
            if self.waiting.load(Ordering::Relaxed) < self.most() {
                return;
            }
            if !paused {
                paused = true;
                self.pauses.inc();
            }
            freed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[tokio::test]
    async fn the_gateway_stops_accepting_while_the_line_is_full_and_not_after() {
        let metrics = EdgeMetrics::default();
        let line = HandshakeLine::new(Accepting::all(1, &Gauge::default()), &metrics);
        let mut places: Vec<_> = (0..LINE_PER_THREAD).map(|_| line.join()).collect();
        assert!(line.room().now_or_never().is_none(), "full: no room");
        let room = line.room();
        tokio::pin!(room);
        assert!((&mut room).now_or_never().is_none());
        // One place left (its turn came, or its handshake was given up):
        // whoever waits for room is woken.
        places.pop();
        assert!(room.now_or_never().is_some(), "room again");
        places.push(line.join());
        assert!(line.room().now_or_never().is_none(), "full again");
        assert_eq!(metrics.hellos_waiting.get(), LINE_PER_THREAD as i64);
        assert_eq!(metrics.accept_pauses.get(), 3, "once per wait for room");
    }

    #[tokio::test]
    async fn the_line_is_as_long_as_the_threads_that_accept_allow() {
        let metrics = EdgeMetrics::default();
        let (threads, accepting) = tokio::sync::watch::channel(2);
        let line = HandshakeLine::new(Accepting::following(accepting), &metrics);
        let mut places: Vec<_> = (0..LINE_PER_THREAD + 1).map(|_| line.join()).collect();
        assert!(line.room().now_or_never().is_some(), "two threads' line");
        // The quota now allows one thread: the line is full past its one
        // thread's share, and has room once below it.
        threads.send_replace(1);
        assert!(line.room().now_or_never().is_none(), "one thread's line");
        let room = line.room();
        tokio::pin!(room);
        assert!((&mut room).now_or_never().is_none());
        places.truncate(LINE_PER_THREAD - 1);
        assert!(room.now_or_never().is_some(), "room again");
    }
}
