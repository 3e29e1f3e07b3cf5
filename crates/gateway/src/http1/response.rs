//! A backend's response head, and the head the client gets for it.

use bytes::{BufMut, BytesMut};
use http::{Method, StatusCode};

use super::{
    declared_framing, head_length, put_field, put_number, put_status_line, AfterAnswer,
    ConnectionOptions, Field, Framing, Head, HeadError, Known, MAX_HEADERS,
};

#[derive(Debug)]
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    pub(crate) head: Head,
    pub(crate) reason: std::ops::Range<usize>,
    pub(crate) framing: Framing,
    pub(crate) connection: ConnectionOptions,
    /// Whether the backend's connection may carry another request.
    pub(crate) reusable: bool,
    /// Transfer codings other than chunked sit under the chunked framing
    /// (`gzip, chunked`): they go to the client unchanged.
    pub(crate) coded: bool,
}

impl ResponseHead {
    /// Whether the body can reach this client as the backend coded it:
    /// transfer codings cannot go to an HTTP/1.0 client, and dropping them
    /// would hand it a body it cannot read.
    pub(crate) fn relayable_to(&self, client_http11: bool) -> bool {
        client_http11 || !self.coded
    }
}

/// Parses a response head from the front of `buffer`. `Ok(None)`: more
/// bytes are needed. Interim (1xx) responses are skipped. On success the
/// head's bytes are taken off `buffer`.
pub(crate) fn parse_response(
    buffer: &mut BytesMut,
    request_method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut slots);
        let Some(length) = head_length(parsed.parse(buffer)?, buffer.len())? else {
            return Ok(None);
        };
        let code = parsed.code.unwrap_or(0);
        let status = StatusCode::from_u16(code).map_err(|_| HeadError::Invalid("status"))?;
        if code == 101 {
            return Err(HeadError::Unsupported("switching protocols"));
        }
        if status.is_informational() {
            let _ = buffer.split_to(length);
            continue;
        }
        let http11 = parsed.version == Some(1);
        let start = buffer.as_ptr() as usize;
        let reason = match parsed.reason {
            Some(reason) if !reason.is_empty() => {
                let at = reason.as_ptr() as usize - start;
                at..at + reason.len()
            }
            _ => 0..0,
        };
        let fields = Head::fields_of(buffer, parsed.headers);
        let head = Head {
            bytes: buffer.split_to(length).freeze(),
            fields,
        };
        let bodiless = *request_method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        let declared = declared_framing(&head)?;
        let coded = declared.is_some_and(|d| d.coded) && !bodiless;
        let framing = match declared {
            _ if bodiless => Framing::Empty,
            Some(declared) => declared.framing,
            None => Framing::UntilClose,
        };
        let connection = ConnectionOptions::of(&head);
        let reusable = http11 && !connection.close && framing != Framing::UntilClose;
        return Ok(Some(ResponseHead {
            status,
            head,
            reason,
            framing,
            connection,
            reusable,
            coded,
        }));
    }
}

/// How the client's copy of a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFraming {
    /// `Content-Length: n`.
    Length(u64),
    /// The backend's `Content-Length` passed on, no body (HEAD, 304).
    HeadersOnly,
    Chunked,
    /// No framing header; the connection closes after the body (HTTP/1.0
    /// clients of a body of unknown length).
    Close,
}

impl ClientFraming {
    pub(crate) fn for_response(response: &ResponseHead, client_http11: bool) -> ClientFraming {
        match response.framing {
            Framing::Empty => ClientFraming::HeadersOnly,
            Framing::Length(n) => ClientFraming::Length(n),
            Framing::Chunked | Framing::UntilClose if client_http11 => ClientFraming::Chunked,
            Framing::Chunked | Framing::UntilClose => ClientFraming::Close,
        }
    }
}

/// A backend's answer head as the client is to get it: what
/// `write_client_head` writes, or what an HTTP/2 stream takes parsed
/// (`Stream::take_answer_head`).
pub(crate) struct AnswerHead<'a> {
    pub(crate) response: &'a ResponseHead,
    pub(crate) request_id: &'a [u8],
    pub(crate) framing: ClientFraming,
    /// The gateway's own fields (HSTS, a waiting-room ticket), whole lines.
    pub(crate) extra: &'a [u8],
}

impl AnswerHead<'_> {
    /// The backend's fields the client gets: hop-by-hop ones, the framing
    /// and the backend's own request id left out, but the backend's
    /// `Content-Length` kept on an answer without a body (HEAD, 304).
    pub(crate) fn passed_fields(&self) -> impl Iterator<Item = &Field> {
        let response = self.response;
        let head = &response.head;
        let headers_only =
            self.framing == ClientFraming::HeadersOnly && response.status != StatusCode::NO_CONTENT;
        head.fields.iter().filter(move |field| {
            (headers_only && field.known == Known::ContentLength)
                || (field.known != Known::RequestId && response.connection.copied(head, field))
        })
    }
}

/// Writes the head the client gets: the backend's status and headers
/// (hop-by-hop ones left out), the request id, and this hop's framing.
pub(crate) fn write_client_head(out: &mut BytesMut, answer: &AnswerHead<'_>, after: AfterAnswer) {
    let response = answer.response;
    let head = &response.head;
    put_status_line(out, response.status, &head.bytes[response.reason.clone()]);
    for field in answer.passed_fields() {
        put_field(out, head.name(field), head.value(field));
    }
    put_field(out, b"x-request-id", answer.request_id);
    out.put_slice(answer.extra);
    match answer.framing {
        ClientFraming::Length(n) => put_number(out, b"content-length", n),
        // The backend's codings, which end in chunked, unchanged.
        ClientFraming::Chunked if response.coded => {
            for field in head
                .fields
                .iter()
                .filter(|f| f.known == Known::TransferEncoding)
            {
                put_field(out, head.name(field), head.value(field));
            }
        }
        ClientFraming::Chunked => put_field(out, b"transfer-encoding", b"chunked"),
        ClientFraming::HeadersOnly | ClientFraming::Close => {}
    }
    // A body of unknown length ends with the connection, whatever `after`.
    let after = match answer.framing {
        ClientFraming::Close => AfterAnswer::Closed,
        _ => after,
    };
    after.put(out);
    out.put_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::MAX_HEAD_BYTES;

    fn parse(text: &str, method: Method) -> Result<Option<ResponseHead>, HeadError> {
        parse_response(&mut BytesMut::from(text), &method)
    }

    fn client_head(text: &str, method: Method, client_http11: bool) -> String {
        let after = AfterAnswer::of(false, client_http11);
        client_head_then(text, method, client_http11, after)
    }

    fn client_head_then(
        text: &str,
        method: Method,
        client_http11: bool,
        after: AfterAnswer,
    ) -> String {
        let response = parse(text, method).unwrap().unwrap();
        let framing = ClientFraming::for_response(&response, client_http11);
        let mut out = BytesMut::new();
        let answer = AnswerHead {
            response: &response,
            request_id: b"id-1",
            framing,
            extra: b"",
        };
        write_client_head(&mut out, &answer, after);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn the_connection_field_says_what_becomes_of_the_connection() {
        let sized = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n";
        let says = |http11, close| {
            let head = client_head_then(sized, Method::GET, http11, AfterAnswer::of(close, http11));
            head.lines()
                .filter_map(|line| line.strip_prefix("connection: "))
                .collect::<Vec<_>>()
                .join(",")
        };
        assert_eq!(says(true, false), "", "HTTP/1.1 assumes it is kept");
        assert_eq!(
            says(false, false),
            "keep-alive",
            "HTTP/1.0 assumes it closes"
        );
        assert_eq!(says(true, true), "close");
        assert_eq!(says(false, true), "close");
        // A body of unknown length ends with the connection: never
        // `keep-alive` then, whatever the caller meant.
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let old = client_head_then(chunked, Method::GET, false, AfterAnswer::KeptOpenSaid);
        assert!(
            old.contains("connection: close\r\n") && !old.contains("keep-alive"),
            "{old}"
        );
    }

    #[test]
    fn a_partial_head_asks_for_more_and_a_whole_one_is_taken_off_the_buffer() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Le", Method::GET)
            .unwrap()
            .is_none());
        let mut buffer = BytesMut::from("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi");
        let head = parse_response(&mut buffer, &Method::GET).unwrap().unwrap();
        assert_eq!(head.status, StatusCode::OK);
        assert_eq!(head.framing, Framing::Length(2));
        assert!(head.reusable);
        assert_eq!(&buffer[..], b"hi");
    }

    #[test]
    fn the_client_gets_the_backends_headers_without_hop_by_hop_ones() {
        let text = client_head(
            "HTTP/1.1 201 Created\r\nConnection: x-secret\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\n\
             Content-Type: text/plain\r\nX-Request-Id: theirs\r\nContent-Length: 2\r\n\r\n",
            Method::POST,
            true,
        );
        assert_eq!(
            text,
            "HTTP/1.1 201 Created\r\nContent-Type: text/plain\r\nx-request-id: id-1\r\ncontent-length: 2\r\n\r\n"
        );
    }

    #[test]
    fn bodies_of_unknown_length_are_chunked_for_http11_clients_and_closed_for_http10() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(client_head(chunked, Method::GET, true).contains("transfer-encoding: chunked\r\n"));
        let old = client_head(chunked, Method::GET, false);
        assert!(old.contains("connection: close\r\n") && !old.contains("transfer-encoding"));
        let head = client_head(
            "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
            Method::HEAD,
            true,
        );
        assert!(head.contains("Content-Length: 9\r\n"), "{head}");
    }

    #[test]
    fn codings_under_chunked_reach_an_http11_client_unchanged() {
        let coded = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        let head = parse(coded, Method::GET).unwrap().unwrap();
        assert!(head.coded && head.relayable_to(true) && !head.relayable_to(false));
        let text = client_head(coded, Method::GET, true);
        assert!(
            text.contains("Transfer-Encoding: gzip, chunked\r\n"),
            "{text}"
        );
        assert!(!text.contains("transfer-encoding: chunked"), "{text}");
        let plain = parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            Method::GET,
        );
        assert!(plain.unwrap().unwrap().relayable_to(false));
        assert!(parse(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            Method::GET
        )
        .is_err());
    }

    #[test]
    fn framing_follows_the_method_status_and_version() {
        let framing = |text: &str, method: Method| parse(text, method).unwrap().unwrap();
        assert_eq!(
            framing("HTTP/1.1 304 Not Modified\r\n\r\n", Method::GET).framing,
            Framing::Empty
        );
        let until_close = framing("HTTP/1.1 200 OK\r\n\r\n", Method::GET);
        assert_eq!(until_close.framing, Framing::UntilClose);
        assert!(!until_close.reusable);
        assert!(!framing("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", Method::GET).reusable);
        let interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            framing(interim, Method::POST).status,
            StatusCode::NO_CONTENT
        );
    }

    #[test]
    fn bad_heads_are_refused() {
        assert!(parse(
            "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            Method::GET
        )
        .is_err());
        assert!(parse("NOT HTTP\r\n\r\n", Method::GET).is_err());
        assert!(parse("HTTP/1.1 101 Switching Protocols\r\n\r\n", Method::GET).is_err());
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(&huge, Method::GET).unwrap_err(), HeadError::TooLarge);
    }
}
