//! Watches the frames a client sends, before the connection decodes them,
//! for floods of frames that are each valid: PING and SETTINGS (each must be
//! acknowledged: a flood turns our CPU into its echo), RST_STREAM (rapid
//! reset, CVE-2023-44487: each reset stream may have started a request to
//! a shop), empty DATA, PRIORITY, and header blocks split into endless
//! CONTINUATION frames (2024). Each kind has a budget that refills over
//! time, as nginx and HAProxy's "glitches" do; a connection that spends one
//! is told GOAWAY `ENHANCE_YOUR_CALM` (RFC 9113 section 10.5) and closed,
//! and nothing more it sent is read.
//!
//! Only the 9-byte frame headers are looked at; payloads are skipped.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::frame::{
    Head, ACK, CONTINUATION, DATA, END_HEADERS, END_STREAM, HEADERS, HEAD_LEN, PING, PREFACE,
    PRIORITY, RST_STREAM, SETTINGS,
};

/// The CONTINUATION frames one header block may have. A 64 KiB header
/// list fits in four 16 KiB frames; browsers send one.
const MAX_CONTINUATIONS: u32 = 32;

/// A kind of flood, as the metric labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flood {
    Ping,
    Settings,
    RapidReset,
    EmptyData,
    Priority,
    Continuation,
}

impl Flood {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Flood::Ping => "ping",
            Flood::Settings => "settings",
            Flood::RapidReset => "rapid_reset",
            Flood::EmptyData => "empty_data",
            Flood::Priority => "priority",
            Flood::Continuation => "continuation",
        }
    }
}

/// A budget that refills at `per_s` up to `burst`.
#[derive(Debug)]
struct Budget {
    left: f64,
    burst: f64,
    per_s: f64,
    at: Instant,
}

impl Budget {
    fn new(burst: u32, per_s: u32) -> Budget {
        Budget {
            left: f64::from(burst),
            burst: f64::from(burst),
            per_s: f64::from(per_s),
            at: Instant::now(),
        }
    }

    /// Spends one; false when none is left.
    fn spend(&mut self, now: Instant) -> bool {
        let refilled = now.saturating_duration_since(self.at).as_secs_f64() * self.per_s;
        self.left = (self.left + refilled).min(self.burst);
        self.at = now;
        if self.left < 1.0 {
            return false;
        }
        self.left -= 1.0;
        true
    }
}

/// Budgets: generous for browsers (Chromium sends a PING now and then to
/// measure bandwidth, and resets streams when a page is left), far below
/// what an attack needs.
#[derive(Debug)]
struct Budgets {
    ping: Budget,
    settings: Budget,
    reset: Budget,
    empty_data: Budget,
    priority: Budget,
}

impl Default for Budgets {
    fn default() -> Self {
        Budgets {
            ping: Budget::new(100, 20),
            settings: Budget::new(20, 2),
            reset: Budget::new(100, 20),
            empty_data: Budget::new(100, 20),
            priority: Budget::new(500, 100),
        }
    }
}

/// Where the meter tells the connection's driver about a flood.
#[derive(Debug, Default)]
pub(crate) struct FloodAlarm {
    kind: OnceLock<Flood>,
    rang: Notify,
}

impl FloodAlarm {
    fn ring(&self, kind: Flood) {
        if self.kind.set(kind).is_ok() {
            self.rang.notify_one();
        }
    }

    /// Waits for a flood; returns its kind.
    pub(crate) async fn rung(&self) -> Flood {
        loop {
            if let Some(kind) = self.kind.get() {
                return *kind;
            }
            self.rang.notified().await;
        }
    }
}

/// The frame parser's place in the byte stream.
#[derive(Debug)]
struct Frames {
    preface_left: usize,
    head: [u8; HEAD_LEN],
    head_len: usize,
    payload_left: usize,
    /// CONTINUATION frames so far in the open header block, if one is open.
    block: Option<u32>,
    budgets: Budgets,
}

impl Frames {
    fn new() -> Frames {
        Frames {
            preface_left: PREFACE.len(),
            head: [0; HEAD_LEN],
            head_len: 0,
            payload_left: 0,
            block: None,
            budgets: Budgets::default(),
        }
    }

    /// Looks at bytes as they are read; the first flood found, if any.
    fn saw(&mut self, mut bytes: &[u8]) -> Option<Flood> {
        while !bytes.is_empty() {
            if self.preface_left > 0 {
                let n = self.preface_left.min(bytes.len());
                self.preface_left -= n;
                bytes = &bytes[n..];
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
            } else {
                let n = (HEAD_LEN - self.head_len).min(bytes.len());
                self.head[self.head_len..self.head_len + n].copy_from_slice(&bytes[..n]);
                self.head_len += n;
                bytes = &bytes[n..];
                if self.head_len == HEAD_LEN {
                    self.head_len = 0;
                    let head = Head::parse(&self.head);
                    self.payload_left = head.len;
                    if let Some(flood) = self.frame(head.kind, head.flags, head.len) {
                        return Some(flood);
                    }
                }
            }
        }
        None
    }

    /// One frame's header: the flood it completes, if any. The clock is
    /// read only for the kinds that have a budget, not for every DATA frame.
    fn frame(&mut self, kind: u8, flags: u8, length: usize) -> Option<Flood> {
        let b = &mut self.budgets;
        let (budget, flood) = match kind {
            PING if flags & ACK == 0 => (&mut b.ping, Flood::Ping),
            SETTINGS if flags & ACK == 0 => (&mut b.settings, Flood::Settings),
            RST_STREAM => (&mut b.reset, Flood::RapidReset),
            DATA if length == 0 && flags & END_STREAM == 0 => (&mut b.empty_data, Flood::EmptyData),
            PRIORITY => (&mut b.priority, Flood::Priority),
            HEADERS => {
                self.block = (flags & END_HEADERS == 0).then_some(0);
                return None;
            }
            CONTINUATION => {
                let count = self.block.map_or(1, |n| n + 1);
                self.block = (flags & END_HEADERS == 0).then_some(count);
                return (count > MAX_CONTINUATIONS).then_some(Flood::Continuation);
            }
            _ => return None,
        };
        (!budget.spend(Instant::now())).then_some(flood)
    }
}

/// A client connection read through the meter.
pub(crate) struct Metered<S> {
    inner: S,
    frames: Frames,
    alarm: Arc<FloodAlarm>,
    /// Set once a flood is found: nothing more is read.
    stopped: bool,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, alarm: Arc<FloodAlarm>) -> Metered<S> {
        Metered {
            inner,
            frames: Frames::new(),
            alarm,
            stopped: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.stopped {
            // The driver closes the connection; the client is not heard.
            return Poll::Pending;
        }
        let before = buf.filled().len();
        let this = &mut *self;
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = read {
            if let Some(flood) = this.frames.saw(&buf.filled()[before..]) {
                this.stopped = true;
                this.alarm.ring(flood);
            }
        }
        read
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![
            (len >> 16) as u8,
            (len >> 8) as u8,
            len as u8,
            kind,
            flags,
            0,
            0,
            0,
            1,
        ];
        out.extend_from_slice(payload);
        out
    }

    fn flood_of(frames: &mut Frames, bytes: &[u8], split: usize) -> Option<Flood> {
        // Fed in pieces of `split` bytes, as reads may cut them anywhere.
        bytes.chunks(split).find_map(|piece| frames.saw(piece))
    }

    #[tokio::test(start_paused = true)]
    async fn a_ping_flood_is_found_wherever_the_reads_cut_the_frames() {
        for split in [1, 7, 9, 4096] {
            let mut frames = Frames::new();
            let mut bytes = PREFACE.to_vec();
            bytes.extend(frame(SETTINGS, 0, &[]));
            for _ in 0..100 {
                bytes.extend(frame(PING, 0, &[0; 8]));
            }
            assert_eq!(flood_of(&mut frames, &bytes, split), None, "split {split}");
            assert_eq!(
                flood_of(&mut frames, &frame(PING, 0, &[0; 8]), split),
                Some(Flood::Ping)
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn budgets_refill_so_a_browser_pinging_now_and_then_is_never_cut() {
        let mut frames = Frames::new();
        assert_eq!(frames.saw(PREFACE), None);
        for _ in 0..1_000 {
            assert_eq!(frames.saw(&frame(PING, 0, &[0; 8])), None);
            assert_eq!(frames.saw(&frame(PING, ACK, &[0; 8])), None);
            tokio::time::advance(std::time::Duration::from_millis(100)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn resets_empty_data_and_endless_continuations_each_trip() {
        let cases: [(Vec<u8>, Flood); 3] = [
            (
                frame(RST_STREAM, 0, &[0, 0, 0, 8]).repeat(101),
                Flood::RapidReset,
            ),
            (frame(DATA, 0, &[]).repeat(101), Flood::EmptyData),
            (
                [
                    frame(HEADERS, 0, &[0x82]),
                    frame(CONTINUATION, 0, &[0x82]).repeat(33),
                ]
                .concat(),
                Flood::Continuation,
            ),
        ];
        for (bytes, kind) in cases {
            let mut frames = Frames::new();
            frames.saw(PREFACE);
            assert_eq!(flood_of(&mut frames, &bytes, 13), Some(kind));
        }
        // DATA that ends its stream, and a block that ends, are not floods.
        let mut frames = Frames::new();
        frames.saw(PREFACE);
        let fine = [
            frame(DATA, END_STREAM, &[]).repeat(500),
            [
                frame(HEADERS, 0, &[0x82]),
                frame(CONTINUATION, END_HEADERS, &[0x82]),
            ]
            .concat()
            .repeat(500),
        ]
        .concat();
        assert_eq!(flood_of(&mut frames, &fine, 64), None);
    }
}
