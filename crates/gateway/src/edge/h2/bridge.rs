//! One HTTP/2 stream through the HTTP/1.1 request path (`stream`: the
//! stream as the path's client connection).

use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use bytes::Bytes;
use h2::server::SendResponse;
use h2::RecvStream;
use http::Request;
use tokio::io::AsyncWrite;
use tokio::sync::watch;

use super::stream::{http1_head, StreamIo};
use crate::http1::request::parse_request;
use crate::proxy::client::{ClientConn, ClientLimits};
use crate::proxy::{Proxy, ThreadParts};

/// Room made for a stream's request head to a backend.
const STREAM_ROOM: usize = 1024;

/// What each stream of a connection shares.
#[derive(Clone)]
pub(crate) struct StreamParts {
    pub(crate) peer: SocketAddr,
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) thread: ThreadParts,
    pub(crate) limits: ClientLimits,
    pub(crate) stopping: (watch::Receiver<bool>, Arc<AtomicBool>),
    /// Added to every answer (HSTS).
    pub(crate) added: Bytes,
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
pub(crate) async fn serve(
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    parts: StreamParts,
) -> Result<(), Ended> {
    let (mut head, framing) = http1_head(&request);
    let head = match parse_request(&mut head) {
        Ok(Some(head)) => head,
        // Only a header HTTP/1.1 cannot carry gets here.
        _ => {
            respond.send_reset(h2::Reason::PROTOCOL_ERROR);
            return Err(Ended::Broken);
        }
    };
    let io = StreamIo::new(request, framing, respond);
    let mut conn = ClientConn::new(io, parts.peer, Arc::clone(&parts.stopping.1), parts.added);
    // A stream's connection serves one request: room for the backend's
    // request head is made once, not grown field by field.
    conn.scratch.reserve(STREAM_ROOM);
    conn.upstream_head.reserve(STREAM_ROOM);
    // Boxed: the request path's future is large, and the stream's task
    // would otherwise be copied whole when it is spawned and when it ends.
    let _ = Box::pin(parts.proxy.handle(&parts.thread, &mut conn, head)).await;
    let io = &mut conn.wire.stream;
    // The last of the answer may still wait for the client's window.
    let _ = poll_fn(|cx| std::pin::Pin::new(&mut *io).poll_flush(cx)).await;
    let outcome = if io.complete {
        Ok(())
    } else if io.reset {
        Err(Ended::Reset)
    } else {
        Err(Ended::Broken)
    };
    io.finish();
    outcome
}
