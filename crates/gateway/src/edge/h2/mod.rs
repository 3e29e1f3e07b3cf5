//! HTTP/2 to clients (RFC 9113), spoken here rather than through the h2
//! crate: h2 cost 46,400 instructions an HTTP/2 request through the
//! gateway against HAProxy's 35,000 in all, and no setting of it came
//! near (BENCHMARKS.md). A request's header block is decoded straight into
//! the HTTP/1.1 head the request path takes, and an answer's head is
//! encoded straight from the backend's parsed one: no `http` types, no
//! header maps, no second copy of either. `conn` reads and answers the
//! client's frames, `shared` is what the connection and its streams
//! share, `stream` is a stream as the request path's client connection,
//! `request` checks a request as the RFC asks, `hpack` and `frame` are the
//! wire formats. Each stream goes through the HTTP/1.1 request path
//! (`bridge`); the backends are spoken to in HTTP/1.1 as before.
//!
//! What bounds a connection: `max_concurrent_streams` (more are refused
//! with `REFUSED_STREAM`), the header block (twice `max_header_list_bytes`)
//! and its decoded list (`max_header_list_bytes`: past it a 431, sixteen
//! times past it an HPACK bomb, GOAWAY `ENHANCE_YOUR_CALM`), the receive
//! windows (what a client may send unread), the send buffer per stream
//! (what is held for a slow reader), the streams sent on to the shops at
//! once (`max_streams_forwarded`; the rest wait in the connection, up to
//! the queue's timeout), the frames owed to a client that does not read
//! (it is not read from past 1 MiB), and the meter's budgets for
//! floods of the frames that cost nothing to send: PING, SETTINGS,
//! RST_STREAM, empty DATA, PRIORITY and CONTINUATION.

pub(crate) mod bridge;
mod conn;
pub(crate) mod frame;
mod hpack;
pub(crate) mod meter;
mod request;
mod shared;
mod stream;

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

use super::config::Http2File;
use super::metrics::EdgeMetrics;
use bridge::StreamParts;
use conn::{Accepted, Conn, Rules};
use frame::Reason;
use meter::{FloodAlarm, Metered};

use crate::proxy::answer::Refusal;

/// How long a connection told GOAWAY has to take it before it is cut.
const CLOSING_GRACE: Duration = Duration::from_secs(5);

/// Reads the client's connection preface; what came after it stays in
/// `read`.
async fn read_preface<S: AsyncRead + Unpin>(
    io: &mut S,
    read: &mut BytesMut,
) -> std::io::Result<()> {
    while read.len() < frame::PREFACE.len() {
        if io.read_buf(read).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    if &read[..frame::PREFACE.len()] != frame::PREFACE {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not the HTTP/2 preface",
        ));
    }
    let _ = read.split_to(frame::PREFACE.len());
    Ok(())
}

/// Serves one HTTP/2 connection (after TLS chose `h2`) until it closes.
pub(crate) async fn serve<S>(
    io: S,
    rules: Http2File,
    parts: Arc<StreamParts>,
    metrics: Arc<EdgeMetrics>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let alarm = Arc::new(FloodAlarm::default());
    let mut io = Metered::new(io, Arc::clone(&alarm));
    let mut read = BytesMut::with_capacity(frame::HEAD_LEN + frame::DEFAULT_MAX_FRAME);
    match tokio::time::timeout(parts.limits.header, read_preface(&mut io, &mut read)).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "HTTP/2 preface refused");
            return;
        }
        Err(_) => return,
    }
    let mut conn = Conn::new(io, read, Rules::of(&rules));
    metrics.h2_connections.inc();
    // The futures the loop waits on besides the next stream are made once:
    // made afresh for every stream, they cost a timer and two waiter
    // registrations per request.
    // The gateway stops, or this connection's thread is beyond the CPU
    // quota's share (`crate::threads`): GOAWAY NO_ERROR either way.
    let mut closing = parts.closing.thread_closes.clone();
    let stop = closing.wait_for(|closes| *closes);
    let flood = alarm.rung();
    let idle = tokio::time::sleep(parts.limits.idle);
    let cut = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(stop, flood, idle, cut);
    // The streams in progress are polled here, in the connection's task,
    // not spawned: a task per stream cost about 5 % of an HTTP/2 request
    // in instructions (the task's allocation and the copies of its future
    // in and out), and a stream's answer is written by this task anyway.
    let mut streams = Streams::new();
    // Past `max_streams_forwarded` (0: no cap), a connection's streams
    // wait here, not at the shops: an answer keeps its connection to its
    // shop until the client has taken it, and a client that opens a
    // hundred streams and reads nothing would otherwise hold a hundred of
    // them, and with them the shop's room for answers that wait on
    // clients (CVE-2016-1546, Apache's mod_http2, was this starvation).
    let forwarded_at_once = match rules.max_streams_forwarded {
        0 => usize::MAX,
        most => most as usize,
    };
    let mut deferred = Deferred::new(rules.max_concurrent_streams as usize, Arc::clone(&metrics));
    // As long as a stream may wait in the connection; a reload applies it
    // to new connections, as it does the cap.
    let queue_timeout = parts.proxy.live().settings.queue_timeout;
    let waited_out = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(waited_out);
    // Whether a stream came since the idle timer last fired: the
    // connection is closed once it has been idle for one to two
    // `client_idle_ms`.
    let mut came = false;
    // A NO_ERROR GOAWAY is sent; and its last step (`Conn::go_away`), after
    // which no stream comes and the connection ends with its last stream.
    let mut closing = false;
    let mut drained = false;
    loop {
        // Each wait but the last says whether to close, and how.
        let close = tokio::select! {
            // Streams first, all that are ready, so that the frames they
            // queue go out in one write after them.
            biased;
            () = poll_fn(|cx| run_ready(&mut streams, &mut deferred, cx, closing && drained, |accepted| {
                forward(accepted, &parts, &metrics, None)
            })) => break,
            next = poll_fn(|cx| conn.poll_next(cx)) => match next {
                Ok(accepted) => {
                    metrics.h2_streams.inc();
                    came = true;
                    if streams.len() < forwarded_at_once {
                        streams.push(forward(accepted, &parts, &metrics, None));
                    } else {
                        metrics.h2_streams_deferred.inc();
                        deferred.defer(accepted, Instant::now());
                        waited_out.as_mut().reset(deferred.oldest_since() + queue_timeout);
                    }
                    None
                }
                Err(conn::Ended::Closed) => break,
                Err(conn::Ended::Drained) => {
                    drained = true;
                    None
                }
                Err(conn::Ended::Error(reason)) => {
                    if reason == Reason::EnhanceYourCalm {
                        metrics.flood("h2_limit");
                    }
                    tracing::debug!(peer = %parts.peer.addr, ?reason, "HTTP/2 connection error");
                    Some(reason)
                }
            },
            kind = &mut flood, if !closing => {
                tracing::warn!(peer = %parts.peer.addr, kind = kind.as_str(), "HTTP/2 flood; GOAWAY ENHANCE_YOUR_CALM");
                metrics.flood(kind.as_str());
                Some(Reason::EnhanceYourCalm)
            }
            _ = &mut stop, if !closing => Some(Reason::NoError),
            () = &mut idle, if !closing => {
                if !came && streams.is_empty() {
                    Some(Reason::NoError)
                } else {
                    came = false;
                    idle.as_mut().reset(Instant::now() + parts.limits.idle);
                    None
                }
            }
            () = &mut cut, if closing => break,
            // Streams that waited in the connection as long as a request
            // may wait in the queue get the queue's 503, through the
            // request path (counted, logged): without it a customer past
            // the cap waited for as long as the streams ahead of it held
            // their places, where one in the queue is answered at its
            // timeout (`tests/gateway_h2_overload.rs`).
            () = &mut waited_out, if !deferred.is_empty() => {
                let waited_from = Instant::now().checked_sub(queue_timeout);
                while let Some(accepted) = waited_from.and_then(|from| deferred.waited_since(from)) {
                    metrics.h2_streams_deferred_timed_out.inc();
                    streams.push(forward(accepted, &parts, &metrics, Some(Refusal::QueueTimeout)));
                }
                if !deferred.is_empty() {
                    waited_out.as_mut().reset(deferred.oldest_since() + queue_timeout);
                }
                None
            }
        };
        if let Some(reason) = close {
            metrics.goaway(reason);
            drained = conn.go_away(reason);
            if reason != Reason::NoError {
                // Anything but NO_ERROR closes now; NO_ERROR lets the
                // streams in progress finish.
                break;
            }
            closing = true;
            cut.as_mut().reset(Instant::now() + CLOSING_GRACE);
        }
    }
    // Streams never forwarded are reset (CANCEL) as they go, and whatever
    // is queued (the GOAWAY, those resets, the last answers) goes out,
    // bounded by the grace a closing connection has.
    drop(deferred);
    let _ = tokio::time::timeout(CLOSING_GRACE, conn.close()).await;
    metrics.h2_connections.dec();
    // Not tied to the connection's life: a stream's request path runs to
    // its end (see `bridge`), its writes failing once the connection is
    // gone, as an HTTP/1.1 client's do when it hangs up.
    if !streams.is_empty() {
        tokio::spawn(async move { while streams.next().await.is_some() {} });
    }
}

/// One stream through the request path, as a future of its connection.
/// `refused`: its answer is decided already (a 503 for one that waited
/// in its connection too long).
fn forward(
    accepted: Accepted,
    parts: &Arc<StreamParts>,
    metrics: &Arc<EdgeMetrics>,
    refused: Option<Refusal>,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    let (parts, metrics) = (Arc::clone(parts), Arc::clone(metrics));
    Box::pin(async move {
        if let Err(bridge::Ended::Reset) = bridge::serve(accepted, &parts, refused).await {
            metrics.h2_resets_received.inc();
        }
    })
}

/// Whether a waiting stream is still to be served: not reset, its
/// connection not gone. A client's reset is counted here, as `bridge` would
/// have counted it.
fn still_wanted(stream: &shared::StreamRef, metrics: &EdgeMetrics) -> bool {
    match stream.gone() {
        None => true,
        Some(gone) => {
            if gone.reset {
                metrics.h2_resets_received.inc();
            }
            false
        }
    }
}

/// A connection's streams waiting for one of its `max_streams_forwarded`
/// places, oldest first. One the client resets while it waits is never
/// sent on.
struct Deferred {
    /// Each with when it began to wait.
    waiting: VecDeque<(Accepted, Instant)>,
    /// Past this many, those the client reset are let go at once: a reset
    /// stream no longer counts as open, so a client resetting its waiting
    /// streams and opening more could otherwise grow this without bound.
    most: usize,
    metrics: Arc<EdgeMetrics>,
}

impl Deferred {
    fn new(most: usize, metrics: Arc<EdgeMetrics>) -> Deferred {
        Deferred {
            waiting: VecDeque::new(),
            most,
            metrics,
        }
    }

    fn defer(&mut self, accepted: Accepted, now: Instant) {
        if self.waiting.len() >= self.most {
            let metrics = &self.metrics;
            self.waiting
                .retain(|(waiting, _)| still_wanted(&waiting.stream, metrics));
        }
        self.waiting.push_back((accepted, now));
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// When the oldest began to wait (now, if none waits).
    fn oldest_since(&self) -> Instant {
        self.waiting
            .front()
            .map_or_else(Instant::now, |(_, since)| *since)
    }

    /// The oldest not reset.
    fn next(&mut self) -> Option<Accepted> {
        self.next_since(None)
    }

    /// The oldest not reset, if it began to wait at or before `before`.
    fn waited_since(&mut self, before: Instant) -> Option<Accepted> {
        self.next_since(Some(before))
    }

    fn next_since(&mut self, before: Option<Instant>) -> Option<Accepted> {
        while let Some((_, since)) = self.waiting.front() {
            if before.is_some_and(|before| *since > before) {
                return None;
            }
            let (accepted, _) = self.waiting.pop_front()?;
            if still_wanted(&accepted.stream, &self.metrics) {
                return Some(accepted);
            }
        }
        None
    }
}

/// The streams of one connection in progress.
type Streams = FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// Polls every stream that was woken, until none is ready, forwarding a
/// deferred stream in the place of each that ends; done only once the
/// connection is closing and its last stream has ended.
fn run_ready(
    streams: &mut Streams,
    deferred: &mut Deferred,
    cx: &mut Context<'_>,
    closing: bool,
    forward: impl Fn(Accepted) -> Pin<Box<dyn Future<Output = ()> + Send>>,
) -> Poll<()> {
    while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {
        if let Some(next) = deferred.next() {
            streams.push(forward(next));
        }
    }
    if closing && streams.is_empty() && deferred.is_empty() {
        Poll::Ready(())
    } else {
        Poll::Pending
    }
}
