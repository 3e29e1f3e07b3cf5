//! A stream's request: the fields its header block decoded to, checked as
//! RFC 9113 section 8 requires of a request (a malformed one is reset with
//! `PROTOCOL_ERROR`), then made the head an HTTP/1.1 client would send
//! (`host` from `:authority` when there is no `host`, the cookies joined,
//! chunked framing when no length is given) and checked as every request
//! head is. What is refused here never reaches a backend: the target and
//! every value go into an HTTP/1.1 head, so nothing that could end a line
//! or a field gets through.

use std::ops::Range;

use bytes::{BufMut, BytesMut};
use http::Method;

use crate::http1::request::RequestHead;
use crate::http1::{Field, Head, HeadError, Known};

/// How the request's body reaches the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    None,
    /// The client announced `content-length`: its bytes as they come.
    Raw,
    /// No length: chunked, as an HTTP/1.1 client would send it.
    Chunked,
}

/// Why a stream's request is not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Not a request HTTP/2 allows: the stream is reset.
    Malformed,
    /// Its header list is past `max_header_list_bytes`: answered 431.
    TooLarge,
}

/// The decoded fields of a request, copied side by side into one buffer.
pub(crate) struct RequestFields {
    bytes: BytesMut,
    method: Option<Range<usize>>,
    scheme: bool,
    path: Option<Range<usize>>,
    authority: Option<Range<usize>>,
    fields: Vec<(Range<usize>, Range<usize>, Known)>,
    regular_seen: bool,
    malformed: bool,
    pub(crate) declared_length: Option<u64>,
}

fn is_token_lowercase(name: &[u8]) -> bool {
    !name.is_empty()
        && name.iter().all(|&b| {
            matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\''
                | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
        })
}

/// RFC 9113 section 8.2.1: no NUL, CR or LF, and no white space at
/// either end.
fn is_value(value: &[u8]) -> bool {
    let edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    !edge(value.first())
        && !edge(value.last())
        && !value.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
}

impl RequestFields {
    pub(crate) fn new(block_len: usize) -> RequestFields {
        RequestFields {
            bytes: BytesMut::with_capacity(block_len * 2 + 64),
            method: None,
            scheme: false,
            path: None,
            authority: None,
            fields: Vec::with_capacity(16),
            regular_seen: false,
            malformed: false,
            declared_length: None,
        }
    }

    fn keep(&mut self, bytes: &[u8]) -> Range<usize> {
        let at = self.bytes.len();
        self.bytes.put_slice(bytes);
        at..self.bytes.len()
    }

    /// One decoded field, in the block's order.
    pub(crate) fn add(&mut self, name: &[u8], value: &[u8]) {
        if self.malformed {
            return;
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            // Pseudo-fields come first, once each (section 8.3).
            let slot = match pseudo {
                b"method" => &mut self.method,
                b"path" => &mut self.path,
                b"authority" => &mut self.authority,
                b"scheme" if !self.scheme && !self.regular_seen => {
                    self.scheme = is_token_lowercase(value);
                    self.malformed |= !self.scheme;
                    return;
                }
                _ => {
                    self.malformed = true;
                    return;
                }
            };
            if slot.is_some() || self.regular_seen {
                self.malformed = true;
                return;
            }
            let range = self.keep(value);
            match pseudo {
                b"method" => self.method = Some(range),
                b"path" => self.path = Some(range),
                _ => self.authority = Some(range),
            }
            return;
        }
        self.regular_seen = true;
        if !is_token_lowercase(name) || !is_value(value) {
            self.malformed = true;
            return;
        }
        let known = Known::of(name);
        match known {
            // Connection-specific fields are malformed in HTTP/2
            // (section 8.2.2), and `te` may only say `trailers`.
            Known::Connection | Known::TransferEncoding => self.malformed = true,
            Known::HopByHop if name == b"te" => self.malformed |= value != b"trailers",
            Known::HopByHop => self.malformed = true,
            Known::ContentLength => {
                let length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok());
                match (length, self.declared_length) {
                    (Some(n), None) => self.declared_length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => self.malformed = true,
                }
            }
            _ => {}
        }
        let name = self.keep(name);
        let value = self.keep(value);
        self.fields.push((name, value, known));
    }

    /// Checks the request as a whole: its pseudo-fields, its target, its
    /// length against a stream that has ended.
    pub(crate) fn finish(self, end_stream: bool) -> Result<RequestFields, Refused> {
        let (Some(method), Some(path)) = (&self.method, &self.path) else {
            // CONNECT (no :path) is not served: the gateway tunnels nothing.
            return Err(Refused::Malformed);
        };
        let method = &self.bytes[method.clone()];
        let path = &self.bytes[path.clone()];
        let target_ok = path.first() == Some(&b'/') || (path == b"*" && method == b"OPTIONS");
        let visible = path.iter().all(|&b| (0x21..=0x7e).contains(&b));
        let authority_ok = self.authority.as_ref().is_none_or(|range| {
            self.bytes[range.clone()]
                .iter()
                .all(|&b| (0x21..=0x7e).contains(&b) && !matches!(b, b'/' | b'?' | b'#' | b'@'))
        });
        let length_ok = !end_stream || self.declared_length.is_none_or(|n| n == 0);
        if self.malformed || !self.scheme || !target_ok || !visible || !authority_ok || !length_ok {
            return Err(Refused::Malformed);
        }
        Ok(self)
    }

    /// The head the request path takes, and how its body follows.
    pub(crate) fn into_head(self, has_body: bool) -> Result<(RequestHead, BodyFraming), HeadError> {
        let method = self.method.clone().unwrap_or(0..0);
        let method =
            Method::from_bytes(&self.bytes[method]).map_err(|_| HeadError::Invalid("method"))?;
        let target = self.path.clone().map_or(&b"/"[..], |r| &self.bytes[r]);
        let mut out = Fields::new(target.len() + self.bytes.len() + 64, self.fields.len() + 2);
        out.bytes.put_slice(target);
        let has = |known: Known| self.fields.iter().any(|f| f.2 == known);
        if !has(Known::Host) {
            let authority = self.authority.clone().map_or(&b""[..], |r| &self.bytes[r]);
            out.add(b"host", Known::Host, &[authority]);
        }
        // Section 8.2.3: cookies split over fields are one again.
        let cookies: Vec<&[u8]> = self
            .fields
            .iter()
            .filter(|f| f.2 == Known::Cookie)
            .map(|f| &self.bytes[f.1.clone()])
            .collect();
        if !cookies.is_empty() {
            out.add(b"cookie", Known::Cookie, &cookies);
        }
        for (name, value, known) in &self.fields {
            match known {
                // Framing is this side's choice; Expect would ask for an
                // HTTP/1.1 interim answer HTTP/2 has no use for; `te:
                // trailers` is this hop's.
                Known::Cookie | Known::Expect | Known::HopByHop => continue,
                known => out.add(
                    &self.bytes[name.clone()],
                    *known,
                    &[&self.bytes[value.clone()]],
                ),
            }
        }
        let framing = if !has_body {
            BodyFraming::None
        } else if self.declared_length.is_some() {
            BodyFraming::Raw
        } else {
            out.add(b"transfer-encoding", Known::TransferEncoding, &[b"chunked"]);
            BodyFraming::Chunked
        };
        let bytes = out.bytes.freeze();
        let target = bytes.slice(..target.len());
        let head = Head {
            bytes,
            fields: out.list,
        };
        let head = crate::http1::request::request_head(method, target, None, true, head)?;
        Ok((head, framing))
    }
}

/// A head's fields as they are put together: names and values side by
/// side in one buffer.
struct Fields {
    bytes: BytesMut,
    list: Vec<Field>,
}

impl Fields {
    fn new(bytes: usize, fields: usize) -> Fields {
        Fields {
            bytes: BytesMut::with_capacity(bytes),
            list: Vec::with_capacity(fields),
        }
    }

    /// One field, its value the `parts` joined by `; `.
    fn add(&mut self, name: &[u8], known: Known, parts: &[&[u8]]) {
        let name_at = self.bytes.len();
        self.bytes.put_slice(name);
        let value_at = self.bytes.len();
        for (n, part) in parts.iter().enumerate() {
            if n > 0 {
                self.bytes.put_slice(b"; ");
            }
            self.bytes.put_slice(part);
        }
        self.list.push(Field {
            name: name_at..value_at,
            value: value_at..self.bytes.len(),
            known,
        });
    }
}

/// A request of `fields` (pseudo-fields among them), as the connection
/// would decode it; for tests.
#[cfg(test)]
pub(crate) fn request_of(
    fields: &[(&str, &str)],
    end_stream: bool,
) -> Result<RequestFields, Refused> {
    let mut request = RequestFields::new(256);
    for (name, value) in fields {
        request.add(name.as_bytes(), value.as_bytes());
    }
    request.finish(end_stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::Framing;

    const GET: [(&str, &str); 3] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/p/1?x=2"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut all = GET.to_vec();
        all.extend_from_slice(extra);
        all
    }

    fn fields(head: &RequestHead) -> Vec<(String, String)> {
        let text = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
        let head = &head.head;
        head.fields
            .iter()
            .map(|f| (text(head.name(f)), text(head.value(f))))
            .collect()
    }

    #[test]
    fn a_stream_becomes_the_head_an_http1_client_would_send() {
        let list = with(&[
            (":authority", "shop.test"),
            ("cookie", "a=1"),
            ("accept", "*/*"),
            ("cookie", "b=2"),
            ("expect", "100-continue"),
            ("te", "trailers"),
        ]);
        let (head, framing) = request_of(&list, true).unwrap().into_head(false).unwrap();
        assert_eq!(framing, BodyFraming::None);
        assert_eq!(head.target(), "/p/1?x=2");
        assert_eq!(head.path(), "/p/1");
        assert!(head.http11 && head.has_host() && !head.expects_continue);
        assert_eq!(
            fields(&head),
            [
                ("host".into(), "shop.test".into()),
                ("cookie".into(), "a=1; b=2".into()),
                ("accept".into(), "*/*".into()),
            ]
        );
    }

    #[test]
    fn a_body_without_a_length_is_chunked_and_one_with_a_length_is_not() {
        let (head, framing) = request_of(&GET, false).unwrap().into_head(true).unwrap();
        assert_eq!(framing, BodyFraming::Chunked);
        assert!(matches!(head.framing, Framing::Chunked));
        let request = request_of(&with(&[("content-length", "5")]), false).unwrap();
        assert_eq!(request.declared_length, Some(5));
        let (head, framing) = request.into_head(true).unwrap();
        assert_eq!(framing, BodyFraming::Raw);
        assert!(matches!(head.framing, Framing::Length(5)));
    }

    #[test]
    fn requests_http2_does_not_allow_are_refused() {
        let malformed = [
            vec![(":method", "GET"), (":path", "/")],       // no :scheme
            vec![(":method", "GET"), (":scheme", "https")], // no :path
            vec![(":method", "CONNECT"), (":authority", "evil:443")], // CONNECT
            with(&[(":method", "POST")]),                   // twice
            with(&[(":protocol", "websocket")]),            // unknown
            with(&[("accept", "*/*"), (":authority", "s")]), // after a field
            with(&[("Accept", "x")]),                       // uppercase
            with(&[("connection", "close")]),
            with(&[("transfer-encoding", "chunked")]),
            with(&[("keep-alive", "5")]),
            with(&[("upgrade", "h2c")]),
            with(&[("te", "gzip")]),
            with(&[("x-a", "one\r\nx-smuggled: yes")]),
            with(&[("x-a", " padded")]),
            with(&[("content-length", "five")]),
            with(&[("content-length", "5"), ("content-length", "6")]),
            vec![(":method", "GET"), (":scheme", "https"), (":path", "x/y")],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "http://evil/x"),
            ],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "/a b")],
            vec![(":method", "GET"), (":scheme", "https"), (":path", "*")],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":authority", "a@evil"),
            ],
            vec![
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/"),
                (":authority", "a\r\nb"),
            ],
        ];
        for list in malformed {
            assert_eq!(
                request_of(&list, false).err(),
                Some(Refused::Malformed),
                "{list:?}"
            );
        }
        // A length on a stream that ended with its headers.
        assert_eq!(
            request_of(&with(&[("content-length", "5")]), true).err(),
            Some(Refused::Malformed)
        );
        let options = [(":method", "OPTIONS"), (":scheme", "https"), (":path", "*")];
        assert!(request_of(&options, true).is_ok());
    }

    #[test]
    fn heads_no_request_may_have_are_refused_by_the_request_path() {
        let two_hosts = with(&[("host", "a"), ("host", "b")]);
        assert!(request_of(&two_hosts, true)
            .unwrap()
            .into_head(false)
            .is_err());
        // An explicit `host` wins over `:authority`, as it did in HTTP/1.1.
        let mut list = vec![(":authority", "s")];
        list.extend(with(&[("host", "h")]));
        let (head, _) = request_of(&list, true).unwrap().into_head(false).unwrap();
        assert_eq!(head.head.get(Known::Host), Some(&b"h"[..]));
    }
}
