//! What a connection and its streams share: the frames waiting to be
//! written, and each open stream's windows, request body and wake-ups. The
//! streams are polled in the connection's own task, so the lock is never
//! contended; it is there because a stream's request path outlives a
//! connection that closed under it.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

use bytes::{Buf, Bytes, BytesMut};

use super::frame::{self, Reason, DEFAULT_WINDOW, MAX_WINDOW};
use super::hpack;

/// Frames waiting to be written past which a stream's answer waits for
/// the client to read: what a client that does not read can hold here.
const OUT_HIGH: usize = 256 * 1024;

/// Stream ids hashed by a multiply: they are few, odd and rising.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u32` is used (the keys are `u32`); this is its
        // general form.
        for &byte in bytes {
            self.0 = (self.0 ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u32(&mut self, id: u32) {
        self.0 = u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Slots = HashMap<u32, Slot, BuildHasherDefault<IdHasher>>;

/// One open stream.
pub(crate) struct Slot {
    /// What the client lets this server send on it.
    pub(crate) send_window: i64,
    /// What the client may still send on it.
    pub(crate) recv_window: i64,
    /// Body bytes read by the request path and not yet granted back.
    unacked: u32,
    pub(crate) body: VecDeque<Bytes>,
    pub(crate) body_end: bool,
    /// `content-length`, when the request gave one, and what came so far.
    pub(crate) declared: Option<u64>,
    pub(crate) received: u64,
    /// Reset, by the client or by this side for the client's error: its
    /// request path stops. Which of the two is `reset_by_client`.
    pub(crate) reset: bool,
    /// This side sent END_STREAM or RST_STREAM: nothing more goes out.
    pub(crate) local_done: bool,
    /// This side sent RST_STREAM.
    pub(crate) reset_sent: bool,
    body_waker: Option<Waker>,
    send_waker: Option<Waker>,
    reset_waker: Option<Waker>,
}

impl Slot {
    pub(crate) fn new(send_window: i64, recv_window: u32, body_end: bool) -> Slot {
        Slot {
            send_window,
            recv_window: i64::from(recv_window),
            unacked: 0,
            body: VecDeque::new(),
            body_end,
            declared: None,
            received: 0,
            reset: false,
            local_done: false,
            reset_sent: false,
            body_waker: None,
            send_waker: None,
            reset_waker: None,
        }
    }

    /// Gives `bytes` read (or padding, never read) back to the client's
    /// window on this stream, in updates of half a window at least, while
    /// the client may still send on it.
    pub(crate) fn grant(&mut self, id: u32, bytes: u32, window: u32, out: &mut BytesMut) {
        if self.body_end {
            return;
        }
        self.unacked += bytes;
        if self.unacked >= window / 2 {
            self.recv_window += i64::from(self.unacked);
            frame::put_window_update(out, id, self.unacked);
            self.unacked = 0;
        }
    }

    /// Closed as the protocol sees it (RFC 9113 section 5.1): this side is
    /// done, and so is the client, by END_STREAM or a reset. The slot may
    /// live on a little, until its request path lets it go.
    fn closed(&self) -> bool {
        self.local_done && (self.body_end || self.reset)
    }

    /// The client reset it, not this side first: what
    /// `gateway_h2_resets_received_total` counts.
    fn reset_by_client(&self) -> bool {
        self.reset && !self.reset_sent
    }

    pub(crate) fn wake_all(&mut self) {
        for waker in [
            &mut self.body_waker,
            &mut self.send_waker,
            &mut self.reset_waker,
        ] {
            if let Some(waker) = waker.take() {
                waker.wake();
            }
        }
    }

    pub(crate) fn wake_body(&mut self) {
        if let Some(waker) = self.body_waker.take() {
            waker.wake();
        }
    }

    pub(crate) fn wake_send(&mut self) {
        if let Some(waker) = self.send_waker.take() {
            waker.wake();
        }
    }
}

pub(crate) struct Shared {
    /// Frames ready to be written, in order.
    pub(crate) out: BytesMut,
    pub(crate) slots: Slots,
    /// The connection's send window, and the client's initial window for
    /// each stream and largest frame.
    pub(crate) send_window: i64,
    pub(crate) initial_send_window: i64,
    pub(crate) max_frame: usize,
    /// Our stream window (`stream_window_bytes`), and the connection's.
    pub(crate) stream_window: u32,
    pub(crate) connection_window: u32,
    /// Body bytes read on the connection and not yet granted back, and
    /// what the client may still send on it.
    conn_unacked: u32,
    pub(crate) conn_recv_window: i64,
    /// Streams whose answer waits for room in `out`.
    out_waiting: Vec<u32>,
    /// The connection is gone: every stream's writes fail.
    pub(crate) gone: bool,
    /// A header block being encoded.
    block: BytesMut,
}

/// The stream or the connection is gone (reset, or closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gone {
    /// The client reset the stream.
    pub(crate) reset: bool,
}

impl Shared {
    pub(crate) fn new(stream_window: u32, connection_window: u32) -> Shared {
        Shared {
            out: BytesMut::with_capacity(16 * 1024),
            slots: Slots::default(),
            send_window: i64::from(DEFAULT_WINDOW),
            initial_send_window: i64::from(DEFAULT_WINDOW),
            max_frame: frame::DEFAULT_MAX_FRAME,
            stream_window,
            connection_window,
            conn_unacked: 0,
            conn_recv_window: i64::from(connection_window),
            out_waiting: Vec::new(),
            gone: false,
            block: BytesMut::new(),
        }
    }

    /// Streams whose answer waited for room in `out`, woken once it has
    /// been written down below the mark.
    pub(crate) fn wake_out_waiting(&mut self) {
        if self.out.len() >= OUT_HIGH / 2 {
            return;
        }
        for id in std::mem::take(&mut self.out_waiting) {
            if let Some(slot) = self.slots.get_mut(&id) {
                slot.wake_send();
            }
        }
    }

    /// The streams open, as `SETTINGS_MAX_CONCURRENT_STREAMS` counts them,
    /// when there may be `most` or more: a stream the client has seen end
    /// no longer counts, though its slot lives until its request path
    /// lets it go. Otherwise the client, told the stream ended, may open
    /// the next one a moment before the slot goes, and have it refused.
    pub(crate) fn open_streams(&self, most: usize) -> usize {
        if self.slots.len() < most {
            return self.slots.len();
        }
        self.slots.values().filter(|slot| !slot.closed()).count()
    }

    /// Streams whose answer waits for the window, after it grew.
    pub(crate) fn wake_senders(&mut self) {
        for slot in self.slots.values_mut() {
            slot.wake_send();
        }
    }

    /// The connection closed: every stream learns it.
    pub(crate) fn close_all(&mut self) {
        self.gone = true;
        for slot in self.slots.values_mut() {
            slot.wake_all();
        }
    }

    /// Resets a stream for an error of the client's (RST_STREAM): its
    /// request path learns it as it would a reset of the client's own.
    pub(crate) fn reset(&mut self, stream: u32, reason: Reason) {
        frame::put_reset(&mut self.out, stream, reason);
        if let Some(slot) = self.slots.get_mut(&stream) {
            slot.local_done = true;
            slot.reset_sent = true;
            slot.reset = true;
            slot.wake_all();
        }
    }

    /// Body bytes a stream will not read (it ended, or was reset): given
    /// back to the connection's window at once.
    pub(crate) fn release_connection(&mut self, bytes: u32) {
        self.conn_unacked += bytes;
        if self.conn_unacked >= self.connection_window / 2 {
            self.conn_recv_window += i64::from(self.conn_unacked);
            frame::put_window_update(&mut self.out, 0, self.conn_unacked);
            self.conn_unacked = 0;
        }
    }

    fn slot(&mut self, id: u32) -> Result<&mut Slot, Gone> {
        if self.gone {
            return Err(Gone { reset: false });
        }
        match self.slots.get_mut(&id) {
            Some(slot) if slot.reset => Err(Gone {
                reset: slot.reset_by_client(),
            }),
            Some(slot) if !slot.local_done => Ok(slot),
            _ => Err(Gone { reset: false }),
        }
    }
}

/// A stream's side of the connection: how its answer goes out and its
/// request body comes in.
pub(crate) struct StreamRef {
    pub(crate) id: u32,
    pub(crate) shared: Arc<Mutex<Shared>>,
}

impl StreamRef {
    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Why nothing more can be sent on it, if so: it was reset (`reset`
    /// says whether by the client), or its connection is gone.
    pub(crate) fn gone(&self) -> Option<Gone> {
        self.lock().slot(self.id).err()
    }

    /// Sends the answer's head: `:status`, then what `fields` writes with
    /// `hpack::put_field`. `end` when no body follows.
    pub(crate) fn send_headers(
        &self,
        status: u16,
        fields: impl FnOnce(&mut BytesMut),
        end: bool,
    ) -> Result<(), Gone> {
        let mut shared = self.lock();
        shared.slot(self.id)?;
        let mut block = std::mem::take(&mut shared.block);
        block.clear();
        hpack::put_status(&mut block, status);
        fields(&mut block);
        let max = shared.max_frame;
        frame::put_header_block(&mut shared.out, self.id, &block, end, max);
        shared.block = block;
        if end {
            shared.slot(self.id)?.local_done = true;
        }
        Ok(())
    }

    /// Sends what of `data` the windows allow; ready once all of it went
    /// (with END_STREAM after it when `end`).
    pub(crate) fn poll_send_data(
        &self,
        cx: &mut Context<'_>,
        data: &mut Bytes,
        end: bool,
    ) -> Poll<Result<(), Gone>> {
        let mut guard = self.lock();
        let shared = &mut *guard;
        let conn_window = shared.send_window;
        let full = shared.out.len() >= OUT_HIGH;
        let max = shared.max_frame;
        let slot = shared.slot(self.id)?;
        let allowed = if full {
            0
        } else {
            slot.send_window.min(conn_window).max(0) as usize
        };
        let n = allowed.min(data.len());
        if n > 0 || (data.is_empty() && end) {
            let last = n == data.len() && end;
            slot.send_window -= n as i64;
            if last {
                slot.local_done = true;
            }
            let piece = data.split_to(n);
            shared.send_window -= n as i64;
            frame::put_data(&mut shared.out, self.id, &piece, last, max);
        }
        if data.is_empty() {
            return Poll::Ready(Ok(()));
        }
        let slot = shared.slot(self.id)?;
        slot.send_waker = Some(cx.waker().clone());
        if full {
            shared.out_waiting.push(self.id);
        }
        Poll::Pending
    }

    /// Ready once the stream is reset (true if by the client) or the
    /// connection is gone (false).
    pub(crate) fn poll_reset(&self, cx: &mut Context<'_>) -> Poll<bool> {
        let mut shared = self.lock();
        if shared.gone {
            return Poll::Ready(false);
        }
        match shared.slots.get_mut(&self.id) {
            Some(slot) if !slot.reset => {
                slot.reset_waker = Some(cx.waker().clone());
                Poll::Pending
            }
            Some(slot) => Poll::Ready(slot.reset_by_client()),
            None => Poll::Ready(false),
        }
    }

    /// Ends the stream with RST_STREAM, unless it has ended.
    pub(crate) fn send_reset(&self, reason: Reason) {
        let mut shared = self.lock();
        if let Ok(slot) = shared.slot(self.id) {
            slot.local_done = true;
            slot.reset_sent = true;
            frame::put_reset(&mut shared.out, self.id, reason);
        }
    }

    /// The request body's next piece; None at its end. What is read is
    /// granted back to the client, in updates of half a window at least.
    pub(crate) fn poll_data(&self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, Gone>>> {
        let mut guard = self.lock();
        let shared = &mut *guard;
        let stream_window = shared.stream_window;
        let Some(slot) = shared.slots.get_mut(&self.id) else {
            return Poll::Ready(Some(Err(Gone { reset: false })));
        };
        if let Some(piece) = slot.body.pop_front() {
            let len = piece.len() as u32;
            slot.grant(self.id, len, stream_window, &mut shared.out);
            shared.release_connection(len);
            return Poll::Ready(Some(Ok(piece)));
        }
        if slot.reset {
            return Poll::Ready(Some(Err(Gone {
                reset: slot.reset_by_client(),
            })));
        }
        if slot.body_end {
            return Poll::Ready(None);
        }
        if shared.gone {
            return Poll::Ready(Some(Err(Gone { reset: false })));
        }
        slot.body_waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for StreamRef {
    /// The stream is done with: an answer not ended is reset (CANCEL), and
    /// a request body still coming is stopped (NO_ERROR, RFC 9113 section
    /// 8.1); its unread bytes go back to the connection's window.
    fn drop(&mut self) {
        let mut guard = self.lock();
        let shared = &mut *guard;
        let Some(slot) = shared.slots.remove(&self.id) else {
            return;
        };
        if !shared.gone && !slot.reset && !slot.reset_sent {
            if !slot.local_done {
                frame::put_reset(&mut shared.out, self.id, Reason::Cancel);
            } else if !slot.body_end {
                frame::put_reset(&mut shared.out, self.id, Reason::NoError);
            }
        }
        let unread: usize = slot.body.iter().map(Buf::remaining).sum();
        if !shared.gone {
            shared.release_connection(unread as u32);
        }
    }
}

/// A slot's send window moved by a SETTINGS change; false past 2^31-1.
pub(crate) fn shift_window(window: &mut i64, by: i64) -> bool {
    *window += by;
    *window <= MAX_WINDOW
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_ended_on_both_sides_no_longer_counts_as_open() {
        let mut shared = Shared::new(65_535, 65_535);
        for id in [1, 3, 5] {
            shared.slots.insert(id, Slot::new(65_535, 65_535, true));
        }
        assert_eq!(shared.open_streams(3), 3);
        // Stream 1 answered, its request ended: closed, its slot alive.
        shared.slots.get_mut(&1).unwrap().local_done = true;
        // Stream 7 answered, its request body still coming: open.
        let mut half_closed = Slot::new(65_535, 65_535, false);
        half_closed.local_done = true;
        shared.slots.insert(7, half_closed);
        assert_eq!(shared.open_streams(3), 3, "3, 5 and 7");
        // Below the mark the slots are counted as they are.
        assert_eq!(shared.open_streams(10), 4);
    }
}
