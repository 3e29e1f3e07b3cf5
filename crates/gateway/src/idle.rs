//! Idle keep-alive detection: the connection's IO counts its reads and
//! writes (an atomic add, cheaper than reading the clock on every one), and
//! the connection task, sampling the count, closes a connection on which
//! nothing moved for too long.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How many reads and writes a connection has done.
#[derive(Debug, Clone, Default)]
pub(crate) struct ActivityClock {
    ops: Arc<AtomicU64>,
}

impl ActivityClock {
    pub(crate) fn new() -> Self {
        ActivityClock::default()
    }

    fn touch(&self) {
        self.ops.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
}

/// Tells from samples of an [`ActivityClock`] how long a connection has
/// been quiet.
#[derive(Debug)]
pub(crate) struct Quiet {
    seen: u64,
    since: Instant,
}

impl Quiet {
    pub(crate) fn new() -> Self {
        Quiet {
            seen: 0,
            since: Instant::now(),
        }
    }

    pub(crate) fn quiet_for(&mut self, clock: &ActivityClock) -> Duration {
        let ops = clock.ops();
        if ops != self.seen {
            self.seen = ops;
            self.since = Instant::now();
        }
        self.since.elapsed()
    }
}

/// An IO object that touches its clock on every read and write.
#[derive(Debug)]
pub(crate) struct IdleAware<T> {
    inner: T,
    clock: ActivityClock,
}

impl<T> IdleAware<T> {
    pub(crate) fn new(inner: T, clock: ActivityClock) -> Self {
        IdleAware { inner, clock }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for IdleAware<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.clock.touch();
        }
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for IdleAware<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        result
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
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.clock.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
