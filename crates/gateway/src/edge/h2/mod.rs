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

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::config::Http2File;
use super::metrics::EdgeMetrics;
use bridge::{Ended, StreamParts};
use meter::{FloodAlarm, Metered};

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
pub(crate) async fn serve<S>(io: S, rules: Http2File, parts: StreamParts, metrics: Arc<EdgeMetrics>)
where
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
    let mut stopping = parts.stopping.0.clone();
    let mut streams = JoinSet::new();
    let mut idle_since = Instant::now();
    let mut closing: Option<Instant> = None;
    loop {
        let idle_until = idle_since + parts.limits.idle;
        let cut_at = closing.map(|since| since + CLOSING_GRACE);
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    metrics.h2_streams.inc();
                    let (parts, metrics) = (parts.clone(), Arc::clone(&metrics));
                    streams.spawn(async move {
                        if let Err(Ended::Reset) = bridge::serve(request, respond, parts).await {
                            metrics.h2_resets_received.inc();
                        }
                    });
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
                    tracing::debug!(peer = %parts.peer, error = %err, "HTTP/2 connection ended");
                    break;
                }
                None => break,
            },
            flood = alarm.rung(), if closing.is_none() => {
                tracing::warn!(peer = %parts.peer, kind = flood.as_str(), "HTTP/2 flood; GOAWAY ENHANCE_YOUR_CALM");
                metrics.flood(flood.as_str());
                metrics.goaway(h2::Reason::ENHANCE_YOUR_CALM);
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                closing = Some(Instant::now());
            }
            _ = stopping.wait_for(|stop| *stop), if closing.is_none() => {
                metrics.goaway(h2::Reason::NO_ERROR);
                conn.graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = tokio::time::sleep_until(idle_until), if closing.is_none() && streams.is_empty() => {
                metrics.goaway(h2::Reason::NO_ERROR);
                conn.graceful_shutdown();
                closing = Some(Instant::now());
            }
            () = sleep_until_some(cut_at) => break,
            Some(_) = streams.join_next(), if !streams.is_empty() => {
                if streams.is_empty() {
                    idle_since = Instant::now();
                }
            }
        }
    }
    // Streams still open end by themselves once the connection is gone
    // (their sends fail); their requests finish on the HTTP/1.1 side.
    streams.detach_all();
    metrics.h2_connections.dec();
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
