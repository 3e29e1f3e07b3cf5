//! A raw HTTP/2 client over TLS, frame by frame, for what a well-behaved
//! client library will not send: attacks and protocol errors.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::tls::{connect, TestCa};

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const PROTOCOL_ERROR: u32 = 0x1;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
/// The highest stream id, which a graceful GOAWAY's first step names.
pub const ANY_STREAM: u32 = 0x7fff_ffff;

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK integer with an `prefix`-bit prefix, the first byte's high
/// bits `high`.
pub fn hpack_int(high: u8, prefix: u32, mut value: usize, out: &mut Vec<u8>) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(high | value as u8);
        return;
    }
    out.push(high | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// A field as a literal not indexed, with a literal name (RFC 7541 6.2.2).
pub fn literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.push(0x00);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name);
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value);
}

/// HPACK for a request (RFC 7541): `:method` GET or POST and `:scheme
/// https` from the static table, `:path` and `:authority` as literals that
/// are not indexed.
pub fn request_block(post: bool, path: &str) -> Vec<u8> {
    let mut block = vec![if post { 0x83 } else { 0x82 }, 0x87];
    for (name_index, value) in [(4u8, path), (1, "127.0.0.1")] {
        block.push(name_index);
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    block
}

/// A frame as read.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY or RST_STREAM.
    pub fn code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }
}

/// One HTTP/2 connection, after the preface and an empty SETTINGS.
pub struct RawH2 {
    pub reader: ReadHalf<TlsStream<TcpStream>>,
    pub writer: WriteHalf<TlsStream<TcpStream>>,
}

impl RawH2 {
    pub async fn connect(ca: &TestCa, addr: &str, settings: &[(u16, u32)]) -> RawH2 {
        let tls = connect(ca.rustls_client(&[b"h2"]), addr, "shop.test")
            .await
            .expect("the handshake succeeds");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (reader, writer) = tokio::io::split(tls);
        let mut raw = RawH2 { reader, writer };
        let mut payload = Vec::new();
        for (id, value) in settings {
            payload.extend_from_slice(&id.to_be_bytes());
            payload.extend_from_slice(&value.to_be_bytes());
        }
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &payload));
        raw.send(&hello).await;
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.writer
            .write_all(bytes)
            .await
            .expect("the gateway reads");
        self.writer.flush().await.expect("the gateway reads");
    }

    /// The next frame; None once the connection ends or after 10 s. A
    /// PING from the gateway is answered, as every client must (a graceful
    /// GOAWAY waits for it).
    pub async fn next(&mut self) -> Option<Frame> {
        let frame = self.next_unanswered().await?;
        if frame.kind == PING && frame.flags & ACK == 0 {
            // The gateway may be closing: a write that fails is its end.
            let ack = self::frame(PING, ACK, 0, &frame.payload);
            let _ = self.writer.write_all(&ack).await;
            let _ = self.writer.flush().await;
        }
        Some(frame)
    }

    async fn next_unanswered(&mut self) -> Option<Frame> {
        let read = async {
            let mut head = [0u8; 9];
            self.reader.read_exact(&mut head).await.ok()?;
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let mut payload = vec![0; len];
            self.reader.read_exact(&mut payload).await.ok()?;
            Some(Frame {
                kind: head[3],
                flags: head[4],
                stream: u32::from_be_bytes(head[5..9].try_into().unwrap()) & 0x7fff_ffff,
                payload,
            })
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .ok()
            .flatten()
    }

    /// Frames read until one `done` says is the last (which is kept), the
    /// connection's end, or 10 s without a frame.
    pub async fn until(&mut self, mut done: impl FnMut(&Frame) -> bool) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.next().await {
            let last = done(&frame);
            frames.push(frame);
            if last {
                break;
            }
        }
        frames
    }

    /// Sends a PING and reads until its ACK: what the gateway did about
    /// the frames sent before it (it handles frames in order).
    pub async fn settle(&mut self) -> Vec<Frame> {
        self.send(&frame(PING, 0, 0, b"settled!")).await;
        self.until(|f| {
            f.kind == PING && f.flags & ACK != 0 && f.payload == b"settled!" || f.kind == GOAWAY
        })
        .await
    }
}
