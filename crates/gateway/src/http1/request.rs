//! A client's request head.

use std::ops::Range;

use bytes::{Bytes, BytesMut};
use http::Method;

use super::{
    declared_framing, head_length, ConnectionOptions, Framing, Head, HeadError, Known, MAX_HEADERS,
};

#[derive(Debug)]
pub(crate) struct RequestHead {
    pub(crate) method: Method,
    /// Origin form (`/path?query`), or `*`.
    pub(crate) target: Bytes,
    /// The authority of an absolute-form target (`http://shop:8080/a`),
    /// which replaces `Host` (RFC 9112 §3.2.2).
    pub(crate) authority: Option<Bytes>,
    pub(crate) http11: bool,
    pub(crate) head: Head,
    pub(crate) framing: Framing,
    pub(crate) connection: ConnectionOptions,
    /// The client waits for `100 Continue` before sending its body.
    pub(crate) expects_continue: bool,
}

impl RequestHead {
    /// Whether the client keeps the connection open after this request.
    pub(crate) fn keep_alive(&self) -> bool {
        if self.http11 {
            !self.connection.close
        } else {
            self.connection.keep_alive && !self.connection.close
        }
    }

    pub(crate) fn target(&self) -> &str {
        // httparse admits only visible ASCII in a target.
        std::str::from_utf8(&self.target).unwrap_or("/")
    }

    /// Whether the backend gets a `Host` from the client (its header or
    /// its absolute-form target); if not, the backend's own is added.
    pub(crate) fn has_host(&self) -> bool {
        self.authority.is_some() || self.head.has(Known::Host)
    }

    pub(crate) fn path(&self) -> &str {
        let target = self.target();
        target.split_once('?').map_or(target, |(path, _)| path)
    }
}

/// Parses a request head from the front of `buffer`. `Ok(None)`: more
/// bytes are needed. On success the head's bytes are taken off `buffer`.
pub(crate) fn parse_request(buffer: &mut BytesMut) -> Result<Option<RequestHead>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut slots);
    let Some(length) = head_length(parsed.parse(buffer)?, buffer.len())? else {
        return Ok(None);
    };
    let method = Method::from_bytes(parsed.method.unwrap_or("").as_bytes())
        .map_err(|_| HeadError::Invalid("method"))?;
    let http11 = parsed.version == Some(1);
    let start = buffer.as_ptr() as usize;
    let at = parsed.path.map_or(0, |path| path.as_ptr() as usize - start);
    let (target, authority) = parsed.path.map(split_target).unwrap_or((None, None));
    let fields = Head::fields_of(buffer, parsed.headers);
    let bytes = buffer.split_to(length).freeze();
    let head = Head { bytes, fields };
    let target = match target {
        Some(range) => head.bytes.slice(at + range.start..at + range.end),
        None => Bytes::from_static(b"/"),
    };
    let authority = authority.map(|range| head.bytes.slice(at + range.start..at + range.end));
    request_head(method, target, authority, http11, head).map(Some)
}

/// A request head from its parts, checked as every request is, however it
/// came (an HTTP/1.1 head, or an HTTP/2 stream's HEADERS).
pub(crate) fn request_head(
    method: Method,
    target: Bytes,
    authority: Option<Bytes>,
    http11: bool,
    head: Head,
) -> Result<RequestHead, HeadError> {
    // RFC 9112 §3.2: one Host, and an HTTP/1.1 request must have it.
    match head.values(Known::Host).count() {
        0 if http11 => return Err(HeadError::Invalid("request: HTTP/1.1 needs a Host header")),
        0 | 1 => {}
        _ => return Err(HeadError::Invalid("request: more than one Host header")),
    }
    let framing = match declared_framing(&head)? {
        None => Framing::Empty,
        // The gateway undoes no coding but chunked (RFC 9112 §6.1: 501).
        Some(declared) if declared.coded => {
            return Err(HeadError::Unsupported(
                "a transfer coding other than chunked",
            ))
        }
        Some(declared) => declared.framing,
    };
    let connection = ConnectionOptions::of(&head);
    let expects_continue = head
        .get(Known::Expect)
        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    Ok(RequestHead {
        method,
        target,
        authority,
        http11,
        head,
        framing,
        connection,
        expects_continue,
    })
}

/// Where the origin form (path and query) sits in a request target, and
/// the authority of an absolute-form one (`http://host:port/path`). The
/// origin form is `None` for an absolute form with an empty path (meaning
/// `/`).
fn split_target(target: &str) -> (Option<Range<usize>>, Option<Range<usize>>) {
    if target.starts_with('/') || target == "*" {
        return (Some(0..target.len()), None);
    }
    let Some(after_scheme) = target.find("://").map(|at| at + 3) else {
        return (None, None);
    };
    let end = target[after_scheme..]
        .find(['/', '?'])
        .map_or(target.len(), |at| at + after_scheme);
    let authority = (end > after_scheme).then_some(after_scheme..end);
    let origin = match target.as_bytes().get(end) {
        Some(b'/') => Some(end..target.len()),
        // `http://host?q` and `http://host`: sent as `/`.
        _ => None,
    };
    (origin, authority)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::MAX_HEAD_BYTES;

    fn parse(text: &str) -> Result<Option<RequestHead>, HeadError> {
        parse_request(&mut BytesMut::from(text))
    }

    #[test]
    fn a_request_head_is_parsed_and_taken_off_the_buffer() {
        let mut buffer = BytesMut::from(
            "POST /api/orders?x=1 HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\n{}GET",
        );
        let request = parse_request(&mut buffer).unwrap().unwrap();
        assert_eq!(request.method, Method::POST);
        assert_eq!(request.target(), "/api/orders?x=1");
        assert_eq!(request.path(), "/api/orders");
        assert_eq!(request.framing, Framing::Length(2));
        assert!(request.keep_alive());
        assert_eq!(&buffer[..], b"{}GET", "the body and what follows stay");
        assert!(parse("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection_header() {
        let keeps = |text: &str| parse(text).unwrap().unwrap().keep_alive();
        assert!(keeps("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!keeps(
            "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        ));
        assert!(!keeps("GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn absolute_targets_are_sent_in_origin_form() {
        let target = |text: &str| parse(text).unwrap().unwrap().target().to_string();
        assert_eq!(
            target("GET http://shop:8080/a?b=1 HTTP/1.1\r\nHost: x\r\n\r\n"),
            "/a?b=1"
        );
        assert_eq!(target("GET http://shop HTTP/1.1\r\nHost: x\r\n\r\n"), "/");
        assert_eq!(target("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), "*");
        let absolute = parse("GET http://shop:8080/a HTTP/1.1\r\nHost: other\r\n\r\n");
        assert_eq!(
            absolute.unwrap().unwrap().authority.as_deref(),
            Some(&b"shop:8080"[..]),
            "its authority replaces Host"
        );
        let origin = parse("GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(origin.authority, None);
    }

    #[test]
    fn host_must_be_there_once_in_http11() {
        let refused = |text: &str| matches!(parse(text), Err(HeadError::Invalid(_)));
        assert!(refused("GET / HTTP/1.1\r\n\r\n"));
        assert!(refused("GET http://shop/ HTTP/1.1\r\n\r\n"));
        assert!(refused("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"));
        assert!(refused("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"));
        assert!(
            !refused("GET / HTTP/1.0\r\n\r\n"),
            "HTTP/1.0 may leave it out"
        );
        assert!(!refused("GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
    }

    #[test]
    fn codings_under_chunked_are_not_implemented_and_chunked_must_be_last() {
        let coded = parse("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert!(matches!(coded, Err(HeadError::Unsupported(_))), "{coded:?}");
        for value in ["gzip", "chunked, identity"] {
            let text = format!("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert!(
                matches!(parse(&text), Err(HeadError::Invalid(_))),
                "{value}"
            );
        }
    }

    #[test]
    fn bad_heads_are_refused() {
        assert!(matches!(
            parse("GET\0 / HTTP/1.1\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
        let huge = format!("GET / HTTP/1.1\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(&huge).unwrap_err(), HeadError::TooLarge);
        let many: String = (0..=MAX_HEADERS).map(|n| format!("X-{n}: 1\r\n")).collect();
        assert_eq!(
            parse(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err(),
            HeadError::TooLarge
        );
        assert!(parse(
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
        )
        .is_err());
        let expecting =
            parse("PUT / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(expecting.unwrap().unwrap().expects_continue);
    }
}
