//! One HTTP/2 stream through the HTTP/1.1 request path: the request is
//! written as HTTP/1.1 (hyper's client) into an in-memory pipe that the
//! gateway's own connection code (`proxy::client::serve`) serves exactly as
//! it serves a socket, and the answer read back becomes the stream's
//! response. So balancing, retries, the waiting room, admission, limits,
//! request ids, the access log and traffic stats apply to every stream
//! with no second copy of any of them; the price is one more HTTP/1.1
//! encoding in memory per request.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use h2::server::SendResponse;
use h2::{RecvStream, SendStream};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::sync::watch;

use crate::proxy::client::{self, ClientLimits};
use crate::proxy::{Proxy, ThreadParts};

/// What each stream of a connection shares.
#[derive(Clone)]
pub(crate) struct StreamParts {
    pub(crate) peer: SocketAddr,
    pub(crate) proxy: Arc<Proxy>,
    pub(crate) thread: ThreadParts,
    pub(crate) limits: ClientLimits,
    pub(crate) stopping: (watch::Receiver<bool>, Arc<AtomicBool>),
    /// Added to every answer (HSTS).
    pub(crate) added: Bytes,
}

/// How much the pipe between the stream and the HTTP/1.1 path holds each
/// way before the writer waits.
const PIPE_BYTES: usize = 16 * 1024;

/// Why a stream ended early.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The client reset it.
    Reset,
    /// The request path failed to answer whole, or the client's connection
    /// went.
    Broken,
}

/// Serves one stream. The HTTP/1.1 side runs as a task of its own and is
/// never cancelled: the request path keeps its accounting (slots, in-flight
/// counts) only by running to its end, as it does when an HTTP/1.1 client
/// goes away mid-request. A reset or a closed connection closes the pipe;
/// the request path then ends at its next write, once the shop answers.
pub(crate) async fn serve(
    request: Request<RecvStream>,
    respond: SendResponse<Bytes>,
    parts: StreamParts,
) -> Result<(), Ended> {
    let (near, far) = tokio::io::duplex(PIPE_BYTES);
    let StreamParts {
        peer,
        proxy,
        thread,
        limits,
        stopping,
        added,
    } = parts;
    tokio::spawn(client::serve(
        far, peer, proxy, thread, limits, stopping, added,
    ));
    exchange(near, request, respond).await
}

async fn exchange(
    pipe: tokio::io::DuplexStream,
    request: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
) -> Result<(), Ended> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(pipe))
        .await
        .map_err(|_| Ended::Broken)?;
    let request = as_http1(request);
    let driving = async move {
        let _ = connection.await;
    };
    let work = async move {
        let answered = tokio::select! {
            answer = sender.send_request(request) => answer.map_err(|_| Ended::Broken)?,
            _ = poll_fn(|cx| respond.poll_reset(cx)) => return Err(Ended::Reset),
        };
        drop(sender);
        let (mut head, body) = answered.into_parts();
        strip_connection_headers(&mut head.headers);
        let response = Response::from_parts(head, ());
        let end = body.is_end_stream();
        let send = respond
            .send_response(response, end)
            .map_err(|_| Ended::Broken)?;
        if end {
            return Ok(());
        }
        pump(body, send).await
    };
    tokio::pin!(driving, work);
    tokio::select! {
        ended = &mut work => ended,
        () = &mut driving => work.await,
    }
}

/// Copies the answer's body into the stream as the client's window allows:
/// never more than `send_buffer_bytes` held for a slow client.
async fn pump(mut body: hyper::body::Incoming, mut send: SendStream<Bytes>) -> Result<(), Ended> {
    loop {
        let frame = tokio::select! {
            frame = body.frame() => frame,
            _ = poll_fn(|cx| send.poll_reset(cx)) => return Err(Ended::Reset),
        };
        let Some(frame) = frame else {
            send.send_data(Bytes::new(), true)
                .map_err(|_| Ended::Broken)?;
            return Ok(());
        };
        let Ok(mut data) = frame.map_err(|_| Ended::Broken)?.into_data() else {
            continue; // trailers: HTTP/1.1 shops send none
        };
        while !data.is_empty() {
            send.reserve_capacity(data.len());
            let granted = match poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(granted)) => granted,
                Some(Err(err)) if err.is_reset() => return Err(Ended::Reset),
                _ => return Err(Ended::Broken),
            };
            let piece = data.split_to(granted.min(data.len()));
            send.send_data(piece, false).map_err(|_| Ended::Broken)?;
        }
    }
}

/// The stream's request as HTTP/1.1: origin-form target, `Host` from
/// `:authority`, cookies in one header (RFC 9113 section 8.2.3).
fn as_http1(request: Request<RecvStream>) -> Request<H2Body> {
    let (mut head, body) = request.into_parts();
    if !head.headers.contains_key(header::HOST) {
        if let Some(authority) = head.uri.authority() {
            if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
                head.headers.insert(header::HOST, host);
            }
        }
    }
    let cookies: Vec<&HeaderValue> = head.headers.get_all(header::COOKIE).iter().collect();
    if cookies.len() > 1 {
        let joined = cookies
            .iter()
            .map(|value| value.as_bytes())
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        if let Ok(value) = HeaderValue::from_bytes(&joined) {
            head.headers.insert(header::COOKIE, value);
        }
    }
    head.headers.remove(header::TE);
    if let Some(target) = head.uri.path_and_query() {
        if let Ok(uri) = target.as_str().parse() {
            head.uri = uri;
        }
    }
    head.version = http::Version::HTTP_11;
    let body = H2Body {
        end: body.is_end_stream(),
        stream: body,
    };
    Request::from_parts(head, body)
}

/// Headers HTTP/1.1 uses for the connection, which HTTP/2 forbids.
fn strip_connection_headers(headers: &mut HeaderMap) {
    for name in [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
    ] {
        headers.remove(name);
    }
}

use http::header::HeaderName;

/// A stream's request body, read as the request path asks for it; what is
/// read is given back to the client's window.
pub(crate) struct H2Body {
    stream: RecvStream,
    end: bool,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if self.end {
            return Poll::Ready(None);
        }
        match self.stream.poll_data(cx) {
            Poll::Ready(Some(Ok(data))) => {
                let _ = self.stream.flow_control().release_capacity(data.len());
                Poll::Ready(Some(Ok(Frame::data(data))))
            }
            Poll::Ready(Some(Err(err))) => Poll::Ready(Some(Err(err))),
            Poll::Ready(None) => {
                self.end = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.end
    }

    fn size_hint(&self) -> SizeHint {
        if self.end {
            SizeHint::with_exact(0)
        } else {
            SizeHint::default()
        }
    }
}
