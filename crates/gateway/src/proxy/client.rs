//! One customer connection: requests read one after another (pipelined
//! ones too), each answered before the next is read, with the client
//! timeouts: a head must arrive whole within `client_header_ms` of its
//! first byte, and a keep-alive connection with no request for
//! `client_idle_ms` is closed.
//!
//! When the gateway stops, a connection is not cut under its client: the
//! answer being written says `Connection: close`; an idle keep-alive
//! connection stays open for `shutdown_idle_grace_ms` in case a request is
//! already on its way, and that request is answered with `Connection:
//! close`. Only then is it closed. Closing it at once would fail the
//! request a client sent a moment before it saw the close.
//!
//! The idle close races a client's reuse all the same: a request sent as
//! the gateway closes the connection is lost, and a client that cannot
//! tell whether it was read may not send it again (a POST). So every
//! answer on HTTP/1.1 says how long the connection stays idle
//! (`keep-alive: timeout=N`, a second under `client_idle_ms`), and the
//! clients that read it stop reusing it before that: Node's http agent a
//! second before N, its fetch (undici) two. Untold, Node's default agent
//! keeps an idle connection 5 s, the gateway's own default: the two
//! closed it at the same moment.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::time::Instant;

use super::answer::Refusal;
use super::headers::PeerIp;
use super::{Alarm, Proxy, ThreadParts};
use crate::http1::request::{parse_request, RequestHead};
use crate::http1::{give_back_room, put_field, AfterAnswer, HeadError, Stream, Wire, CLIENT_ROOM};
use crate::threads::Closing;

#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
    /// How long an idle connection stays open once the gateway stops.
    pub(crate) stop_grace: Duration,
}

/// A client connection and what its requests share.
pub(crate) struct ClientConn<S> {
    pub(crate) wire: Wire<S>,
    pub(crate) peer: PeerIp,
    /// For the backends' answers (see `Alarm`).
    pub(crate) alarm: Alarm,
    /// Room to put messages together, reused by every request.
    pub(crate) scratch: BytesMut,
    pub(crate) upstream_head: BytesMut,
    /// When the gateway stops, or the connection's thread is beyond the
    /// CPU quota's share: every answer from then on closes the connection.
    closing: Closing,
    /// Header lines added to every answer on this connection (HSTS over
    /// TLS); empty on plain HTTP.
    pub(crate) added: Bytes,
    /// `added`, and the idle timeout an HTTP/1.1 client is told of: for
    /// the answers after which the connection stays open.
    pub(crate) added_kept_open: Bytes,
    /// The answer decided before the request path: an HTTP/2 stream that
    /// waited in its connection (`max_streams_forwarded`) for as long as
    /// a request may wait in the queue gets the queue's 503.
    pub(crate) refused: Option<super::answer::Refusal>,
}

impl<S: Stream> ClientConn<S> {
    /// A connection whose requests are read from, and answered to, `stream`.
    pub(crate) fn new(stream: S, peer: PeerIp, closing: Closing, added: Bytes) -> ClientConn<S> {
        ClientConn {
            wire: Wire::new(stream, CLIENT_ROOM),
            peer,
            alarm: Alarm::new(),
            // Grown by the first request that needs them.
            scratch: BytesMut::new(),
            upstream_head: BytesMut::new(),
            closing,
            added_kept_open: added.clone(),
            added,
            refused: None,
        }
    }

    /// Whether this answer must close the connection: the gateway stops,
    /// or the connection is to move to a thread within the CPU quota.
    pub(crate) fn closing(&self) -> bool {
        self.closing.after_this_answer()
    }

    /// Between requests: what a large one made the buffers grow to goes.
    fn give_back_room(&mut self) {
        for buffer in [&mut self.scratch, &mut self.upstream_head] {
            buffer.clear();
            give_back_room(buffer);
        }
        give_back_room(&mut self.wire.buffer);
    }
}

pub(crate) async fn serve<S: Stream>(
    stream: S,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    thread: ThreadParts,
    limits: ClientLimits,
    closing: Closing,
    added: Bytes,
) {
    // Made once per connection: a fresh wait on every request would join
    // and leave the stop signal's waiter list each time. Only the
    // gateway's stop wakes an idle connection (see `Closing`).
    let mut stop_watch = closing.gateway_stops.clone();
    let mut stop = Stop {
        signal: Box::pin(async move {
            let _ = stop_watch.wait_for(|stop| *stop).await;
        }),
        since: None,
    };
    let mut conn = ClientConn::new(stream, PeerIp::of(peer), closing, added);
    conn.added_kept_open = with_idle_timeout(conn.added.clone(), limits.idle);
    // The client's own, apart from the backend's: each deadline then only
    // moves forward (see `Alarm`).
    let mut waiting_alarm = Alarm::new();
    loop {
        let next = next_request(&mut conn.wire, limits, &mut stop, &mut waiting_alarm).await;
        let request = match next {
            Ok(Some(request)) => request,
            Ok(None) => return,
            Err(err) => {
                let refusal = match err {
                    HeadError::TooLarge => Refusal::HeadTooLarge,
                    HeadError::Unsupported(_) => Refusal::NotImplemented,
                    _ => Refusal::BadRequest,
                };
                let mut out = BytesMut::new();
                refusal.write(
                    &mut out,
                    &err.to_string(),
                    0,
                    None,
                    AfterAnswer::Closed,
                    b"",
                );
                let _ = conn.wire.write_all(&out).await;
                return;
            }
        };
        let outcome = proxy.handle(&thread, &mut conn, request).await;
        conn.give_back_room();
        match outcome {
            Ok(true) => {}
            Ok(false) => return,
            Err(err) => {
                tracing::debug!(%peer, error = %err, "client connection ended with an error");
                return;
            }
        }
    }
}

/// The idle timeout an HTTP/1.1 client is told of: whole seconds, one
/// under `idle` rounded down, so that a client whose clock starts when it
/// has read the answer (after the gateway's has) still stops first. None
/// under two seconds: a client told 0 would not reuse the connection at
/// all (Node's agent), and one told 1 would be at the edge.
fn advertised_idle_secs(idle: Duration) -> Option<u64> {
    let secs = idle.as_secs();
    (secs >= 2).then(|| secs - 1)
}

/// `added` (the edge's header lines) with the `keep-alive` line after
/// them; made once per connection. Not for HTTP/2, where `Keep-Alive` is
/// a malformed answer (RFC 9113, 8.2.2) and the idle close is a GOAWAY.
fn with_idle_timeout(added: Bytes, idle: Duration) -> Bytes {
    let Some(secs) = advertised_idle_secs(idle) else {
        return added;
    };
    let mut lines = BytesMut::with_capacity(added.len() + 32);
    lines.put_slice(&added);
    let mut value = b"timeout=".to_vec();
    value.extend_from_slice(itoa::Buffer::new().format(secs).as_bytes());
    put_field(&mut lines, b"keep-alive", &value);
    lines.freeze()
}

/// The gateway's stop signal as a connection sees it.
struct Stop {
    signal: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    /// When this connection saw it, once it has.
    since: Option<Instant>,
}

/// The next request's head; `None` when the client closes, stays idle too
/// long, is too slow with its head, or stays idle through the grace after
/// the gateway stopped.
async fn next_request<S: Stream>(
    client: &mut Wire<S>,
    limits: ClientLimits,
    stop: &mut Stop,
    alarm: &mut Alarm,
) -> Result<Option<RequestHead>, HeadError> {
    let idle_until = Instant::now() + limits.idle;
    let mut head_until: Option<Instant> = None;
    loop {
        if !client.buffer.is_empty() {
            if let Some(request) = parse_request(&mut client.buffer)? {
                return Ok(Some(request));
            }
            head_until.get_or_insert_with(|| Instant::now() + limits.header);
        }
        let deadline = match (head_until, stop.since) {
            (Some(head_until), _) => head_until,
            (None, Some(since)) => idle_until.min(since + limits.stop_grace),
            (None, None) => idle_until,
        };
        let watching = stop.since.is_none();
        // Biased: a read that is ready wins without the alarm or the stop
        // signal being polled.
        tokio::select! {
            biased;
            read = client.read_more() => match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            },
            () = alarm.until(deadline) => return Ok(None),
            () = stop.signal.as_mut(), if watching => stop.since = Some(Instant::now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_told_a_whole_second_under_the_idle_timeout() {
        let told = |ms| advertised_idle_secs(Duration::from_millis(ms));
        assert_eq!(told(5_000), Some(4), "the default");
        assert_eq!(told(2_999), Some(1));
        assert_eq!(told(2_000), Some(1));
        assert_eq!(told(1_999), None, "too short to tell");
        assert_eq!(told(3_600_000), Some(3_599));
    }

    #[test]
    fn the_line_follows_the_edges_own_and_is_left_out_under_two_seconds() {
        let hsts = Bytes::from_static(b"strict-transport-security: max-age=63072000\r\n");
        let with = with_idle_timeout(hsts.clone(), Duration::from_millis(5_000));
        assert_eq!(
            &with[..],
            &b"strict-transport-security: max-age=63072000\r\nkeep-alive: timeout=4\r\n"[..]
        );
        let plain = with_idle_timeout(Bytes::new(), Duration::from_millis(60_000));
        assert_eq!(&plain[..], b"keep-alive: timeout=59\r\n");
        let short = with_idle_timeout(hsts.clone(), Duration::from_millis(1_500));
        assert_eq!(short, hsts);
    }
}
