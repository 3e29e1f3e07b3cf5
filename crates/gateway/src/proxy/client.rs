//! One customer connection: requests read one after another (pipelined
//! ones too), each answered before the next is read, with the client
//! timeouts: a head must arrive whole within `client_header_ms` of its
//! first byte, and a keep-alive connection with no request for
//! `client_idle_ms` is closed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::answer::Refusal;
use super::headers::PeerIp;
use super::{Alarm, Proxy, ThreadParts};
use crate::http1::request::{parse_request, RequestHead};
use crate::http1::{give_back_room, HeadError, Wire};

#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientLimits {
    pub(crate) header: Duration,
    pub(crate) idle: Duration,
}

/// A client connection and what its requests share.
pub(crate) struct ClientConn {
    pub(crate) wire: Wire,
    pub(crate) peer: PeerIp,
    /// For the backends' answers (see `Alarm`).
    pub(crate) upstream_alarm: Alarm,
    /// Room to put messages together, reused by every request.
    pub(crate) scratch: BytesMut,
    pub(crate) upstream_head: BytesMut,
}

impl ClientConn {
    /// Between requests: what a large one made the buffers grow to goes.
    fn give_back_room(&mut self) {
        for buffer in [&mut self.scratch, &mut self.upstream_head] {
            buffer.clear();
            give_back_room(buffer);
        }
        give_back_room(&mut self.wire.buffer);
    }
}

pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    proxy: Arc<Proxy>,
    thread: ThreadParts,
    limits: ClientLimits,
    stopping: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut conn = ClientConn {
        wire: Wire::new(stream),
        peer: PeerIp::of(peer),
        upstream_alarm: Alarm::new(),
        scratch: BytesMut::with_capacity(4096),
        upstream_head: BytesMut::with_capacity(1024),
    };
    // Made once per connection: a fresh wait on every request would join
    // and leave the stop signal's waiter list each time.
    let mut stop_watch = stopping.clone();
    let stop = std::pin::pin!(async move {
        let _ = stop_watch.wait_for(|stop| *stop).await;
    });
    let mut stop = stop;
    // The client's own, apart from the backend's: each deadline then only
    // moves forward (see `Alarm`).
    let mut waiting_alarm = Alarm::new();
    loop {
        let request =
            match next_request(&mut conn.wire, limits, stop.as_mut(), &mut waiting_alarm).await {
                Ok(Some(request)) => request,
                Ok(None) => return,
                Err(err) => {
                    let refusal = match err {
                        HeadError::TooLarge => Refusal::HeadTooLarge,
                        HeadError::Unsupported(_) => Refusal::NotImplemented,
                        _ => Refusal::BadRequest,
                    };
                    let mut out = BytesMut::new();
                    refusal.write(&mut out, &err.to_string(), 0, None, true);
                    let _ = conn.wire.write_all(&out).await;
                    return;
                }
            };
        let outcome = proxy.handle(&thread, &mut conn, request).await;
        conn.give_back_room();
        match outcome {
            Ok(true) if !*stopping.borrow() => {}
            Ok(_) => return,
            Err(err) => {
                tracing::debug!(%peer, error = %err, "client connection ended with an error");
                return;
            }
        }
    }
}

/// The next request's head; `None` when the client closes, stays idle too
/// long, is too slow with its head, or the gateway stops between requests.
async fn next_request(
    client: &mut Wire,
    limits: ClientLimits,
    mut stop: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
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
        let waiting = head_until.is_none();
        let deadline = head_until.unwrap_or(idle_until);
        // Biased: a read that is ready wins without the alarm or the stop
        // signal being polled.
        tokio::select! {
            biased;
            read = client.read_more() => match read {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {}
            },
            () = alarm.until(deadline) => return Ok(None),
            () = stop.as_mut(), if waiting => return Ok(None),
        }
    }
}
