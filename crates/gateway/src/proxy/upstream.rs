//! Keep-alive connections to the backends, one pool per serving thread,
//! and one exchange on them: the request written, the response head read.
//! The exchange runs in the task that serves the client, which then copies
//! the response body straight from the backend's socket to the client's;
//! the connection goes back to the pool at the body's last byte. The
//! thread's runtime is single-threaded, so the pool's lock is never
//! contended and a connection never changes thread.

use std::future::poll_fn;
use std::io;
use std::sync::Mutex;
use std::task::{ready, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::uri::Authority;
use http::Method;
use tokio::net::TcpStream;

use super::failure::Happened;
use crate::http1::body::{put_chunk, State, LAST_CHUNK};
use crate::http1::response::{parse_response, ResponseHead};
use crate::http1::{give_back_room, put_field, put_number, Stream, Wire, BACKEND_ROOM};

/// Connections kept per backend per thread at most.
const MAX_KEPT: usize = 1024;

/// The body one try sends. The gateway frames it itself: the client's
/// `Content-Length` and `Transfer-Encoding` are not in the head.
pub(crate) enum TryBody {
    /// Read whole beforehand, so it can be sent again. `announced`: the
    /// client sent a length (perhaps 0), so the backend gets one too.
    Buffered { bytes: Bytes, announced: bool },
    /// The client's body, streamed through once, as `state` frames it;
    /// chunked to the backend unless its length is known.
    Streaming {
        state: State,
        length: Option<u64>,
        limit: u64,
    },
}

/// One request as it goes to a backend.
pub(crate) struct Outgoing<'a, C> {
    pub(crate) method: &'a Method,
    /// The request line and headers, without the blank line that ends the
    /// head.
    pub(crate) head: &'a [u8],
    /// Whether the client sent a `Host` (if not, the backend's is added).
    pub(crate) has_host: bool,
    pub(crate) body: TryBody,
    /// The client: where a streamed body comes from, and who may give up
    /// on the request while its answer is awaited.
    pub(crate) client: &'a mut Wire<C>,
    /// Room to put the request together, kept by the client connection.
    pub(crate) scratch: &'a mut BytesMut,
}

/// A backend's answer: its head, and the connection its body comes on.
pub(crate) struct Answer {
    pub(crate) head: ResponseHead,
    pub(crate) wire: Wire,
}

pub(crate) struct UpstreamPool {
    /// Per backend; a list, not a map: there are a handful of backends,
    /// and comparing a few short strings costs less than hashing one.
    kept: Mutex<Vec<(Authority, Vec<Wire>)>>,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool").finish_non_exhaustive()
    }
}

impl UpstreamPool {
    pub(crate) fn new() -> UpstreamPool {
        UpstreamPool {
            kept: Mutex::new(Vec::new()),
        }
    }

    /// Sends `request` to `authority` and returns the response once its
    /// head has arrived. A client that gives up on the request meanwhile
    /// (`Stream::ABANDONS`: an HTTP/2 stream it reset, a browser that left
    /// the page) ends the wait: the backend connection is dropped, closed,
    /// so the shop stops working on the request and its slot is free for
    /// a customer still waiting. A new connection to the backend gets
    /// `connect_timeout` (as the config reads now: a reload changes it).
    pub(crate) async fn send<C: Stream>(
        &self,
        authority: &Authority,
        request: Outgoing<'_, C>,
        connect_timeout: Duration,
    ) -> Result<Answer, Happened> {
        let mut wire = match self.take(authority) {
            Some(kept) => kept,
            // Boxed: connecting is rare on kept connections, and its state
            // would otherwise take room in every connection's task (see
            // `WaitQueue` on memory per waiting request).
            None => Box::pin(connect(authority, connect_timeout)).await?,
        };
        let Outgoing {
            method,
            head,
            has_host,
            body,
            client,
            scratch,
        } = request;
        write_request(
            &mut wire,
            authority,
            (head, has_host),
            (body, &mut *client),
            scratch,
        )
        .await?;
        // Parsed only when bytes came since the last look: a parse sets up
        // room for every header it could find, which costs more than the
        // rest of a look for nothing.
        let mut unparsed = !wire.buffer.is_empty();
        let head = poll_fn(|cx| loop {
            if unparsed {
                match parse_response(&mut wire.buffer, method) {
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => unparsed = false,
                    Err(err) => return Poll::Ready(Err(Happened::Broke(io::Error::other(err)))),
                }
            }
            if C::ABANDONS && client.stream.poll_abandoned(cx).is_ready() {
                return Poll::Ready(Err(Happened::Abandoned));
            }
            match ready!(wire.poll_read_more(cx)) {
                Ok(0) => {
                    return Poll::Ready(Err(Happened::Broke(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the backend closed the connection without answering",
                    ))))
                }
                Ok(_) => unparsed = true,
                Err(err) => return Poll::Ready(Err(Happened::Broke(err))),
            }
        })
        .await?;
        Ok(Answer { head, wire })
    }

    /// A kept connection that is still open; closed ones are dropped on
    /// the way.
    fn take(&self, authority: &Authority) -> Option<Wire> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let (_, list) = kept
            .iter_mut()
            .find(|(a, _)| a.as_str() == authority.as_str())?;
        while let Some(wire) = list.pop() {
            if wire.looks_open() {
                return Some(wire);
            }
        }
        None
    }

    /// Keeps a connection whose last response was read to its end (and
    /// gives back what a large response made its buffer grow to).
    pub(crate) fn put_back(&self, authority: &Authority, mut wire: Wire) {
        give_back_room(&mut wire.buffer);
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let at = match kept
            .iter()
            .position(|(a, _)| a.as_str() == authority.as_str())
        {
            Some(at) => at,
            None => {
                kept.push((authority.clone(), Vec::new()));
                kept.len() - 1
            }
        };
        let list = &mut kept[at].1;
        if list.len() < MAX_KEPT {
            list.push(wire);
        }
    }
}

async fn connect(authority: &Authority, timeout: Duration) -> Result<Wire, Happened> {
    let connecting = TcpStream::connect(authority.as_str());
    let stream = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return Err(Happened::NotConnected(err.to_string())),
        Err(_) => return Err(Happened::ConnectTimedOut(timeout)),
    };
    let _ = stream.set_nodelay(true);
    Ok(Wire::new(stream, BACKEND_ROOM))
}

/// Writes the head and body. A buffered body goes in the same write as
/// the head; a streamed one follows piece by piece.
async fn write_request<C: Stream>(
    wire: &mut Wire,
    authority: &Authority,
    (head, has_host): (&[u8], bool),
    (body, client): (TryBody, &mut Wire<C>),
    out: &mut BytesMut,
) -> Result<(), Happened> {
    let sent = Happened::Broke;
    out.clear();
    out.put_slice(head);
    if !has_host {
        put_field(out, b"host", authority.as_str().as_bytes());
    }
    let (mut state, length, limit) = match body {
        TryBody::Buffered { bytes, announced } => {
            if announced || !bytes.is_empty() {
                put_number(out, b"content-length", bytes.len() as u64);
            }
            out.put_slice(b"\r\n");
            out.put_slice(&bytes);
            return wire.write_all(out).await.map_err(sent);
        }
        TryBody::Streaming {
            state,
            length,
            limit,
        } => (state, length, limit),
    };
    match length {
        Some(length) => put_number(out, b"content-length", length),
        None => put_field(out, b"transfer-encoding", b"chunked"),
    }
    out.put_slice(b"\r\n");
    wire.write_all(out).await.map_err(sent)?;
    let mut total = 0u64;
    loop {
        let piece = client
            .body_piece(&mut state)
            .await
            .map_err(|err| Happened::ClientBody {
                too_large: false,
                detail: format!("the request body could not be read: {err}"),
            })?;
        let Some(data) = piece else { break };
        total += data.len() as u64;
        if total > limit {
            return Err(Happened::ClientBody {
                too_large: true,
                detail: format!("the body is larger than {limit} bytes"),
            });
        }
        if length.is_some() {
            wire.write_all(&data).await.map_err(sent)?;
        } else {
            out.clear();
            put_chunk(out, &data);
            wire.write_all(out).await.map_err(sent)?;
        }
    }
    if length.is_none() {
        wire.write_all(LAST_CHUNK).await.map_err(sent)?;
    }
    Ok(())
}
