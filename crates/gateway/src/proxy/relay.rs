//! Copies a backend's answer to the client: the head as the client gets
//! it, then the body straight from the backend's socket, in as few writes
//! as the reads allow (a small answer goes out in one).
//!
//! Neither side may stall it for long: a client that takes none of its
//! answer for `client_send_ms`, or a backend that sends none of its body
//! for `upstream_ms`, has the answer cut off, so the backend's connection
//! it holds is freed. Otherwise a client that stops reading (or a shop
//! that hangs mid-body) holds it for as long as its connection lives.
//! The answer's slot under the backend's limit goes back sooner: once the
//! client, not the backend, keeps the answer waiting (`Slot::
//! wait_on_client`), for the backend is done with it.

use std::future::{poll_fn, Future};
use std::io;
use std::task::Poll;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use http::uri::Authority;

use super::slot::Slot;
use super::upstream::{Answer, UpstreamPool};
use super::Alarm;
use crate::http1::body::{put_chunk, step, State, Step, LAST_CHUNK};
use crate::http1::response::{write_client_head, AnswerHead, ClientFraming};
use crate::http1::{AfterAnswer, Stream, Wire};
use crate::metrics::GatewayMetrics;

/// Written out once this much is gathered.
const FLUSH_AT: usize = 64 * 1024;

/// Who stopped an answer's bytes from moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stall {
    Client,
    Backend,
}

impl Stall {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stall::Client => "client_stalled",
            Stall::Backend => "backend_stalled",
        }
    }
}

/// How long each side may keep an answer's bytes from moving, and where
/// a stall is counted.
pub(crate) struct Pace<'a> {
    pub(crate) alarm: &'a mut Alarm,
    pub(crate) client: Duration,
    pub(crate) backend: Duration,
    pub(crate) metrics: &'a GatewayMetrics,
    /// The slot the answer holds, given back while the client keeps the
    /// answer waiting (at most this many per backend, `[concurrency]
    /// max_waiting_on_clients`); `None` where none is held (an HTTP/2
    /// stream's last flush, after the request path ended).
    pub(crate) slot: Option<(&'a Slot, u32)>,
}

impl Pace<'_> {
    /// `io`'s result, or a `TimedOut` error (counted) if `who` keeps it
    /// from finishing for its limit. `io` done at its first poll (most
    /// writes and reads) never reads the clock nor touches the timer.
    /// One the client keeps waiting gives back the answer's slot first.
    pub(crate) async fn within<T>(
        &mut self,
        who: Stall,
        io: impl Future<Output = io::Result<T>>,
    ) -> io::Result<T> {
        let mut io = std::pin::pin!(io);
        if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await {
            return done;
        }
        let limit = match who {
            Stall::Client => {
                if let Some((slot, most)) = self.slot {
                    slot.wait_on_client(most);
                }
                self.client
            }
            Stall::Backend => self.backend,
        };
        let alarm = &mut *self.alarm;
        tokio::select! {
            biased;
            done = io => return done,
            () = alarm.until(tokio::time::Instant::now() + limit) => {}
        }
        self.metrics.cut(who);
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{}: nothing moved for {} ms",
                who.as_str(),
                limit.as_millis()
            ),
        ))
    }
}

/// Returns whether the whole body went through (if not, the client's
/// connection must close: its copy is cut short). The backend's connection
/// goes back to `pool` when its answer was read to the end. The gateway
/// adds `request_id` and the `extra` header lines to the head.
pub(crate) async fn relay<C: Stream>(
    client: &mut Wire<C>,
    answer: Answer,
    (request_id, extra): (&[u8], &[u8]),
    (client_http11, after): (bool, AfterAnswer),
    (pool, authority): (&UpstreamPool, &Authority),
    out: &mut BytesMut,
    mut pace: Pace<'_>,
) -> io::Result<bool> {
    let Answer { head, mut wire } = answer;
    let framing = ClientFraming::for_response(&head, client_http11);
    let chunked = framing == ClientFraming::Chunked;
    out.clear();
    let answer_head = AnswerHead {
        response: &head,
        request_id,
        framing,
        extra,
    };
    if !client.stream.take_answer_head(&answer_head)? {
        write_client_head(out, &answer_head, after);
    }
    let mut state = State::of(head.framing);
    loop {
        match step(&mut state, &mut wire.buffer) {
            Ok(Step::Data(data)) if chunked => put_chunk(out, &data),
            Ok(Step::Data(data)) => out.put_slice(&data),
            Ok(Step::End) => break,
            Ok(Step::NeedMore) => {
                if !out.is_empty() {
                    pace.within(Stall::Client, client.write_all(out)).await?;
                    out.clear();
                }
                match pace.within(Stall::Backend, wire.read_more()).await {
                    Ok(0) if state == State::UntilClose => state = State::Done,
                    Ok(0) | Err(_) => return Ok(false),
                    Ok(_) => {}
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "a backend's body was malformed; the client's copy is cut");
                pace.within(Stall::Client, client.write_all(out)).await?;
                return Ok(false);
            }
        }
        if out.len() >= FLUSH_AT {
            pace.within(Stall::Client, client.write_all(out)).await?;
            out.clear();
        }
    }
    if chunked {
        out.put_slice(LAST_CHUNK);
    }
    pace.within(Stall::Client, client.write_all(out)).await?;
    if head.reusable && wire.buffer.is_empty() {
        pool.put_back(authority, wire);
    }
    Ok(framing != ClientFraming::Close)
}
