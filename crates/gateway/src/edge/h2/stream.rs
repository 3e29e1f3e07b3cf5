//! One HTTP/2 stream as the request path's client connection. Its request
//! head comes checked from the connection (`request`); its body is read
//! through `poll_read`, and the answer the request path writes is parsed
//! back in `poll_write`: head to HEADERS, body (unframed) to DATA frames as
//! the client's window allows. A backend's answer head comes parsed
//! instead (`take_answer_head`) and is encoded as it is: only the
//! gateway's own answers are parsed back. So balancing, retries, the
//! waiting room, admission, limits, request ids, the access log and
//! traffic stats apply to every stream with no second copy of any of
//! them, polled in the connection's task, without a pipe or a task
//! between.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http::Method;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::Reason;
use super::hpack::put_field;
use super::request::BodyFraming;
use super::shared::{Gone, StreamRef};
use crate::http1::body::{put_chunk, step, State, Step, LAST_CHUNK};
use crate::http1::response::{parse_response, AnswerHead, ClientFraming};
use crate::http1::{Framing, Known, Stream};

/// What the client sees of the request path's answer so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// The head is still coming.
    Head,
    /// Headers sent; the body goes out as DATA frames.
    Body,
    /// All of it sent, or the stream is gone.
    Done,
}

pub(crate) struct StreamIo {
    stream: StreamRef,
    framing: BodyFraming,
    /// Request body bytes framed but not yet read.
    unread: Bytes,
    read_done: bool,
    method: Method,
    answer: Answer,
    /// The answer's bytes not yet parsed or sent.
    written: BytesMut,
    state: State,
    /// A piece of body waiting for the client's window.
    sending: Bytes,
    /// Answer body bytes taken from the request path and not yet handed
    /// to the connection (`send_buffer_bytes`): with the piece waiting for
    /// the window, a stream holds at most twice this for a client that
    /// does not read.
    held: usize,
    pub(crate) reset: bool,
    pub(crate) complete: bool,
}

fn gone(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, what.to_string())
}

impl StreamIo {
    pub(crate) fn new(
        stream: StreamRef,
        method: Method,
        framing: BodyFraming,
        held: usize,
    ) -> StreamIo {
        StreamIo {
            stream,
            framing,
            unread: Bytes::new(),
            read_done: framing == BodyFraming::None,
            method,
            answer: Answer::Head,
            written: BytesMut::new(),
            state: State::Done,
            sending: Bytes::new(),
            held,
            reset: false,
            complete: false,
        }
    }

    fn broken(&mut self, err: Gone) -> io::Error {
        if err.reset {
            self.reset = true;
        }
        self.answer = Answer::Done;
        gone("the stream is gone")
    }

    /// Sends what has been written as far as the client's window allows:
    /// the head once whole, then the body. Ready once nothing is held that
    /// could go now.
    pub(crate) fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.answer {
                Answer::Done => return Poll::Ready(Ok(())),
                Answer::Head => {
                    let parsed = parse_response(&mut self.written, &self.method)
                        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
                    let Some(head) = parsed else {
                        return Poll::Ready(Ok(()));
                    };
                    let fields = &head.head;
                    self.start(
                        head.status.as_u16(),
                        |block| {
                            for field in &fields.fields {
                                // Fields HTTP/1.1 uses for the connection or
                                // the framing are left out.
                                if !matches!(
                                    field.known,
                                    Known::Connection | Known::TransferEncoding | Known::HopByHop
                                ) {
                                    put_field(block, fields.name(field), fields.value(field));
                                }
                            }
                        },
                        head.framing,
                    )?;
                }
                Answer::Body => {
                    if !self.sending.is_empty() {
                        // The body's last bytes end the stream in their own
                        // frame, not an empty one after.
                        let last = self.state == State::Done;
                        let sent = ready!(self.stream.poll_send_data(cx, &mut self.sending, last));
                        sent.map_err(|err| self.broken(err))?;
                        if last {
                            self.complete = true;
                            self.answer = Answer::Done;
                        }
                        continue;
                    }
                    match step(&mut self.state, &mut self.written)? {
                        Step::Data(data) => self.sending = data,
                        Step::NeedMore => return Poll::Ready(Ok(())),
                        Step::End => {
                            let ended = self.stream.poll_send_data(cx, &mut Bytes::new(), true);
                            if let Poll::Ready(Err(err)) = ended {
                                return Poll::Ready(Err(self.broken(err)));
                            }
                            self.complete = true;
                            self.answer = Answer::Done;
                        }
                    }
                }
            }
        }
    }

    /// Sends the answer's HEADERS (`fields` writes them after `:status`);
    /// its body, framed as `framing` says, follows through `poll_write`.
    fn start(
        &mut self,
        status: u16,
        fields: impl FnOnce(&mut BytesMut),
        framing: Framing,
    ) -> io::Result<()> {
        if self.answer != Answer::Head {
            return Err(gone("the answer has begun already"));
        }
        self.state = State::of(framing);
        let empty = matches!(self.state, State::Done);
        match self.stream.send_headers(status, fields, empty) {
            Ok(()) if empty => {
                self.complete = true;
                self.answer = Answer::Done;
            }
            Ok(()) => self.answer = Answer::Body,
            Err(err) => return Err(self.broken(err)),
        }
        Ok(())
    }

    /// After the request path is done: an answer cut short is reset, one
    /// never begun is refused.
    pub(crate) fn finish(&mut self) {
        if self.answer != Answer::Done {
            self.stream.send_reset(Reason::InternalError);
            self.answer = Answer::Done;
        }
    }
}

/// The gateway's own fields, given as whole `name: value` lines.
fn lines(extra: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    extra.split(|&b| b == b'\n').filter_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        Some((&line[..colon], line[colon + 1..].trim_ascii()))
    })
}

impl Stream for StreamIo {
    const ABANDONS: bool = true;

    /// A reset stream, or a connection gone.
    fn poll_abandoned(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.answer == Answer::Done {
            return Poll::Pending;
        }
        if ready!(self.stream.poll_reset(cx)) {
            self.reset = true;
        }
        Poll::Ready(())
    }

    fn take_answer_head(&mut self, answer: &AnswerHead<'_>) -> io::Result<bool> {
        if self.answer != Answer::Head || !self.written.is_empty() {
            return Ok(false);
        }
        let head = &answer.response.head;
        let framing = match answer.framing {
            ClientFraming::Length(n) => Framing::Length(n),
            ClientFraming::HeadersOnly => Framing::Empty,
            ClientFraming::Chunked => Framing::Chunked,
            ClientFraming::Close => Framing::UntilClose,
        };
        self.start(
            answer.response.status.as_u16(),
            |block| {
                // Transfer codings under chunked (`gzip, chunked`) have no
                // HTTP/2 field: the body goes as it came.
                for field in answer.passed_fields() {
                    put_field(block, head.name(field), head.value(field));
                }
                put_field(block, b"x-request-id", answer.request_id);
                for (name, value) in lines(answer.extra) {
                    put_field(block, name, value);
                }
                if let ClientFraming::Length(n) = answer.framing {
                    put_field(
                        block,
                        b"content-length",
                        itoa::Buffer::new().format(n).as_bytes(),
                    );
                }
            },
            framing,
        )?;
        Ok(true)
    }
}

impl AsyncRead for StreamIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        while this.unread.is_empty() && !this.read_done {
            match ready!(this.stream.poll_data(cx)) {
                Some(Ok(data)) => {
                    if this.framing == BodyFraming::Chunked && !data.is_empty() {
                        let mut chunk = BytesMut::with_capacity(data.len() + 12);
                        put_chunk(&mut chunk, &data);
                        this.unread = chunk.freeze();
                    } else {
                        this.unread = data;
                    }
                }
                Some(Err(err)) => {
                    this.read_done = true;
                    return Poll::Ready(Err(this.broken(err)));
                }
                None => {
                    this.read_done = true;
                    if this.framing == BodyFraming::Chunked {
                        this.unread = Bytes::from_static(LAST_CHUNK);
                    }
                }
            }
        }
        let n = this.unread.len().min(buf.remaining());
        buf.put_slice(&this.unread.split_to(n));
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for StreamIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.answer == Answer::Done && !this.complete {
            return Poll::Ready(Err(gone("the stream is gone")));
        }
        // The head is taken whole (it is bounded by the parser); the body
        // only as far as `held`.
        let room = |this: &Self| match this.answer {
            Answer::Body => this.held.saturating_sub(this.written.len()),
            _ => buf.len(),
        };
        if room(this) == 0 {
            // Wait for the client's window (poll_send registers the
            // wake-up when it cannot send).
            ready!(this.poll_send(cx))?;
        }
        let taken = buf.len().min(room(this));
        this.written.extend_from_slice(&buf[..taken]);
        // Whatever can go now goes; the rest waits for the next write or
        // the flush.
        match this.poll_send(cx) {
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            _ => Poll::Ready(Ok(taken)),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_send(cx))?;
        if this.sending.is_empty() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
