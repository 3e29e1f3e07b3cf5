//! A client's request head.

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
    let target = parsed.path.and_then(|path| {
        let at = path.as_ptr() as usize - start;
        origin_form(path).map(|(from, to)| at + from..at + to)
    });
    let fields = Head::fields_of(buffer, parsed.headers);
    let bytes = buffer.split_to(length).freeze();
    let head = Head { bytes, fields };
    let target = match target {
        Some(range) => head.bytes.slice(range),
        None => Bytes::from_static(b"/"),
    };
    let framing = declared_framing(&head)?.unwrap_or(Framing::Empty);
    let connection = ConnectionOptions::of(&head);
    let expects_continue = head
        .get(Known::Expect)
        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"));
    Ok(Some(RequestHead {
        method,
        target,
        http11,
        head,
        framing,
        connection,
        expects_continue,
    }))
}

/// Where the origin form sits in a request target: the target itself, or
/// the path and query of an absolute-form one (`http://host/path`); `None`
/// for an absolute form with an empty path (meaning `/`).
fn origin_form(target: &str) -> Option<(usize, usize)> {
    if target.starts_with('/') || target == "*" {
        return Some((0, target.len()));
    }
    let after_scheme = target.find("://")? + 3;
    let path = target[after_scheme..].find(['/', '?'])? + after_scheme;
    if target.as_bytes()[path] == b'?' {
        return None; // rare: `http://host?q`; sent as `/`
    }
    Some((path, target.len()))
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
        assert!(keeps("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keeps("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"));
        assert!(!keeps("GET / HTTP/1.0\r\n\r\n"));
        assert!(keeps("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn absolute_targets_are_sent_in_origin_form() {
        let target = |text: &str| parse(text).unwrap().unwrap().target().to_string();
        assert_eq!(
            target("GET http://shop:8080/a?b=1 HTTP/1.1\r\n\r\n"),
            "/a?b=1"
        );
        assert_eq!(target("GET http://shop HTTP/1.1\r\n\r\n"), "/");
        assert_eq!(target("OPTIONS * HTTP/1.1\r\n\r\n"), "*");
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
        assert!(
            parse("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err()
        );
        let expecting =
            parse("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n");
        assert!(expecting.unwrap().unwrap().expects_continue);
    }
}
