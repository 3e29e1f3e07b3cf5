//! HTTP/1.1 as the gateway speaks it on both sides (RFC 9112): message
//! heads parsed with httparse into the received bytes plus where each
//! header sits, so a header is passed on by copying its bytes, never by
//! building a header map; and the body framings.
//!
//! Why not hyper: a proxy of small requests spends most of its user time
//! turning heads into `HeaderMap`s and back, and in the tasks and channels
//! between a server connection and a client connection. Here one task per
//! client connection reads the request, writes it to a backend, and copies
//! the answer back, touching each header once.

pub(crate) mod body;
pub(crate) mod request;
pub(crate) mod response;
mod wire;

pub(crate) use wire::{give_back_room, Stream, Wire, BACKEND_ROOM, CLIENT_ROOM};

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use http::StatusCode;

/// The most headers a message may carry.
pub(crate) const MAX_HEADERS: usize = 100;
/// The largest message head accepted.
pub(crate) const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Why a message head was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HeadError {
    #[error("the message head is malformed: {0}")]
    Malformed(String),
    #[error("the message head is larger than {MAX_HEAD_BYTES} bytes or has more than {MAX_HEADERS} headers")]
    TooLarge,
    #[error("the message has an invalid {0}")]
    Invalid(&'static str),
    #[error("{0} is not supported")]
    Unsupported(&'static str),
}

/// What httparse's answer means for a buffer of `buffered` bytes: the
/// head's length, `None` while more is needed, or too large.
fn head_length(
    parsed: httparse::Status<usize>,
    buffered: usize,
) -> Result<Option<usize>, HeadError> {
    match parsed {
        httparse::Status::Complete(length) => Ok(Some(length)),
        httparse::Status::Partial if buffered >= MAX_HEAD_BYTES => Err(HeadError::TooLarge),
        httparse::Status::Partial => Ok(None),
    }
}

/// Writes a status line; the canonical reason when `reason` is empty.
pub(crate) fn put_status_line(out: &mut BytesMut, status: StatusCode, reason: &[u8]) {
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(status.as_str().as_bytes());
    out.put_u8(b' ');
    if reason.is_empty() {
        out.put_slice(status.canonical_reason().unwrap_or("").as_bytes());
    } else {
        out.put_slice(reason);
    }
    out.put_slice(b"\r\n");
}

pub(crate) fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.put_slice(name);
    out.put_slice(b": ");
    out.put_slice(value);
    out.put_slice(b"\r\n");
}

pub(crate) fn put_number(out: &mut BytesMut, name: &[u8], value: u64) {
    put_field(out, name, itoa::Buffer::new().format(value).as_bytes());
}

/// What an answer tells its client of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterAnswer {
    /// Kept open, as an HTTP/1.1 client assumes: nothing to say.
    KeptOpen,
    /// Kept open, said to an HTTP/1.0 client, which assumes the opposite
    /// unless told (RFC 9112 appendix C.2.2; `ab -k` is one).
    KeptOpenSaid,
    /// Closed after it: `Connection: close`.
    Closed,
}

impl AfterAnswer {
    pub(crate) fn of(close: bool, client_http11: bool) -> AfterAnswer {
        match (close, client_http11) {
            (true, _) => AfterAnswer::Closed,
            (false, true) => AfterAnswer::KeptOpen,
            (false, false) => AfterAnswer::KeptOpenSaid,
        }
    }

    /// Writes its `Connection` field, if it has one.
    pub(crate) fn put(self, out: &mut BytesMut) {
        match self {
            AfterAnswer::KeptOpen => {}
            AfterAnswer::KeptOpenSaid => put_field(out, b"connection", b"keep-alive"),
            AfterAnswer::Closed => put_field(out, b"connection", b"close"),
        }
    }
}

impl From<httparse::Error> for HeadError {
    fn from(err: httparse::Error) -> Self {
        match err {
            httparse::Error::TooManyHeaders => HeadError::TooLarge,
            other => HeadError::Malformed(other.to_string()),
        }
    }
}

/// A received head: its bytes and where each header's name and value are.
#[derive(Debug, Clone)]
pub(crate) struct Head {
    pub(crate) bytes: Bytes,
    pub(crate) fields: Vec<Field>,
}

#[derive(Debug, Clone)]
pub(crate) struct Field {
    pub(crate) name: Range<usize>,
    pub(crate) value: Range<usize>,
    pub(crate) known: Known,
}

/// The headers the gateway looks at or leaves out, recognised once as a
/// head is parsed so that no later look compares names again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Known {
    Connection,
    ContentLength,
    TransferEncoding,
    Expect,
    Host,
    ForwardedFor,
    ForwardedProto,
    RequestId,
    IdempotencyKey,
    /// The waiting room's: what carries a place in line.
    Cookie,
    Accept,
    Ticket,
    /// The status page's word for the shops (`Flashguard-Status`): set by
    /// the gateway only, never passed on from a client.
    StoreStatus,
    /// Another hop-by-hop header (RFC 9110 §7.6.1).
    HopByHop,
    Other,
}

impl Known {
    pub(crate) fn of(name: &[u8]) -> Known {
        use Known::*;
        // By length first: every header of every message comes through
        // here, and most match no known length or one name of it.
        let candidates: &[(&[u8], Known)] = match name.len() {
            2 => &[(b"te", HopByHop)],
            4 => &[(b"host", Host)],
            6 => &[
                (b"cookie", Cookie),
                (b"accept", Accept),
                (b"expect", Expect),
            ],
            7 => &[(b"upgrade", HopByHop), (b"trailer", HopByHop)],
            10 => &[(b"connection", Connection), (b"keep-alive", HopByHop)],
            12 => &[(b"x-request-id", RequestId)],
            14 => &[(b"content-length", ContentLength)],
            15 => &[
                (b"x-forwarded-for", ForwardedFor),
                (b"idempotency-key", IdempotencyKey),
            ],
            16 => &[(b"proxy-connection", HopByHop)],
            17 => &[
                (b"transfer-encoding", TransferEncoding),
                (b"x-forwarded-proto", ForwardedProto),
                (b"flashguard-ticket", Ticket),
                (b"flashguard-status", StoreStatus),
            ],
            18 => &[(b"proxy-authenticate", HopByHop)],
            19 => &[(b"proxy-authorization", HopByHop)],
            _ => &[],
        };
        candidates
            .iter()
            .find(|(known, _)| known.eq_ignore_ascii_case(name))
            .map_or(Other, |(_, kind)| *kind)
    }

    /// Whether the header is copied to the next hop: not one describing
    /// this connection, nor the body framing the gateway writes itself.
    fn copied(self) -> bool {
        !matches!(
            self,
            Known::Connection
                | Known::ContentLength
                | Known::TransferEncoding
                | Known::Expect
                | Known::HopByHop
        )
    }
}

impl Head {
    /// Notes where httparse found each header within `buffer`.
    fn fields_of(buffer: &[u8], headers: &[httparse::Header<'_>]) -> Vec<Field> {
        let start = buffer.as_ptr() as usize;
        headers
            .iter()
            .map(|h| {
                let name = h.name.as_ptr() as usize - start;
                let value = h.value.as_ptr() as usize - start;
                Field {
                    name: name..name + h.name.len(),
                    value: value..value + h.value.len(),
                    known: Known::of(h.name.as_bytes()),
                }
            })
            .collect()
    }

    pub(crate) fn name(&self, field: &Field) -> &[u8] {
        &self.bytes[field.name.clone()]
    }

    pub(crate) fn value(&self, field: &Field) -> &[u8] {
        &self.bytes[field.value.clone()]
    }

    /// Every value of the header `known`.
    pub(crate) fn values(&self, known: Known) -> impl Iterator<Item = &[u8]> + '_ {
        self.fields
            .iter()
            .filter(move |f| f.known == known)
            .map(|f| self.value(f))
    }

    pub(crate) fn get(&self, known: Known) -> Option<&[u8]> {
        self.values(known).next()
    }

    pub(crate) fn has(&self, known: Known) -> bool {
        self.fields.iter().any(|f| f.known == known)
    }

    /// The first value of a header not in `Known`, found by its name: for
    /// the rare path that reads one (the waiting room reads
    /// `Content-Type`); a name in `Known` would be compared once more in
    /// every message that passes.
    pub(crate) fn get_named(&self, name: &[u8]) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.known == Known::Other && self.name(f).eq_ignore_ascii_case(name))
            .map(|f| self.value(f))
    }
}

/// What a head's `Connection` header says, and which other headers it names
/// as hop-by-hop (RFC 9110 §7.6.1).
#[derive(Debug, Default)]
pub(crate) struct ConnectionOptions {
    pub(crate) close: bool,
    pub(crate) keep_alive: bool,
    named: Vec<Range<usize>>,
}

impl ConnectionOptions {
    pub(crate) fn of(head: &Head) -> ConnectionOptions {
        let mut options = ConnectionOptions::default();
        for field in head.fields.iter().filter(|f| f.known == Known::Connection) {
            let mut at = field.value.start;
            for token in head.value(field).split(|b| *b == b',') {
                let trimmed = token.trim_ascii();
                let offset = trimmed.as_ptr() as usize - token.as_ptr() as usize;
                if trimmed.eq_ignore_ascii_case(b"close") {
                    options.close = true;
                } else if trimmed.eq_ignore_ascii_case(b"keep-alive") {
                    options.keep_alive = true;
                } else if !trimmed.is_empty() {
                    let from = at + offset;
                    options.named.push(from..from + trimmed.len());
                }
                at += token.len() + 1;
            }
        }
        options
    }

    /// Whether `field` of `head` is passed on to the next hop. `Host` is
    /// never taken for hop-by-hop, whatever `Connection` names. Inlined:
    /// it runs for every field of every head, and a call costs more than
    /// its usual answer (no `Connection` options named).
    #[inline]
    pub(crate) fn copied(&self, head: &Head, field: &Field) -> bool {
        field.known.copied()
            && (self.named.is_empty()
                || field.known == Known::Host
                || !self.named.iter().any(|named| {
                    head.name(field)
                        .eq_ignore_ascii_case(&head.bytes[named.clone()])
                }))
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the sender closes the connection (responses only).
    UntilClose,
}

/// The body framing a head declares, and whether transfer codings other
/// than chunked come before it (`gzip, chunked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Declared {
    pub(crate) framing: Framing,
    /// Codings the gateway does not undo sit under the chunked framing:
    /// they must reach the next hop unchanged, or not at all.
    pub(crate) coded: bool,
}

/// The body framing a head declares: `Transfer-Encoding` ending in
/// `chunked`, or one `Content-Length` (RFC 9112 §6.3, the request-smuggling
/// rules). Both together, several different lengths, or codings that do
/// not end in `chunked` (the length cannot be known) are refused.
pub(crate) fn declared_framing(head: &Head) -> Result<Option<Declared>, HeadError> {
    let mut codings = 0;
    let mut last_chunked = false;
    let mut chunked_seen = false;
    for value in head.values(Known::TransferEncoding) {
        for coding in value.split(|b| *b == b',') {
            let coding = coding.trim_ascii();
            if coding.is_empty() {
                continue;
            }
            codings += 1;
            // Chunked may be applied once, and only last.
            if chunked_seen {
                return Err(HeadError::Invalid(
                    "Transfer-Encoding: chunked must be the final coding",
                ));
            }
            last_chunked = coding.eq_ignore_ascii_case(b"chunked");
            chunked_seen = last_chunked;
        }
    }
    let mut length: Option<u64> = None;
    for value in head.values(Known::ContentLength) {
        let parsed = std::str::from_utf8(value)
            .ok()
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(HeadError::Invalid("Content-Length"))?;
        if length.is_some_and(|earlier| earlier != parsed) {
            return Err(HeadError::Invalid("Content-Length"));
        }
        length = Some(parsed);
    }
    match (codings, last_chunked, length) {
        (0, _, None) => Ok(None),
        (0, _, Some(n)) => Ok(Some(Declared {
            framing: Framing::Length(n),
            coded: false,
        })),
        (_, _, Some(_)) => Err(HeadError::Invalid(
            "Content-Length beside Transfer-Encoding",
        )),
        (_, true, None) => Ok(Some(Declared {
            framing: Framing::Chunked,
            coded: codings > 1,
        })),
        (_, false, None) => Err(HeadError::Invalid(
            "Transfer-Encoding: chunked must be the final coding",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Head {
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut slots);
        parsed.parse(&bytes).unwrap();
        let fields = Head::fields_of(&bytes, parsed.headers);
        Head { bytes, fields }
    }

    #[test]
    fn a_header_not_known_is_found_by_its_name_in_any_case() {
        let h = head("POST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nHost: shop\r\n\r\n");
        assert_eq!(
            h.get_named(b"content-type"),
            Some(&b"application/x-www-form-urlencoded"[..])
        );
        assert_eq!(h.get_named(b"content-length"), None);
    }

    #[test]
    fn every_known_name_is_recognised_in_any_case_and_no_other() {
        let known = [
            ("te", Known::HopByHop),
            ("Host", Known::Host),
            ("COOKIE", Known::Cookie),
            ("accept", Known::Accept),
            ("Expect", Known::Expect),
            ("upgrade", Known::HopByHop),
            ("Trailer", Known::HopByHop),
            ("connection", Known::Connection),
            ("Keep-Alive", Known::HopByHop),
            ("X-Request-Id", Known::RequestId),
            ("content-length", Known::ContentLength),
            ("x-forwarded-for", Known::ForwardedFor),
            ("Idempotency-Key", Known::IdempotencyKey),
            ("proxy-connection", Known::HopByHop),
            ("Transfer-Encoding", Known::TransferEncoding),
            ("x-forwarded-proto", Known::ForwardedProto),
            ("Flashguard-Ticket", Known::Ticket),
            ("flashguard-status", Known::StoreStatus),
            ("proxy-authenticate", Known::HopByHop),
            ("Proxy-Authorization", Known::HopByHop),
        ];
        for (name, kind) in known {
            assert_eq!(Known::of(name.as_bytes()), kind, "{name}");
        }
        // Same lengths as known names, and near misses.
        for other in [
            "",
            "tf",
            "hose",
            "cookies",
            "accepts",
            "acceptx",
            "content-type",
            "x-request-ix",
            "content-lengths",
            "x-forwarded-fox",
            "flashguard-tickex",
            "date",
            "server",
        ] {
            assert_eq!(Known::of(other.as_bytes()), Known::Other, "{other}");
        }
    }

    /// The names of the headers passed on to the next hop.
    fn copied(h: &Head) -> Vec<&[u8]> {
        let options = ConnectionOptions::of(h);
        h.fields
            .iter()
            .filter(|f| options.copied(h, f))
            .map(|f| h.name(f))
            .collect()
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_not_copied() {
        let h = head(
            "GET / HTTP/1.1\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\n\
             Keep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nHost: shop\r\n\
             Idempotency-Key: k\r\n\r\n",
        );
        let options = ConnectionOptions::of(&h);
        assert!(options.keep_alive && !options.close);
        assert_eq!(copied(&h), [&b"Host"[..], &b"Idempotency-Key"[..]]);
    }

    #[test]
    fn framing_is_one_length_or_chunked_and_nothing_ambiguous() {
        let framing = |extra: &str| {
            declared_framing(&head(&format!("POST / HTTP/1.1\r\n{extra}\r\n")))
                .map(|d| d.map(|d| (d.framing, d.coded)))
        };
        assert_eq!(framing(""), Ok(None));
        assert_eq!(
            framing("Content-Length: 5\r\n"),
            Ok(Some((Framing::Length(5), false)))
        );
        assert_eq!(
            framing("Content-Length: 5\r\nContent-Length: 5\r\n"),
            Ok(Some((Framing::Length(5), false)))
        );
        assert_eq!(
            framing("Transfer-Encoding: chunked\r\n"),
            Ok(Some((Framing::Chunked, false)))
        );
        assert_eq!(
            framing("Transfer-Encoding: gzip, chunked\r\n"),
            Ok(Some((Framing::Chunked, true))),
            "a coding under chunked is kept track of, never dropped"
        );
        assert_eq!(
            framing("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"),
            Ok(Some((Framing::Chunked, true)))
        );
        assert!(framing("Content-Length: 5\r\nContent-Length: 6\r\n").is_err());
        assert!(framing("Content-Length: -1\r\n").is_err());
        assert!(framing("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n").is_err());
        for not_final in [
            "gzip",
            "chunked, gzip",
            "chunked, identity",
            "chunked, chunked",
        ] {
            assert_eq!(
                framing(&format!("Transfer-Encoding: {not_final}\r\n")),
                Err(HeadError::Invalid(
                    "Transfer-Encoding: chunked must be the final coding"
                )),
                "{not_final}"
            );
        }
    }

    #[test]
    fn connection_cannot_name_host_away() {
        let h = head("GET / HTTP/1.1\r\nConnection: Host, X-A\r\nHost: shop\r\nX-A: 1\r\n\r\n");
        assert_eq!(copied(&h), [&b"Host"[..]]);
    }
}
