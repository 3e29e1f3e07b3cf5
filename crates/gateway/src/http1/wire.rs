//! One connection and what has been read from it but not yet used. The
//! connection is any byte stream (`Stream`): plain TCP today, TLS later, so
//! the request path is written once for both.

use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::body::{step, State, Step};
use super::response::AnswerHead;

/// How much room a read asks for, on a backend's connection: answers can be
/// large, and there are few such connections.
pub(crate) const BACKEND_ROOM: usize = 16 * 1024;
/// On a client's connection: requests are small, and there may be ten
/// thousand connections, most of them waiting. A large body grows it.
pub(crate) const CLIENT_ROOM: usize = 1024;
/// Room a buffer keeps between messages. What a large message made it grow
/// to beyond this is given back, so 10,000 idle connections cannot hold on
/// to what their largest messages once took.
const KEPT_ROOM: usize = 64 * 1024;

/// Gives back the room of an empty buffer beyond [`KEPT_ROOM`].
pub(crate) fn give_back_room(buffer: &mut BytesMut) {
    if buffer.is_empty() && buffer.capacity() > KEPT_ROOM {
        *buffer = BytesMut::new();
    }
}

/// What a connection of the request path must be: a byte stream both ways.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {
    /// Takes the head of a backend's answer parsed, in place of its bytes.
    /// An HTTP/2 stream makes its HEADERS of it: written out, the head would
    /// only be parsed back. `false`, as a socket answers: write the bytes.
    fn take_answer_head(&mut self, _answer: &AnswerHead<'_>) -> io::Result<bool> {
        Ok(false)
    }

    /// Whether the client can give up on a request (`poll_abandoned`).
    /// A socket cannot: an HTTP/1.1 client's hang-up cannot be told from
    /// a half-close without reading what it sent next, so its request
    /// goes on, as HAProxy's does by default.
    const ABANDONS: bool = false;

    /// Ready once the client has given up on its request: an HTTP/2
    /// stream it reset. Never, unless `ABANDONS`.
    fn poll_abandoned(&mut self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

impl Stream for TcpStream {}

pub(crate) struct Wire<S = TcpStream> {
    pub(crate) stream: S,
    pub(crate) buffer: BytesMut,
    /// How much room a read asks for.
    room: usize,
}

impl<S: Stream> Wire<S> {
    /// A connection whose reads ask for `room` bytes: `CLIENT_ROOM` or
    /// `BACKEND_ROOM`. Nothing is allocated before the first read.
    pub(crate) fn new(stream: S, room: usize) -> Wire<S> {
        Wire {
            stream,
            buffer: BytesMut::new(),
            room,
        }
    }

    /// Reads what the peer has sent into the buffer; 0 at its end. Through
    /// `AsyncRead`, not `try_read`: tokio then takes a short read to mean
    /// the socket is drained, which saves a read that would only say
    /// "nothing yet" on every request.
    pub(crate) fn poll_read_more(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buffer.capacity() - self.buffer.len() < self.room / 4 {
            // At least as much again as it holds: a large message is read
            // in a few reads, not thousands.
            self.buffer.reserve(self.room.max(self.buffer.len()));
        }
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buffer)
    }

    pub(crate) async fn read_more(&mut self) -> io::Result<usize> {
        poll_fn(|cx| self.poll_read_more(cx)).await
    }

    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// The next piece of a body being read in `state`; `None` at its end.
    pub(crate) async fn body_piece(&mut self, state: &mut State) -> io::Result<Option<Bytes>> {
        loop {
            match step(state, &mut self.buffer)? {
                Step::Data(data) => return Ok(Some(data)),
                Step::End => return Ok(None),
                Step::NeedMore => {
                    if self.read_more().await? == 0 {
                        if *state == State::UntilClose {
                            *state = State::Done;
                            return Ok(None);
                        }
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the connection closed before the body ended",
                        ));
                    }
                }
            }
        }
    }
}

impl Wire<TcpStream> {
    /// Whether a kept backend connection is still open: the peer has not
    /// closed it nor sent anything unasked. No system call unless the
    /// socket was reported readable.
    pub(crate) fn looks_open(&self) -> bool {
        let mut probe = [0u8; 1];
        self.buffer.is_empty()
            && matches!(self.stream.try_read(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
    }
}
