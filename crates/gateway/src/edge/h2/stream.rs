//! One HTTP/2 stream as the request path's client connection. The stream's
//! request head is built from h2's parsed request as the fields an
//! HTTP/1.1 head would carry, and checked as every head is
//! (`request_head`); its body is read through `poll_read`, and the answer
//! the request path writes is parsed back in `poll_write`: head to HTTP/2
//! headers, body (unframed) to DATA frames as the client's window allows.
//! A backend's answer head comes parsed instead (`take_answer_head`): only
//! the gateway's own answers are parsed back. So balancing, retries, the
//! waiting room, admission, limits, request ids, the access log and
//! traffic stats apply to every stream with no second copy of any of
//! them, polled in the connection's task, without a pipe or a task
//! between.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{BufMut, Bytes, BytesMut};
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, Uri};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::http1::body::{put_chunk, step, State, Step, LAST_CHUNK};
use crate::http1::request::RequestHead;
use crate::http1::response::{parse_response, AnswerHead, ClientFraming};
use crate::http1::{Field, Framing, Head, HeadError, Known, Stream};

/// Answer body bytes taken from the request path and not yet handed to
/// h2, per stream. With the piece waiting for the window and h2's own send
/// buffer, a stream holds at most about three times this for a client
/// that does not read.
const HELD: usize = 16 * 1024;

/// How the request's body reaches the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFraming {
    None,
    /// The client announced `content-length`: its bytes as they come.
    Raw,
    /// No length: chunked, as an HTTP/1.1 client would send it.
    Chunked,
}

/// The request's head as the request path takes it, and how its body
/// follows: built from h2's parsed request, with the fields an HTTP/1.1
/// head would have (`host` from `:authority` when there is no `host`, the
/// cookies joined, chunked framing when no length is given), and checked
/// as every request head is.
pub(crate) fn request_head(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    has_body: bool,
) -> Result<(RequestHead, BodyFraming), HeadError> {
    let target = uri
        .path_and_query()
        .map_or("/", |target| target.as_str())
        .as_bytes();
    // http's `Uri` takes only a path or `*` as `:path` (RFC 9113 section
    // 8.3.1), so the target is never an absolute form with a host of its
    // own (tested below).
    let mut fields = Fields::new(target.len() + 256, headers.len() + 2);
    fields.bytes.put_slice(target);
    if !headers.contains_key(http::header::HOST) {
        let authority = uri.authority().map_or("", |a| a.as_str());
        fields.add(b"host", Known::Host, &[authority.as_bytes()]);
    }
    let mut cookies = headers.get_all(http::header::COOKIE).iter().peekable();
    if cookies.peek().is_some() {
        // RFC 9113 section 8.2.3: cookies split over fields are one again.
        let parts: Vec<&[u8]> = cookies.map(HeaderValue::as_bytes).collect();
        fields.add(b"cookie", Known::Cookie, &parts);
    }
    for (name, value) in headers {
        let name = name.as_str().as_bytes();
        match Known::of(name) {
            // Cookies are joined above; framing is this side's choice;
            // Expect would ask for an HTTP/1.1 interim answer HTTP/2 has
            // no use for.
            Known::Cookie
            | Known::TransferEncoding
            | Known::Expect
            | Known::HopByHop
            | Known::Connection => continue,
            known => fields.add(name, known, &[value.as_bytes()]),
        }
    }
    let framing = if !has_body {
        BodyFraming::None
    } else if headers.contains_key(http::header::CONTENT_LENGTH) {
        BodyFraming::Raw
    } else {
        fields.add(b"transfer-encoding", Known::TransferEncoding, &[b"chunked"]);
        BodyFraming::Chunked
    };
    let bytes = fields.bytes.freeze();
    let target = bytes.slice(..target.len());
    let head = Head {
        bytes,
        fields: fields.list,
    };
    let head = crate::http1::request::request_head(method.clone(), target, None, true, head)?;
    Ok((head, framing))
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

/// What the client sees of the request path's answer so far.
enum Answer {
    /// The head is still coming.
    Head(SendResponse<Bytes>),
    /// Headers sent; the body goes out as DATA frames.
    Body(SendStream<Bytes>),
    /// All of it sent, or the stream is gone.
    Done,
}

pub(crate) struct StreamIo {
    body: RecvStream,
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
    pub(crate) reset: bool,
    pub(crate) complete: bool,
}

fn gone(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, what.to_string())
}

impl StreamIo {
    pub(crate) fn new(
        request: Request<RecvStream>,
        framing_of: BodyFraming,
        respond: SendResponse<Bytes>,
    ) -> StreamIo {
        let (head, body) = request.into_parts();
        StreamIo {
            body,
            framing: framing_of,
            unread: Bytes::new(),
            read_done: framing_of == BodyFraming::None,
            method: head.method,
            answer: Answer::Head(respond),
            written: BytesMut::new(),
            state: State::Done,
            sending: Bytes::new(),
            reset: false,
            complete: false,
        }
    }

    fn broken(&mut self, err: h2::Error) -> io::Error {
        if err.is_reset() || err.reason() == Some(h2::Reason::CANCEL) {
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
            match &mut self.answer {
                Answer::Done => return Poll::Ready(Ok(())),
                Answer::Head(_) => {
                    let parsed = parse_response(&mut self.written, &self.method)
                        .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err))?;
                    let Some(head) = parsed else {
                        return Poll::Ready(Ok(()));
                    };
                    self.start(head.status, headers_of(&head.head), head.framing)?;
                }
                Answer::Body(send) => {
                    if !self.sending.is_empty() {
                        // The body's last piece (most answers' only one)
                        // goes to h2 at once, which sends it as the window
                        // allows. h2 holds it, at most HELD, as this stream
                        // would while waiting for the window; asking for
                        // capacity first cost about 1 % of an HTTP/2
                        // request.
                        let piece = if self.state == State::Done && self.sending.len() <= HELD {
                            std::mem::take(&mut self.sending)
                        } else {
                            send.reserve_capacity(self.sending.len());
                            match ready!(send.poll_capacity(cx)) {
                                Some(Ok(granted)) => {
                                    self.sending.split_to(granted.min(self.sending.len()))
                                }
                                Some(Err(err)) => return Poll::Ready(Err(self.broken(err))),
                                None => return Poll::Ready(Err(gone("the stream closed"))),
                            }
                        };
                        // The body's last bytes end the stream in their own
                        // frame, not an empty one after.
                        let last = self.sending.is_empty() && self.state == State::Done;
                        if let Err(err) = send.send_data(piece, last) {
                            return Poll::Ready(Err(self.broken(err)));
                        }
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
                            if let Err(err) = send.send_data(Bytes::new(), true) {
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

    /// Sends the answer's HEADERS; its body, framed as `framing` says,
    /// follows through `poll_write`.
    fn start(
        &mut self,
        status: http::StatusCode,
        headers: HeaderMap,
        framing: Framing,
    ) -> io::Result<()> {
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        self.state = State::of(framing);
        let empty = matches!(self.state, State::Done);
        let Answer::Head(mut respond) = std::mem::replace(&mut self.answer, Answer::Done) else {
            return Err(gone("the answer has begun already"));
        };
        match respond.send_response(response, empty) {
            Ok(send) if !empty => self.answer = Answer::Body(send),
            Ok(_) => self.complete = true,
            Err(err) => return Err(self.broken(err)),
        }
        Ok(())
    }

    /// After the request path is done: an answer cut short is reset, one
    /// never begun is refused.
    pub(crate) fn finish(&mut self) {
        match std::mem::replace(&mut self.answer, Answer::Done) {
            Answer::Head(mut respond) => respond.send_reset(h2::Reason::INTERNAL_ERROR),
            Answer::Body(mut send) => send.send_reset(h2::Reason::INTERNAL_ERROR),
            Answer::Done => {}
        }
    }
}

/// The headers of the gateway's own answers for HTTP/2: those HTTP/1.1
/// uses for the connection or the framing left out.
fn headers_of(head: &crate::http1::Head) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(head.fields.len());
    for field in &head.fields {
        if matches!(
            field.known,
            Known::Connection | Known::TransferEncoding | Known::HopByHop
        ) {
            continue;
        }
        // The value is a slice of the head, not a copy.
        push(
            &mut headers,
            head.name(field),
            head.bytes.slice(field.value.clone()),
            field.known,
        );
    }
    headers
}

/// Adds one header; a name or value HTTP/2 cannot carry is left out.
fn push(headers: &mut HeaderMap, name: &[u8], value: Bytes, known: Known) {
    // The gateway's own fields by their constant names, not parsed again.
    let name = match known {
        Known::RequestId => Ok(HeaderName::from_static("x-request-id")),
        Known::ContentLength => Ok(http::header::CONTENT_LENGTH),
        _ => HeaderName::from_bytes(name),
    };
    let (Ok(name), Ok(mut value)) = (name, HeaderValue::from_maybe_shared(value)) else {
        return;
    };
    // Values that differ on every answer are not put in the client's HPACK
    // table: they would only push out the ones that repeat, and looking
    // them up costs more than sending them. `date` is put in: it changes
    // once a second, so a busy connection sends it as one byte, not
    // Huffman-coded on every answer.
    if matches!(known, Known::RequestId | Known::ContentLength) {
        value.set_sensitive(true);
    }
    headers.append(name, value);
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
        let reset = match &mut self.answer {
            Answer::Head(respond) => respond.poll_reset(cx),
            Answer::Body(send) => send.poll_reset(cx),
            Answer::Done => return Poll::Pending,
        };
        // An error: the connection is gone, and the stream with it.
        if ready!(reset).is_ok() {
            self.reset = true;
        }
        Poll::Ready(())
    }

    fn take_answer_head(&mut self, answer: &AnswerHead<'_>) -> io::Result<bool> {
        if !matches!(self.answer, Answer::Head(_)) || !self.written.is_empty() {
            return Ok(false);
        }
        let head = &answer.response.head;
        let mut headers = HeaderMap::with_capacity(head.fields.len() + 3);
        // Transfer codings under chunked (`gzip, chunked`) have no HTTP/2
        // header: the body goes as it came.
        for field in answer.passed_fields() {
            push(
                &mut headers,
                head.name(field),
                head.bytes.slice(field.value.clone()),
                field.known,
            );
        }
        let id = Bytes::copy_from_slice(answer.request_id);
        push(&mut headers, b"x-request-id", id, Known::RequestId);
        for (name, value) in lines(answer.extra) {
            push(
                &mut headers,
                name,
                Bytes::copy_from_slice(value),
                Known::of(name),
            );
        }
        let framing = match answer.framing {
            ClientFraming::Length(n) => {
                let length = Bytes::from(itoa::Buffer::new().format(n).to_owned());
                push(
                    &mut headers,
                    b"content-length",
                    length,
                    Known::ContentLength,
                );
                Framing::Length(n)
            }
            ClientFraming::HeadersOnly => Framing::Empty,
            ClientFraming::Chunked => Framing::Chunked,
            ClientFraming::Close => Framing::UntilClose,
        };
        self.start(answer.response.status, headers, framing)?;
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
            match ready!(this.body.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.body.flow_control().release_capacity(data.len());
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
        if matches!(this.answer, Answer::Done) && !this.complete {
            return Poll::Ready(Err(gone("the stream is gone")));
        }
        // The head is taken whole (it is bounded by the parser); the body
        // only as far as HELD.
        let room = |this: &Self| match this.answer {
            Answer::Body(_) => HELD.saturating_sub(this.written.len()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn head_of(
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        has_body: bool,
    ) -> Result<(RequestHead, BodyFraming), HeadError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        request_head(&method, &uri.parse().unwrap(), &map, has_body)
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
        let (head, framing) = head_of(
            Method::GET,
            "https://shop.test/p/1?x=2",
            &[
                ("cookie", "a=1"),
                ("accept", "*/*"),
                ("cookie", "b=2"),
                ("expect", "100-continue"),
            ],
            false,
        )
        .unwrap();
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
        assert_eq!(head.head.get(Known::Host), Some(&b"shop.test"[..]));
    }

    #[test]
    fn a_body_without_a_length_is_chunked_and_one_with_a_length_is_not() {
        let (head, framing) = head_of(Method::POST, "https://s/o", &[], true).unwrap();
        assert_eq!(framing, BodyFraming::Chunked);
        assert!(matches!(head.framing, Framing::Chunked));
        let (head, framing) = head_of(
            Method::POST,
            "https://s/o",
            &[("content-length", "5")],
            true,
        )
        .unwrap();
        assert_eq!(framing, BodyFraming::Raw);
        assert!(matches!(head.framing, Framing::Length(5)));
    }

    #[test]
    fn heads_no_request_may_have_are_refused() {
        let two_hosts = [("host", "a"), ("host", "b")];
        assert!(head_of(Method::GET, "https://s/", &two_hosts, false).is_err());
        let bad_length = [("content-length", "five")];
        assert!(head_of(Method::POST, "https://s/", &bad_length, true).is_err());
        // A `:path` that is not a path never reaches the gateway: http
        // refuses to make it a `Uri`, and h2 refuses the stream.
        for path in ["x/y", "http://evil/x", "evil.test:80"] {
            let mut parts = http::uri::Parts::default();
            parts.scheme = Some(http::uri::Scheme::HTTPS);
            parts.authority = Some("s".parse().unwrap());
            parts.path_and_query = path.parse().ok();
            assert!(Uri::from_parts(parts).is_err(), "{path}");
        }
        // An explicit `host` wins over `:authority`, as it did in HTTP/1.1.
        let (head, _) = head_of(Method::GET, "https://s/", &[("host", "h")], false).unwrap();
        assert_eq!(head.head.get(Known::Host), Some(&b"h"[..]));
    }
}
