//! HTTP/2 to clients, with the h2 crate: the connection is driven here so
//! that its GOAWAYs can be counted by error code and a flood the meter
//! finds can be answered with `ENHANCE_YOUR_CALM` (hyper's HTTP/2 server
//! hides both). Each stream goes through the HTTP/1.1 request path
//! (`bridge`); the backends are spoken to in HTTP/1.1 as before.
//!
//! What bounds a connection: `max_concurrent_streams` (more are refused
//! with `REFUSED_STREAM`), the decoded header list (`max_header_list_size`,
//! and h2 closes with `ENHANCE_YOUR_CALM` far beyond it: an HPACK bomb),
//! the receive windows (what a client may send unread), the send buffer
//! per stream (what is held for a slow reader), h2's own limits on reset
//! streams pending accept and on CONTINUATION frames, and the meter's
//! budgets for the rest.

pub(crate) mod bridge;
pub(crate) mod meter;
mod stream;
mod woken;

use std::convert::Infallible;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::config::Http2File;
use super::metrics::EdgeMetrics;
use bridge::{Ended, StreamParts};
use meter::{FloodAlarm, Metered};
use woken::WokenOnly;

/// How long a connection told GOAWAY has to take it before it is cut.
const CLOSING_GRACE: Duration = Duration::from_secs(5);

/// Streams a client may reset before h2 has handed them over (h2's own
/// rapid-reset bound; the meter bounds resets of streams already served).
const PENDING_RESETS: usize = 20;

fn builder(rules: &Http2File) -> h2::server::Builder {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(rules.max_concurrent_streams)
        .max_header_list_size(rules.max_header_list_bytes)
        .initial_window_size(rules.stream_window_bytes)
        .initial_connection_window_size(rules.connection_window_bytes)
        .max_send_buffer_size(rules.send_buffer_bytes as usize)
        .max_pending_accept_reset_streams(PENDING_RESETS)
        .max_concurrent_reset_streams(rules.max_concurrent_streams as usize);
    builder
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
    let io = Metered::new(io, Arc::clone(&alarm));
    let handshake = tokio::time::timeout(
        parts.limits.header,
        builder(&rules).handshake::<_, Bytes>(io),
    );
    let mut conn = match handshake.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "HTTP/2 preface refused");
            return;
        }
        Err(_) => return,
    };
    metrics.h2_connections.inc();
    // The futures the loop waits on besides the next stream are made once:
    // made afresh for every stream, they cost a timer and two waiter
    // registrations per request.
    let mut stopping = parts.stopping.0.clone();
    let stop = stopping.wait_for(|stop| *stop);
    let flood = alarm.rung();
    let idle = tokio::time::sleep(parts.limits.idle);
    let cut = tokio::time::sleep(Duration::MAX / 4);
    tokio::pin!(stop, flood, idle, cut);
    // The streams in progress are polled here, in the connection's task,
    // not spawned: a task per stream cost about 5 % of an HTTP/2 request
    // in instructions (the task's allocation and the copies of its future
    // in and out), and a stream's answer wakes this task anyway to be
    // written.
    let mut streams = Streams::new();
    let frames = WokenOnly::new();
    // Whether a stream came since the idle timer last fired: the
    // connection is closed once it has been idle for one to two
    // `client_idle_ms`.
    let mut came = false;
    let mut closing = false;
    loop {
        // Each wait but the last says whether to close, and how.
        let close = tokio::select! {
            // Streams first, all that are ready, so that h2's connection
            // writes their answers in one pass after them.
            biased;
            never = poll_fn(|cx| run_ready(&mut streams, cx)) => match never {},
            next = poll_fn(|cx| frames.poll(cx, |cx| conn.poll_accept(cx))) => match next {
                Some(Ok((request, respond))) => {
                    metrics.h2_streams.inc();
                    came = true;
                    let (parts, metrics) = (Arc::clone(&parts), Arc::clone(&metrics));
                    streams.push(Box::pin(async move {
                        if let Err(Ended::Reset) = bridge::serve(request, respond, &parts).await {
                            metrics.h2_resets_received.inc();
                        }
                    }));
                    None
                }
                Some(Err(err)) => {
                    if err.is_go_away() && err.is_library() {
                        if let Some(reason) = err.reason() {
                            metrics.goaway(reason);
                            if reason == h2::Reason::ENHANCE_YOUR_CALM {
                                metrics.flood("h2_limit");
                            }
                        }
                    }
                    tracing::debug!(peer = %parts.peer.addr, error = %err, "HTTP/2 connection ended");
                    break;
                }
                None => break,
            },
            kind = &mut flood, if !closing => {
                tracing::warn!(peer = %parts.peer.addr, kind = kind.as_str(), "HTTP/2 flood; GOAWAY ENHANCE_YOUR_CALM");
                metrics.flood(kind.as_str());
                Some(h2::Reason::ENHANCE_YOUR_CALM)
            }
            _ = &mut stop, if !closing => Some(h2::Reason::NO_ERROR),
            () = &mut idle, if !closing => {
                if !came && streams.is_empty() {
                    Some(h2::Reason::NO_ERROR)
                } else {
                    came = false;
                    idle.as_mut().reset(Instant::now() + parts.limits.idle);
                    None
                }
            }
            () = &mut cut, if closing => break,
        };
        if let Some(reason) = close {
            // NO_ERROR lets the streams in progress finish; anything else
            // closes now.
            metrics.goaway(reason);
            if reason == h2::Reason::NO_ERROR {
                conn.graceful_shutdown();
            } else {
                conn.abrupt_shutdown(reason);
            }
            // h2 writes the GOAWAY when the connection is next polled.
            frames.wake();
            closing = true;
            cut.as_mut().reset(Instant::now() + CLOSING_GRACE);
        }
    }
    metrics.h2_connections.dec();
    // Not tied to the connection's life: a stream's request path runs to
    // its end (see `bridge`), its writes failing once the connection is
    // gone, as an HTTP/1.1 client's do when it hangs up.
    if !streams.is_empty() {
        tokio::spawn(async move { while streams.next().await.is_some() {} });
    }
}

/// The streams of one connection in progress.
type Streams = FuturesUnordered<Pin<Box<dyn Future<Output = ()> + Send>>>;

/// Polls every stream that was woken, until none is ready; never done.
fn run_ready(streams: &mut Streams, cx: &mut Context<'_>) -> Poll<Infallible> {
    while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
    Poll::Pending
}
