//! One HTTP/2 stream through the HTTP/1.1 request path (`stream`: the
//! stream as the path's client connection).

use std::future::poll_fn;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::conn::Accepted;
use super::frame::Reason;
use super::request::Refused;
use super::stream::StreamIo;
use crate::proxy::answer::Refusal;
use crate::proxy::client::{ClientConn, ClientLimits};
use crate::proxy::headers::PeerIp;
use crate::proxy::relay::{Pace, Stall};
use crate::proxy::{Alarm, Proxy, ThreadParts};
use crate::threads::Closing;

/// Room made for a stream's request head to a backend.
const STREAM_ROOM: usize = 1024;

/// What each stream of a connection shares.
pub(crate) struct StreamParts {
    pub(crate) peer: PeerIp,
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) thread: ThreadParts,
    pub(crate) limits: ClientLimits,
    pub(crate) closing: Closing,
    /// Added to every answer (HSTS).
    pub(crate) added: Bytes,
    pub(crate) alarms: Alarms,
}

/// Timers of a connection's finished streams, for its next ones: a timer
/// made and dropped per stream (its allocation, and its place in the
/// runtime's wheel taken and given back) cost nearly 2 % of an HTTP/2
/// request. A kept timer still armed rings once, for nothing, at its
/// deadline. At most one per stream the connection may have open.
pub(crate) struct Alarms {
    kept: Mutex<Vec<Alarm>>,
    most: usize,
}

impl Alarms {
    pub(crate) fn new(most: u32) -> Alarms {
        Alarms {
            kept: Mutex::new(Vec::new()),
            most: most as usize,
        }
    }

    fn take(&self) -> Alarm {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.pop().unwrap_or_else(Alarm::new)
    }

    fn give_back(&self, alarm: Alarm) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if kept.len() < self.most {
            kept.push(alarm);
        }
    }
}

/// Why a stream ended early.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The client reset it.
    Reset,
    /// The request was refused, or its answer could not be sent whole.
    Broken,
}

/// Serves one stream to its end. It is never cancelled: the request path
/// keeps its accounting (slots, in-flight counts) only by running to its
/// end. A reset or a closed connection makes its writes fail, and it ends
/// there, as it does when an HTTP/1.1 client hangs up.
/// `refused`: the answer is decided already (`ClientConn::refused`).
pub(crate) async fn serve(
    accepted: Accepted,
    parts: &StreamParts,
    refused: Option<Refusal>,
) -> Result<(), Ended> {
    let Accepted {
        stream,
        request,
        has_body,
        held,
    } = accepted;
    let parsed = match request {
        Ok(fields) => fields.into_head(has_body).map_err(|_| Refused::Malformed),
        Err(refused) => Err(refused),
    };
    let (head, framing) = match parsed {
        Ok(parsed) => parsed,
        // RFC 9113 section 8.2.2 / RFC 6585: a header list past the limit
        // is answered 431.
        Err(Refused::TooLarge) => {
            let _ = stream.send_headers(431, |_| {}, true);
            return Err(Ended::Broken);
        }
        // A head no request may have (two hosts, a bad length).
        Err(Refused::Malformed) => {
            stream.send_reset(Reason::ProtocolError);
            return Err(Ended::Broken);
        }
    };
    let io = StreamIo::new(stream, head.method.clone(), framing, held);
    let mut conn = ClientConn::new(
        io,
        parts.peer.clone(),
        parts.closing.clone(),
        parts.added.clone(),
    );
    conn.alarm = parts.alarms.take();
    conn.refused = refused;
    // A stream's connection serves one request: room for the backend's
    // request head is made once, not grown field by field.
    conn.scratch.reserve(STREAM_ROOM);
    conn.upstream_head.reserve(STREAM_ROOM);
    // Boxed: the request path's future is large, and the stream's future
    // would otherwise be copied whole when it is made and moved.
    let _ = Box::pin(parts.proxy.handle(&parts.thread, &mut conn, head)).await;
    let io = &mut conn.wire.stream;
    // The last of the answer may still wait for the client's window, for
    // as long as a client may take none of its answer, as in the relay.
    let live = parts.proxy.live();
    let mut pace = Pace {
        alarm: &mut conn.alarm,
        client: live.settings.client_send_timeout,
        backend: live.settings.upstream_timeout,
        metrics: &parts.proxy.metrics,
        // The request path gave it back.
        slot: None,
    };
    let flushed = poll_fn(|cx| std::pin::Pin::new(&mut *io).poll_flush(cx));
    let _ = pace.within(Stall::Client, flushed).await;
    let outcome = if io.complete {
        Ok(())
    } else if io.reset {
        Err(Ended::Reset)
    } else {
        Err(Ended::Broken)
    };
    io.finish();
    parts
        .alarms
        .give_back(std::mem::replace(&mut conn.alarm, Alarm::new()));
    outcome
}
