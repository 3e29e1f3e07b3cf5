//! The customers' client: keep-alive HTTP/1.1 connections driven directly
//! by hyper's connection-level client, one small pool per load thread (each
//! thread is a single-threaded runtime, so the pool's lock is never
//! contended); over https, HTTP/2 when the server chooses it in ALPN, as
//! browsers get it, one connection per thread shared by its lanes.
//! Requests are built from parts prepared once per run; no per-request URL
//! parsing, header map building or pool lookup by host, which is where
//! reqwest spent the generator's time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER};
use http::uri::Authority;
use http::{Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio_rustls::TlsConnector;

/// Why a request got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    Connect,
    Timeout,
    Network,
}

impl Failure {
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Timeout => "timeout",
            Failure::Network => "network",
        }
    }
}

/// How an HTTP/1.1 exchange broke.
#[derive(Debug)]
enum Broke {
    /// The connection was closed under the request before any answer
    /// began: an early end, a reset or a broken pipe.
    Closed,
    /// Anything else, or the answer began and did not end.
    Failed,
}

/// Whether `err`, before the answer's head, is the connection closing:
/// hyper's early end of message, or a reset or broken pipe underneath.
fn closed_under_it(err: &hyper::Error) -> bool {
    use std::error::Error as _;
    if err.is_canceled() || err.is_incomplete_message() {
        return true;
    }
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            );
        }
        source = cause.source();
    }
    false
}

/// An answer, its body read to the end.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after_s: Option<u64>,
    /// A waiting room's ticket (`Flashguard-Ticket`), new or renewed.
    pub(crate) ticket: Option<HeaderValue>,
    pub(crate) body: Bytes,
}

/// What to send; built again for a retry on a fresh connection.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: Method,
    pub(crate) path: &'a Uri,
    pub(crate) json: Option<Bytes>,
    pub(crate) headers: &'a [(&'static str, HeaderValue)],
}

type Sender = SendRequest<Full<Bytes>>;
type SharedSender = http2::SendRequest<Full<Bytes>>;

/// The header a waiting room's ticket travels in, both ways.
pub(crate) const TICKET: &str = "flashguard-ticket";

pub(crate) struct Client {
    /// `host:port` to connect to.
    address: String,
    /// The target's authority: HTTP/1.1's `Host`, HTTP/2's `:authority`.
    host: HeaderValue,
    authority: Authority,
    /// For https: the TLS and the name the certificate must carry.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    idle: Mutex<Vec<Sender>>,
    /// An HTTP/2 connection (https, when the server chose `h2` as
    /// browsers get it), shared by the thread's lanes, a stream each.
    shared: Mutex<Option<SharedSender>>,
}

/// A new connection, as the server's ALPN choice made it.
enum Connected {
    Http1(Sender),
    Http2(SharedSender),
}

impl Client {
    /// A client for `http://host[:port]`, or `https://host[:port]` with
    /// `tls`; `None` for anything else.
    pub(crate) fn new(base: &str, tls: Option<Arc<ClientConfig>>) -> Option<Client> {
        let uri: Uri = base.parse().ok()?;
        let authority = uri.authority()?;
        let (tls, port) = match (uri.scheme_str(), tls) {
            (Some("http"), _) => (None, 80),
            (Some("https"), Some(config)) => {
                let name = ServerName::try_from(authority.host().to_string()).ok()?;
                // HTTP/2 first, as a browser offers it.
                let mut config = ClientConfig::clone(&config);
                config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                (Some((TlsConnector::from(Arc::new(config)), name)), 443)
            }
            _ => return None,
        };
        Some(Client {
            address: format!(
                "{}:{}",
                authority.host(),
                authority.port_u16().unwrap_or(port)
            ),
            host: HeaderValue::from_str(authority.as_str()).ok()?,
            authority: authority.clone(),
            tls,
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(None),
        })
    }

    pub(crate) async fn send(
        &self,
        outgoing: &Outgoing<'_>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        tokio::time::timeout(timeout, self.exchange(outgoing))
            .await
            .unwrap_or(Err(Failure::Timeout))
    }

    async fn exchange(&self, outgoing: &Outgoing<'_>) -> Result<Answer, Failure> {
        if let Some(shared) = self.shared_sender() {
            return self.stream(shared, outgoing).await;
        }
        while let Some(mut sender) = self.idle_sender() {
            // Its connection task may not have taken the last answer's end
            // yet: wait for that rather than open another connection.
            if sender.ready().await.is_err() {
                continue;
            }
            match self.round_trip(sender, outgoing).await {
                Ok(answer) => return Ok(answer),
                // A kept-alive connection the server closed as the request
                // went out (its idle timeout): no answer began, so send it
                // on a new connection, as browsers do (Chromium resends on
                // a reused connection that fails before the answer's
                // head; the drill's orders carry an Idempotency-Key, so a
                // resend cannot order twice). The server's close crossing
                // the request shows as a reset, not only as an early end.
                Err(Broke::Closed) => {}
                Err(Broke::Failed) => return Err(Failure::Network),
            }
        }
        match self.connect().await? {
            Connected::Http1(sender) => self
                .round_trip(sender, outgoing)
                .await
                .map_err(|_| Failure::Network),
            Connected::Http2(shared) => {
                *self.shared.lock().unwrap_or_else(|p| p.into_inner()) = Some(shared.clone());
                self.stream(shared, outgoing).await
            }
        }
    }

    /// The shared HTTP/2 connection, while it is open.
    fn shared_sender(&self) -> Option<SharedSender> {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        match shared.as_ref() {
            Some(sender) if !sender.is_closed() => Some(sender.clone()),
            Some(_) => {
                *shared = None;
                None
            }
            None => None,
        }
    }

    /// One request on its own stream of the shared connection, once the
    /// server's stream limit lets it open.
    async fn stream(
        &self,
        mut shared: SharedSender,
        outgoing: &Outgoing<'_>,
    ) -> Result<Answer, Failure> {
        shared.ready().await.map_err(|_| Failure::Network)?;
        // HTTP/2 names the host in `:authority`, from an absolute URI.
        let mut absolute = http::uri::Parts::from(outgoing.path.clone());
        absolute.scheme = Some(http::uri::Scheme::HTTPS);
        absolute.authority = Some(self.authority.clone());
        let uri = Uri::from_parts(absolute).map_err(|_| Failure::Network)?;
        let response = shared
            .send_request(self.request(outgoing, uri, None))
            .await
            .map_err(|_| Failure::Network)?;
        answer_of(response).await.map_err(|_| Failure::Network)
    }

    fn idle_sender(&self) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    /// A new connection, over TLS for https (a failed handshake is a
    /// failed connect).
    async fn connect(&self) -> Result<Connected, Failure> {
        let stream = tokio::net::TcpStream::connect(&self.address)
            .await
            .map_err(|_| Failure::Connect)?;
        let _ = stream.set_nodelay(true);
        let Some((connector, name)) = &self.tls else {
            return handshake(stream).await.map(Connected::Http1);
        };
        let stream = connector
            .connect(name.clone(), stream)
            .await
            .map_err(|_| Failure::Connect)?;
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            let (shared, connection) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                .await
                .map_err(|_| Failure::Connect)?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            return Ok(Connected::Http2(shared));
        }
        handshake(stream).await.map(Connected::Http1)
    }

    /// The request `outgoing` describes, to `uri`, with `host` as its
    /// `Host` (HTTP/1.1's; HTTP/2 has `:authority` from the URI).
    fn request(
        &self,
        outgoing: &Outgoing<'_>,
        uri: Uri,
        host: Option<&HeaderValue>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::new(Full::new(outgoing.json.clone().unwrap_or_default()));
        *request.method_mut() = outgoing.method.clone();
        *request.uri_mut() = uri;
        let headers = request.headers_mut();
        if let Some(host) = host {
            headers.insert(HOST, host.clone());
        }
        if outgoing.json.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (name, value) in outgoing.headers {
            headers.insert(*name, value.clone());
        }
        request
    }

    async fn round_trip(
        &self,
        mut sender: Sender,
        outgoing: &Outgoing<'_>,
    ) -> Result<Answer, Broke> {
        let request = self.request(outgoing, outgoing.path.clone(), Some(&self.host));
        let response = sender.send_request(request).await.map_err(|err| {
            if closed_under_it(&err) {
                Broke::Closed
            } else {
                Broke::Failed
            }
        })?;
        let answer = answer_of(response).await.map_err(|_| Broke::Failed)?;
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sender);
        Ok(answer)
    }
}

/// An answer, its body read to the end.
async fn answer_of(response: http::Response<Incoming>) -> Result<Answer, hyper::Error> {
    let status = response.status().as_u16();
    let retry_after_s = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let ticket = response.headers().get(TICKET).cloned();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        retry_after_s,
        ticket,
        body,
    })
}

/// HTTP/1.1 on `stream`, its connection driven in a task of its own.
async fn handshake<S>(stream: S) -> Result<Sender, Failure>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::Builder::new()
        .writev(false)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|_| Failure::Connect)?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    /// Reads one request head (the tests send no body).
    async fn read_head(stream: &mut TcpStream) {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(stream.read(&mut byte).await.unwrap(), 1, "a whole head");
            head.push(byte[0]);
        }
    }

    async fn get(client: &Client) -> Result<Answer, Failure> {
        let path = Uri::from_static("/");
        let outgoing = Outgoing {
            method: Method::GET,
            path: &path,
            json: None,
            headers: &[],
        };
        client.send(&outgoing, Duration::from_secs(5)).await
    }

    /// A server that answers the first request on its first connection,
    /// then resets that connection when the next request comes on it (its
    /// idle close crossing the request), and answers on a new one.
    #[tokio::test]
    async fn a_kept_alive_connection_reset_under_a_request_is_retried_on_a_new_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            read_head(&mut first).await;
            first
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfirst")
                .await
                .unwrap();
            read_head(&mut first).await;
            // SO_LINGER 0: the close is a reset, as a close with the
            // request unread is.
            first.set_zero_linger().unwrap();
            drop(first);
            let (mut second, _) = listener.accept().await.unwrap();
            read_head(&mut second).await;
            second
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond")
                .await
                .unwrap();
            second
        });
        let client = Client::new(&format!("http://{addr}"), None).unwrap();
        let first = get(&client).await;
        assert_eq!(first.map(|a| a.body).ok(), Some(Bytes::from("first")));
        let second = get(&client).await;
        assert_eq!(second.map(|a| a.body).ok(), Some(Bytes::from("second")));
        drop(server.await.unwrap());
    }

    /// An answer that begins and breaks off is a failure, not retried.
    #[tokio::test]
    async fn an_answer_broken_off_is_a_network_failure() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            read_head(&mut stream).await;
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npart")
                .await
                .unwrap();
        });
        let client = Client::new(&format!("http://{addr}"), None).unwrap();
        let answer = get(&client).await;
        assert_eq!(answer.err(), Some(Failure::Network));
    }
}
