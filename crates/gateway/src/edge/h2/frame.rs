//! HTTP/2 frames (RFC 9113 section 4 and 6): the 9-byte head every frame
//! starts with, the kinds and flags this server reads, and the frames it
//! writes.

use bytes::{BufMut, BytesMut};

/// The client connection preface (RFC 9113 section 3.4).
pub(crate) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub(crate) const HEAD_LEN: usize = 9;

/// The largest frame payload either side may send until told more
/// (`SETTINGS_MAX_FRAME_SIZE`'s initial value). This server never asks for
/// more, so it is also the largest frame a client may send it.
pub(crate) const DEFAULT_MAX_FRAME: usize = 16_384;
/// Both windows' size until a SETTINGS or WINDOW_UPDATE says otherwise.
pub(crate) const DEFAULT_WINDOW: u32 = 65_535;
pub(crate) const MAX_WINDOW: i64 = (1 << 31) - 1;

pub(crate) const DATA: u8 = 0x0;
pub(crate) const HEADERS: u8 = 0x1;
pub(crate) const PRIORITY: u8 = 0x2;
pub(crate) const RST_STREAM: u8 = 0x3;
pub(crate) const SETTINGS: u8 = 0x4;
pub(crate) const PUSH_PROMISE: u8 = 0x5;
pub(crate) const PING: u8 = 0x6;
pub(crate) const GOAWAY: u8 = 0x7;
pub(crate) const WINDOW_UPDATE: u8 = 0x8;
pub(crate) const CONTINUATION: u8 = 0x9;

pub(crate) const END_STREAM: u8 = 0x1;
pub(crate) const ACK: u8 = 0x1;
pub(crate) const END_HEADERS: u8 = 0x4;
pub(crate) const PADDED: u8 = 0x8;
pub(crate) const PRIORITY_FLAG: u8 = 0x20;

pub(crate) const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub(crate) const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub(crate) const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub(crate) const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub(crate) const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// An error code, in RST_STREAM and GOAWAY (RFC 9113 section 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    NoError = 0x0,
    ProtocolError = 0x1,
    InternalError = 0x2,
    FlowControlError = 0x3,
    StreamClosed = 0x5,
    FrameSizeError = 0x6,
    RefusedStream = 0x7,
    Cancel = 0x8,
    CompressionError = 0x9,
    EnhanceYourCalm = 0xb,
}

impl Reason {
    /// As the metrics label it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::NoError => "no_error",
            Reason::ProtocolError => "protocol_error",
            Reason::InternalError => "internal_error",
            Reason::FlowControlError => "flow_control_error",
            Reason::StreamClosed => "stream_closed",
            Reason::FrameSizeError => "frame_size_error",
            Reason::RefusedStream => "refused_stream",
            Reason::Cancel => "cancel",
            Reason::CompressionError => "compression_error",
            Reason::EnhanceYourCalm => "enhance_your_calm",
        }
    }
}

/// The head of a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) len: usize,
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) stream: u32,
}

impl Head {
    pub(crate) fn parse(bytes: &[u8]) -> Head {
        Head {
            len: usize::from(bytes[0]) << 16 | usize::from(bytes[1]) << 8 | usize::from(bytes[2]),
            kind: bytes[3],
            flags: bytes[4],
            // The reserved bit is ignored (RFC 9113 section 4.1).
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    pub(crate) fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

pub(crate) fn put_head(out: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len < 1 << 24);
    out.put_uint(len as u64, 3);
    out.put_u8(kind);
    out.put_u8(flags);
    out.put_u32(stream);
}

pub(crate) fn put_settings(out: &mut BytesMut, settings: &[(u16, u32)]) {
    put_head(out, settings.len() * 6, SETTINGS, 0, 0);
    for &(id, value) in settings {
        out.put_u16(id);
        out.put_u32(value);
    }
}

pub(crate) fn put_settings_ack(out: &mut BytesMut) {
    put_head(out, 0, SETTINGS, ACK, 0);
}

pub(crate) fn put_ping(out: &mut BytesMut, payload: &[u8; 8]) {
    put_head(out, 8, PING, 0, 0);
    out.put_slice(payload);
}

pub(crate) fn put_ping_ack(out: &mut BytesMut, payload: &[u8]) {
    put_head(out, 8, PING, ACK, 0);
    out.put_slice(payload);
}

pub(crate) fn put_window_update(out: &mut BytesMut, stream: u32, increment: u32) {
    put_head(out, 4, WINDOW_UPDATE, 0, stream);
    out.put_u32(increment);
}

pub(crate) fn put_reset(out: &mut BytesMut, stream: u32, reason: Reason) {
    put_head(out, 4, RST_STREAM, 0, stream);
    out.put_u32(reason as u32);
}

pub(crate) fn put_goaway(out: &mut BytesMut, last_stream: u32, reason: Reason) {
    put_head(out, 8, GOAWAY, 0, 0);
    out.put_u32(last_stream);
    out.put_u32(reason as u32);
}

/// DATA frames carrying `data`, none larger than `max_frame`; the last ends
/// the stream when `end`.
pub(crate) fn put_data(out: &mut BytesMut, stream: u32, data: &[u8], end: bool, max: usize) {
    let mut pieces = data.chunks(max).peekable();
    if pieces.peek().is_none() {
        put_head(out, 0, DATA, if end { END_STREAM } else { 0 }, stream);
        return;
    }
    while let Some(piece) = pieces.next() {
        let last = pieces.peek().is_none();
        let flags = if end && last { END_STREAM } else { 0 };
        put_head(out, piece.len(), DATA, flags, stream);
        out.put_slice(piece);
    }
}

/// A header block as HEADERS and, past `max` bytes, CONTINUATION frames,
/// written one after the other as the protocol requires.
pub(crate) fn put_header_block(
    out: &mut BytesMut,
    stream: u32,
    block: &[u8],
    end: bool,
    max: usize,
) {
    let mut pieces = block.chunks(max).peekable();
    let mut kind = HEADERS;
    let mut flags = if end { END_STREAM } else { 0 };
    loop {
        let piece = pieces.next().unwrap_or(&[]);
        let last = pieces.peek().is_none();
        if last {
            flags |= END_HEADERS;
        }
        put_head(out, piece.len(), kind, flags, stream);
        out.put_slice(piece);
        if last {
            return;
        }
        kind = CONTINUATION;
        flags = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_read_as_written_and_the_reserved_bit_is_ignored() {
        let mut out = BytesMut::new();
        put_head(
            &mut out,
            70_000,
            HEADERS,
            END_HEADERS | END_STREAM,
            0x8000_0003,
        );
        let head = Head::parse(&out);
        assert_eq!(head.len, 70_000);
        assert_eq!(head.kind, HEADERS);
        assert!(head.has(END_HEADERS) && head.has(END_STREAM) && !head.has(PADDED));
        assert_eq!(head.stream, 3);
    }

    #[test]
    fn a_large_block_is_split_into_continuations_and_data_into_frames() {
        let mut out = BytesMut::new();
        put_header_block(&mut out, 1, &[7; 25], true, 10);
        let heads: Vec<Head> = [0, 19, 38]
            .iter()
            .map(|&at| Head::parse(&out[at..]))
            .collect();
        assert_eq!(
            heads[0],
            Head {
                len: 10,
                kind: HEADERS,
                flags: END_STREAM,
                stream: 1
            }
        );
        assert_eq!(
            heads[1],
            Head {
                len: 10,
                kind: CONTINUATION,
                flags: 0,
                stream: 1
            }
        );
        assert_eq!(
            heads[2],
            Head {
                len: 5,
                kind: CONTINUATION,
                flags: END_HEADERS,
                stream: 1
            }
        );
        assert_eq!(out.len(), 3 * HEAD_LEN + 25);

        let mut out = BytesMut::new();
        put_data(&mut out, 3, &[1; 15], true, 10);
        assert_eq!(Head::parse(&out).flags, 0);
        assert_eq!(
            Head::parse(&out[19..]),
            Head {
                len: 5,
                kind: DATA,
                flags: END_STREAM,
                stream: 3
            }
        );
        let mut out = BytesMut::new();
        put_data(&mut out, 3, &[], true, 10);
        assert_eq!(
            Head::parse(&out),
            Head {
                len: 0,
                kind: DATA,
                flags: END_STREAM,
                stream: 3
            }
        );
    }
}
