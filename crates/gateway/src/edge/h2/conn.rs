//! The connection's side of HTTP/2 (RFC 9113): the client's frames read
//! and checked, its header blocks decoded into requests, SETTINGS, PING
//! and windows answered, and the frames the streams queued written.
//!
//! What a client gets wrong is answered as the RFC says: a stream error
//! resets the stream, a connection error ends the connection with GOAWAY
//! and its reason. What a client may ask of the server is bounded: open
//! streams (`max_concurrent_streams`, more are refused), the header block
//! and its decoded list (`max_header_list_bytes`), what it may send
//! unread (the windows), and what may wait to be written to it.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};

use super::super::config::Http2File;
use super::frame::{self, Head, Reason, DEFAULT_MAX_FRAME, HEAD_LEN, MAX_WINDOW};
use super::hpack::{Decoded, Decoder};
use super::request::{Refused, RequestFields};
use super::shared::{shift_window, Shared, Slot, StreamRef};

/// A header list this many times past the limit is an attack (an HPACK
/// bomb), not a large request: the connection is closed.
const BOMB_FACTOR: usize = 16;

/// Frames owed to the client past which it is not read from until it
/// takes them.
const READ_PAUSE: usize = 1024 * 1024;

/// What bounds a connection, from `[http2]` when it was accepted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rules {
    pub(crate) max_concurrent_streams: u32,
    pub(crate) max_header_list: usize,
    pub(crate) stream_window: u32,
    pub(crate) connection_window: u32,
    pub(crate) send_buffer: usize,
}

impl Rules {
    pub(crate) fn of(file: &Http2File) -> Rules {
        Rules {
            max_concurrent_streams: file.max_concurrent_streams,
            max_header_list: file.max_header_list_bytes as usize,
            stream_window: file.stream_window_bytes.min(MAX_WINDOW as u32),
            // Never below the protocol's initial window, which cannot shrink.
            connection_window: file
                .connection_window_bytes
                .clamp(frame::DEFAULT_WINDOW, MAX_WINDOW as u32),
            send_buffer: file.send_buffer_bytes as usize,
        }
    }
}

/// A new stream, for the request path.
pub(crate) struct Accepted {
    pub(crate) stream: StreamRef,
    pub(crate) request: Result<RequestFields, Refused>,
    pub(crate) has_body: bool,
    /// What of its answer the stream may hold (`send_buffer_bytes`).
    pub(crate) held: usize,
}

/// The highest stream id: what a graceful GOAWAY's first step names.
const ANY_STREAM: u32 = 0x7fff_ffff;
/// The PING sent with a graceful GOAWAY's first step. Its answer means the
/// client has read that GOAWAY, and every stream it opened before has been
/// read here.
const DRAIN_PING: [u8; 8] = *b"draining";

/// How the connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The client closed it, or it failed.
    Closed,
    /// A graceful GOAWAY's last step went out: no new stream comes from
    /// here, and the streams open go on (frames are still read for them).
    Drained,
    /// A connection error: the reason GOAWAY carries. `ENHANCE_YOUR_CALM`
    /// is only ever a flood of the kind the meter does not see.
    Error(Reason),
}

/// A header block coming in HEADERS and CONTINUATION frames.
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    trailers: bool,
    block: BytesMut,
}

pub(crate) struct Conn<S> {
    io: S,
    read: BytesMut,
    writing: Bytes,
    decoder: Decoder,
    shared: Arc<Mutex<Shared>>,
    rules: Rules,
    open_block: Option<OpenBlock>,
    /// The highest stream id the client opened.
    last_stream: u32,
    settings_seen: bool,
    /// No new stream is taken (GOAWAY sent, or the client's received).
    refusing: bool,
    /// A graceful GOAWAY's first step is sent, and its PING not yet
    /// acknowledged.
    draining: bool,
    /// Its last step has just gone out: `poll_next` says so once.
    drained: bool,
    /// A stream decoded and not yet handed over: frames are handled no
    /// further until it is.
    accepted: Option<Accepted>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// After the client's preface (read already, with whatever followed
    /// it in `read`): this server's SETTINGS and connection window.
    pub(crate) fn new(io: S, read: BytesMut, rules: Rules) -> Conn<S> {
        let mut shared = Shared::new(rules.stream_window, rules.connection_window);
        frame::put_settings(
            &mut shared.out,
            &[
                (
                    frame::SETTINGS_MAX_CONCURRENT_STREAMS,
                    rules.max_concurrent_streams,
                ),
                (frame::SETTINGS_INITIAL_WINDOW_SIZE, rules.stream_window),
                (
                    frame::SETTINGS_MAX_HEADER_LIST_SIZE,
                    rules.max_header_list as u32,
                ),
                (frame::SETTINGS_ENABLE_PUSH, 0),
            ],
        );
        if rules.connection_window > frame::DEFAULT_WINDOW {
            let more = rules.connection_window - frame::DEFAULT_WINDOW;
            frame::put_window_update(&mut shared.out, 0, more);
        }
        Conn {
            io,
            read,
            writing: Bytes::new(),
            decoder: Decoder::new(),
            shared: Arc::new(Mutex::new(shared)),
            rules,
            open_block: None,
            last_stream: 0,
            settings_seen: false,
            refusing: false,
            draining: false,
            drained: false,
            accepted: None,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads and answers what the client sent, writes what is queued; a
    /// new stream when one came, or how the connection ended.
    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Result<Accepted, Ended>> {
        loop {
            // What was read and not yet handled first (the preface's
            // leftovers, or frames after a stream was handed over).
            if let Err(ended) = self.handle_frames() {
                return Poll::Ready(Err(ended));
            }
            if let Some(accepted) = self.accepted.take() {
                return Poll::Ready(Ok(accepted));
            }
            if std::mem::take(&mut self.drained) {
                return Poll::Ready(Err(Ended::Drained));
            }
            match self.poll_write_out(cx) {
                Poll::Ready(Err(_)) => return Poll::Ready(Err(Ended::Closed)),
                Poll::Ready(Ok(())) => {}
                // A client that sends and does not read is not read from
                // while what it is owed piles up: every frame it sends may
                // owe it one back.
                Poll::Pending => {
                    if self.lock().out.len() + self.writing.len() >= READ_PAUSE {
                        return Poll::Pending;
                    }
                }
            }
            if self.read.capacity() - self.read.len() < HEAD_LEN + DEFAULT_MAX_FRAME {
                self.read.reserve(HEAD_LEN + DEFAULT_MAX_FRAME);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read) {
                Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => return Poll::Ready(Err(Ended::Closed)),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Writes what is queued, and flushes it through TLS. Ready once all
    /// of it is written.
    pub(crate) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            if self.writing.is_empty() {
                let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                if shared.out.is_empty() {
                    shared.wake_out_waiting();
                    drop(shared);
                    return Pin::new(&mut self.io).poll_flush(cx);
                }
                self.writing = shared.out.split().freeze();
                shared.wake_out_waiting();
            }
            match Pin::new(&mut self.io).poll_write(cx, &self.writing) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.writing.advance(n),
                Poll::Ready(Err(err)) => return Poll::Ready(Err(err)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Queues GOAWAY. `NO_ERROR` lets the streams open finish; any other
    /// reason ends them. Returns whether no new stream is taken from now
    /// on; if not, `poll_next` says `Ended::Drained` when that comes.
    ///
    /// `NO_ERROR` goes in two steps, as RFC 9113 section 6.8 advises: a
    /// GOAWAY naming the highest stream id and a PING, then, once the PING
    /// comes back, a GOAWAY naming the last stream opened. The client
    /// stops opening streams at the first, and the ones it opened before
    /// it had read it are still served. A single GOAWAY refused them, and
    /// a client that does not retry a refused stream (h2load) lost them:
    /// 16 to 43 requests a run where a lowered CPU quota moved 8
    /// connections (5 runs; with two steps, 0 to 3).
    pub(crate) fn go_away(&mut self, reason: Reason) -> bool {
        if reason == Reason::NoError && !self.refusing {
            let mut shared = self.lock();
            frame::put_goaway(&mut shared.out, ANY_STREAM, reason);
            frame::put_ping(&mut shared.out, &DRAIN_PING);
            drop(shared);
            self.draining = true;
            return false;
        }
        self.refusing = true;
        self.draining = false;
        let mut shared = self.lock();
        frame::put_goaway(&mut shared.out, self.last_stream, reason);
        if reason != Reason::NoError {
            shared.close_all();
        }
        true
    }

    /// A graceful GOAWAY's last step, once its PING is back (or when the
    /// connection closes before): the streams opened so far are the last.
    fn last_goaway(&mut self) {
        if std::mem::take(&mut self.draining) {
            self.refusing = true;
            self.drained = true;
            frame::put_goaway(&mut self.lock().out, self.last_stream, Reason::NoError);
        }
    }

    /// Closes the connection: written out, then TLS's close.
    pub(crate) async fn close(&mut self) {
        self.last_goaway();
        let _ = std::future::poll_fn(|cx| self.poll_write_out(cx)).await;
        let _ = std::future::poll_fn(|cx| Pin::new(&mut self.io).poll_shutdown(cx)).await;
        self.lock().close_all();
    }

    /// Handles every whole frame read.
    fn handle_frames(&mut self) -> Result<(), Ended> {
        while self.read.len() >= HEAD_LEN {
            let head = Head::parse(&self.read[..HEAD_LEN]);
            if head.len > DEFAULT_MAX_FRAME {
                return Err(Ended::Error(Reason::FrameSizeError));
            }
            if self.read.len() < HEAD_LEN + head.len {
                return Ok(());
            }
            let mut payload = self.read.split_to(HEAD_LEN + head.len);
            payload.advance(HEAD_LEN);
            self.frame(head, payload)?;
            if self.accepted.is_some() {
                return Ok(());
            }
        }
        Ok(())
    }

    fn frame(&mut self, head: Head, payload: BytesMut) -> Result<(), Ended> {
        let protocol = Err(Ended::Error(Reason::ProtocolError));
        if !self.settings_seen && head.kind != frame::SETTINGS {
            // The preface's SETTINGS comes first (RFC 9113 section 3.4).
            return protocol;
        }
        if let Some(open) = &self.open_block {
            if head.kind != frame::CONTINUATION || head.stream != open.stream {
                return protocol;
            }
        }
        match head.kind {
            frame::DATA => self.data(head, payload),
            frame::HEADERS => self.headers(head, payload),
            frame::CONTINUATION => self.continuation(head, payload),
            frame::PRIORITY => {
                if head.stream == 0 {
                    return protocol;
                }
                if head.len != 5 {
                    self.lock().reset(head.stream, Reason::FrameSizeError);
                }
                Ok(())
            }
            frame::RST_STREAM => self.rst_stream(head, &payload),
            frame::SETTINGS => self.settings(head, &payload),
            frame::PUSH_PROMISE => protocol,
            frame::PING => {
                if head.stream != 0 {
                    return protocol;
                }
                if head.len != 8 {
                    return Err(Ended::Error(Reason::FrameSizeError));
                }
                if !head.has(frame::ACK) {
                    frame::put_ping_ack(&mut self.lock().out, &payload);
                } else if payload[..] == DRAIN_PING {
                    self.last_goaway();
                }
                Ok(())
            }
            frame::GOAWAY => {
                if head.stream != 0 {
                    return protocol;
                }
                // The client takes no new stream from here: those open
                // finish.
                self.refusing = true;
                Ok(())
            }
            frame::WINDOW_UPDATE => self.window_update(head, &payload),
            // Unknown kinds are ignored (RFC 9113 section 4.1).
            _ => Ok(()),
        }
    }

    /// The payload without its padding (`PADDED`), and the padding's size.
    fn unpad(head: Head, payload: &mut BytesMut) -> Result<usize, Ended> {
        if !head.has(frame::PADDED) {
            return Ok(0);
        }
        let Some(&pad) = payload.first() else {
            return Err(Ended::Error(Reason::ProtocolError));
        };
        let pad = usize::from(pad);
        if pad >= payload.len() {
            return Err(Ended::Error(Reason::ProtocolError));
        }
        payload.advance(1);
        payload.truncate(payload.len() - pad);
        Ok(pad + 1)
    }

    fn data(&mut self, head: Head, mut payload: BytesMut) -> Result<(), Ended> {
        if head.stream == 0 {
            return Err(Ended::Error(Reason::ProtocolError));
        }
        if head.stream > self.last_stream {
            // An idle stream.
            return Err(Ended::Error(Reason::ProtocolError));
        }
        let flow = head.len as u32;
        let padding = Self::unpad(head, &mut payload)? as u32;
        let mut guard = self.lock();
        let shared = &mut *guard;
        shared.conn_recv_window -= i64::from(flow);
        if shared.conn_recv_window < 0 {
            return Err(Ended::Error(Reason::FlowControlError));
        }
        let Some(slot) = shared.slots.get_mut(&head.stream) else {
            // A stream closed, most often by this side's END_STREAM or
            // RST_STREAM while the client was still sending: ignored, as
            // RFC 9113 section 5.4.2 allows, its bytes given back to the
            // connection's window at once.
            shared.release_connection(flow);
            return Ok(());
        };
        if slot.reset {
            shared.release_connection(flow);
            return Ok(());
        }
        let end = head.has(frame::END_STREAM);
        let stream_error = if slot.body_end {
            // DATA after the client ended the stream.
            Some(Reason::StreamClosed)
        } else {
            slot.recv_window -= i64::from(flow);
            slot.received += payload.len() as u64;
            let wrong_length = slot.declared.is_some_and(|declared| {
                slot.received > declared || (end && slot.received != declared)
            });
            if slot.recv_window < 0 {
                Some(Reason::FlowControlError)
            } else if wrong_length {
                Some(Reason::ProtocolError)
            } else {
                None
            }
        };
        if let Some(reason) = stream_error {
            shared.reset(head.stream, reason);
            shared.release_connection(flow);
            return Ok(());
        }
        if !payload.is_empty() {
            slot.body.push_back(payload.freeze());
        }
        if padding > 0 {
            // Padding is never read: it goes back to both windows at once.
            slot.grant(
                head.stream,
                padding,
                self.rules.stream_window,
                &mut shared.out,
            );
        }
        slot.body_end = end;
        slot.wake_body();
        if padding > 0 {
            shared.release_connection(padding);
        }
        Ok(())
    }

    fn headers(&mut self, head: Head, mut payload: BytesMut) -> Result<(), Ended> {
        let protocol = Err(Ended::Error(Reason::ProtocolError));
        if head.stream == 0 || head.stream.is_multiple_of(2) {
            return protocol;
        }
        Self::unpad(head, &mut payload)?;
        if head.has(frame::PRIORITY_FLAG) {
            if payload.len() < 5 {
                return protocol;
            }
            payload.advance(5);
        }
        let trailers = head.stream <= self.last_stream;
        if trailers {
            let open = self
                .lock()
                .slots
                .get(&head.stream)
                .is_some_and(|slot| !slot.body_end);
            if !open {
                return Err(Ended::Error(Reason::StreamClosed));
            }
            // Trailers end the stream (RFC 9113 section 8.1).
            if !head.has(frame::END_STREAM) {
                return protocol;
            }
        } else {
            self.last_stream = head.stream;
        }
        let open = OpenBlock {
            stream: head.stream,
            end_stream: head.has(frame::END_STREAM),
            trailers,
            block: payload,
        };
        self.block_piece(head, open)
    }

    /// A header block's frame handled: the whole block decoded once its
    /// last frame came, or kept open for CONTINUATION.
    fn block_piece(&mut self, head: Head, open: OpenBlock) -> Result<(), Ended> {
        if head.has(frame::END_HEADERS) {
            self.block(open)
        } else {
            self.open_block = Some(open);
            Ok(())
        }
    }

    fn continuation(&mut self, head: Head, payload: BytesMut) -> Result<(), Ended> {
        let Some(mut open) = self.open_block.take() else {
            return Err(Ended::Error(Reason::ProtocolError));
        };
        // A block far past what its list may decode to is not a request.
        if open.block.len() + payload.len() > 2 * self.rules.max_header_list.max(DEFAULT_MAX_FRAME)
        {
            return Err(Ended::Error(Reason::EnhanceYourCalm));
        }
        open.block.extend_from_slice(&payload);
        self.block_piece(head, open)
    }

    /// A whole header block: a new stream's request, or a stream's
    /// trailers (decoded for the table's sake, and dropped: the request
    /// path speaks HTTP/1.1 to the backends, which has no use for them).
    fn block(&mut self, open: OpenBlock) -> Result<(), Ended> {
        let limit = self.rules.max_header_list;
        let mut fields = RequestFields::new(open.block.len());
        let decoded = self
            .decoder
            .decode(&open.block, limit, |name, value| {
                if !open.trailers {
                    fields.add(name, value)
                }
            })
            .map_err(|_| Ended::Error(Reason::CompressionError))?;
        if let Decoded::TooLarge(size) = decoded {
            if size > BOMB_FACTOR * limit {
                return Err(Ended::Error(Reason::EnhanceYourCalm));
            }
        }
        if open.trailers {
            let mut shared = self.lock();
            if let Some(slot) = shared.slots.get_mut(&open.stream) {
                slot.body_end = true;
                slot.wake_body();
            }
            return Ok(());
        }
        let request = match decoded {
            Decoded::Whole => fields.finish(open.end_stream),
            Decoded::TooLarge(_) => Err(Refused::TooLarge),
        };
        let mut shared = self.lock();
        let most = self.rules.max_concurrent_streams as usize;
        let refuse = self.refusing || shared.open_streams(most) >= most;
        if refuse {
            frame::put_reset(&mut shared.out, open.stream, Reason::RefusedStream);
            return Ok(());
        }
        if let Err(Refused::Malformed) = request {
            frame::put_reset(&mut shared.out, open.stream, Reason::ProtocolError);
            return Ok(());
        }
        let mut slot = Slot::new(
            shared.initial_send_window,
            self.rules.stream_window,
            open.end_stream,
        );
        if let Ok(request) = &request {
            slot.declared = request.declared_length;
        }
        shared.slots.insert(open.stream, slot);
        drop(shared);
        self.accepted = Some(Accepted {
            stream: StreamRef {
                id: open.stream,
                shared: Arc::clone(&self.shared),
            },
            request,
            has_body: !open.end_stream,
            held: self.rules.send_buffer,
        });
        Ok(())
    }

    fn rst_stream(&mut self, head: Head, payload: &[u8]) -> Result<(), Ended> {
        if head.stream == 0 || head.stream > self.last_stream {
            return Err(Ended::Error(Reason::ProtocolError));
        }
        if payload.len() != 4 {
            return Err(Ended::Error(Reason::FrameSizeError));
        }
        let mut shared = self.lock();
        if let Some(slot) = shared.slots.get_mut(&head.stream) {
            slot.reset = true;
            slot.local_done = true;
            slot.wake_all();
        }
        Ok(())
    }

    fn settings(&mut self, head: Head, payload: &[u8]) -> Result<(), Ended> {
        if head.stream != 0 {
            return Err(Ended::Error(Reason::ProtocolError));
        }
        if head.has(frame::ACK) {
            if !payload.is_empty() {
                return Err(Ended::Error(Reason::FrameSizeError));
            }
            return Ok(());
        }
        if !payload.len().is_multiple_of(6) {
            return Err(Ended::Error(Reason::FrameSizeError));
        }
        self.settings_seen = true;
        let mut shared = self.lock();
        for setting in payload.chunks(6) {
            let id = u16::from_be_bytes([setting[0], setting[1]]);
            let value = u32::from_be_bytes([setting[2], setting[3], setting[4], setting[5]]);
            match id {
                frame::SETTINGS_ENABLE_PUSH if value > 1 => {
                    return Err(Ended::Error(Reason::ProtocolError));
                }
                frame::SETTINGS_INITIAL_WINDOW_SIZE => {
                    if i64::from(value) > MAX_WINDOW {
                        return Err(Ended::Error(Reason::FlowControlError));
                    }
                    let by = i64::from(value) - shared.initial_send_window;
                    shared.initial_send_window = i64::from(value);
                    for slot in shared.slots.values_mut() {
                        if !shift_window(&mut slot.send_window, by) {
                            return Err(Ended::Error(Reason::FlowControlError));
                        }
                    }
                    if by > 0 {
                        shared.wake_senders();
                    }
                }
                frame::SETTINGS_MAX_FRAME_SIZE => {
                    if !(16_384..=16_777_215).contains(&value) {
                        return Err(Ended::Error(Reason::ProtocolError));
                    }
                    shared.max_frame = value as usize;
                }
                // The table size only bounds our encoder's table, which it
                // does not use; the other settings do not apply to a
                // server's side, and unknown ones are ignored.
                _ => {}
            }
        }
        frame::put_settings_ack(&mut shared.out);
        Ok(())
    }

    fn window_update(&mut self, head: Head, payload: &[u8]) -> Result<(), Ended> {
        if payload.len() != 4 {
            return Err(Ended::Error(Reason::FrameSizeError));
        }
        let increment = i64::from(
            u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff,
        );
        if head.stream == 0 {
            if increment == 0 {
                return Err(Ended::Error(Reason::ProtocolError));
            }
            let mut shared = self.lock();
            shared.send_window += increment;
            if shared.send_window > MAX_WINDOW {
                return Err(Ended::Error(Reason::FlowControlError));
            }
            shared.wake_senders();
            return Ok(());
        }
        if head.stream > self.last_stream {
            return Err(Ended::Error(Reason::ProtocolError));
        }
        if increment == 0 {
            self.lock().reset(head.stream, Reason::ProtocolError);
            return Ok(());
        }
        let mut shared = self.lock();
        let Some(slot) = shared.slots.get_mut(&head.stream) else {
            return Ok(());
        };
        slot.send_window += increment;
        if slot.send_window > MAX_WINDOW {
            shared.reset(head.stream, Reason::FlowControlError);
            return Ok(());
        }
        slot.wake_send();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use bytes::BufMut;

    use super::*;
    use crate::edge::h2::frame::*;

    fn put(out: &mut BytesMut, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        put_head(out, payload.len(), kind, flags, stream);
        out.put_slice(payload);
    }

    /// `:method GET` or POST, `:scheme https`, `:path /`, and
    /// `:authority` as a literal put in the table.
    fn request(post: bool) -> Vec<u8> {
        let mut block = vec![if post { 0x83 } else { 0x82 }, 0x87, 0x84, 0x41, 9];
        block.extend_from_slice(b"127.0.0.1");
        block
    }

    /// A client's session that uses every kind of frame.
    fn session() -> BytesMut {
        let mut out = BytesMut::new();
        put(
            &mut out,
            SETTINGS,
            0,
            0,
            &[0, 4, 0, 0, 0x03, 0xe8, 0, 5, 0, 0, 0x40, 0],
        );
        put(&mut out, WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes());
        put(
            &mut out,
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &request(false),
        );
        let mut post = request(true);
        post.extend([0x0f, 0x0d, 1, b'5']); // content-length: 5
        put(&mut out, HEADERS, END_HEADERS, 3, &post);
        put(&mut out, DATA, 0, 3, b"12");
        put(
            &mut out,
            DATA,
            END_STREAM | PADDED,
            3,
            &[2, b'3', b'4', b'5', 0, 0],
        );
        put(&mut out, PRIORITY, 0, 5, &[0, 0, 0, 1, 16]);
        let block = request(false);
        put(&mut out, HEADERS, END_STREAM, 5, &block[..3]);
        put(&mut out, CONTINUATION, END_HEADERS, 5, &block[3..]);
        put(&mut out, RST_STREAM, 0, 1, &8u32.to_be_bytes());
        put(&mut out, PING, 0, 0, b"12345678");
        put(&mut out, WINDOW_UPDATE, 0, 3, &100u32.to_be_bytes());
        let mut padded = vec![1, 0, 0, 0, 3, 7];
        padded.extend([0xbe, 0x82, 0x87, 0x84]);
        padded.push(0);
        put(
            &mut out,
            HEADERS,
            END_HEADERS | END_STREAM | PADDED | PRIORITY_FLAG,
            7,
            &padded,
        );
        put(&mut out, SETTINGS, ACK, 0, &[]);
        put(&mut out, GOAWAY, 0, 0, &[0, 0, 0, 0, 0, 0, 0, 0]);
        out
    }

    /// Drives a connection over `bytes` (after the preface) until it ends
    /// or waits for more: how it ended, and the streams it handed over.
    fn drive(bytes: BytesMut) -> (Option<Ended>, usize) {
        let (ours, _theirs) = tokio::io::duplex(1 << 20);
        let mut conn = Conn::new(ours, bytes, Rules::of(&Http2File::default()));
        let mut cx = Context::from_waker(Waker::noop());
        let mut streams = Vec::new();
        loop {
            match conn.poll_next(&mut cx) {
                Poll::Ready(Ok(accepted)) => streams.push(accepted),
                Poll::Ready(Err(ended)) => return (Some(ended), streams.len()),
                Poll::Pending => return (None, streams.len()),
            }
            assert!(streams.len() <= 100, "more streams than the limit");
        }
    }

    #[test]
    fn a_session_of_every_frame_is_served_to_its_end() {
        let (ended, streams) = drive(session());
        assert_eq!(ended, None);
        assert_eq!(streams, 4, "streams 1, 3, 5 and 7");
    }

    #[test]
    fn no_change_to_a_session_makes_the_connection_panic_or_spin() {
        let whole = session();
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        let mut errors = 0;
        for _ in 0..50_000 {
            let mut bytes = whole.to_vec();
            for _ in 0..rng.usize(1..6) {
                let at = rng.usize(..bytes.len());
                match rng.u8(0..4) {
                    0 => bytes[at] = rng.u8(..),
                    1 => bytes[at] ^= 1 << rng.u8(0..8),
                    2 => {
                        let to = (at + rng.usize(1..16)).min(bytes.len());
                        bytes.drain(at..to);
                    }
                    _ => {
                        let piece: Vec<u8> = (0..rng.usize(1..16)).map(|_| rng.u8(..)).collect();
                        bytes.splice(at..at, piece);
                    }
                }
                if bytes.is_empty() {
                    break;
                }
            }
            if let (Some(Ended::Error(..)), _) = drive(BytesMut::from(&bytes[..])) {
                errors += 1;
            }
        }
        // Most changes break the protocol, and are told so.
        assert!(errors > 25_000, "{errors} connection errors of 50,000");
    }
}
