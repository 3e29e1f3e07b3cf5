//! Keep-alive connections to the backends, one pool per serving thread,
//! driven by hyper's connection-level HTTP/1 client. The thread's runtime
//! is single-threaded, so the pool's lock is never contended and a
//! connection never changes thread. Compared with hyper-util's pooled
//! client it does no per-request pool-key hashing, checkout bookkeeping or
//! body wrapping: a connection goes back in the list as soon as its
//! response headers arrive, and is taken again once hyper says it is ready
//! (its previous response fully passed on).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use http::uri::Authority;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::UpstreamBody;

/// Connections kept per backend per thread at most.
const MAX_KEPT: usize = 1024;

type Sender = SendRequest<UpstreamBody>;

/// Why a try got no response.
#[derive(Debug)]
pub(crate) enum UpstreamError {
    /// The connection could not be made: nothing reached the backend.
    Connect(String),
    /// The request may have reached it.
    Sent(hyper::Error),
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamError::Connect(why) => write!(f, "connect: {why}"),
            UpstreamError::Sent(err) => err.fmt(f),
        }
    }
}

#[derive(Debug)]
pub(crate) struct UpstreamPool {
    kept: Mutex<HashMap<Authority, Vec<Sender>>>,
    connect_timeout: Duration,
}

impl UpstreamPool {
    pub(crate) fn new(connect_timeout: Duration) -> UpstreamPool {
        UpstreamPool {
            kept: Mutex::new(HashMap::new()),
            connect_timeout,
        }
    }

    /// Sends `request` (origin-form URI) to `authority`. A kept connection
    /// the backend closed before the request was written hands the request
    /// back, and it goes on a fresh connection.
    pub(crate) async fn send(
        &self,
        authority: &Authority,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        if let Some(mut sender) = self.ready_sender(authority) {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    self.keep(authority, sender);
                    return Ok(response);
                }
                Err(mut failed) => match failed.take_message() {
                    // Never sent: try a new connection with it.
                    Some(request) => return self.send_fresh(authority, request).await,
                    None => return Err(UpstreamError::Sent(failed.into_error())),
                },
            }
        }
        self.send_fresh(authority, request).await
    }

    async fn send_fresh(
        &self,
        authority: &Authority,
        request: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = self.connect(authority).await?;
        let response = sender
            .send_request(request)
            .await
            .map_err(UpstreamError::Sent)?;
        self.keep(authority, sender);
        Ok(response)
    }

    /// A kept connection that can take a request now; closed ones are
    /// dropped on the way, busy ones left for later.
    fn ready_sender(&self, authority: &Authority) -> Option<Sender> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let list = kept.get_mut(authority)?;
        list.retain(|s| !s.is_closed());
        let ready = list.iter().rposition(SendRequest::is_ready)?;
        Some(list.swap_remove(ready))
    }

    fn keep(&self, authority: &Authority, sender: Sender) {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let list = kept.entry(authority.clone()).or_default();
        if list.len() < MAX_KEPT {
            list.push(sender);
        }
    }

    async fn connect(&self, authority: &Authority) -> Result<Sender, UpstreamError> {
        let connecting = tokio::net::TcpStream::connect(authority.as_str());
        let stream = match tokio::time::timeout(self.connect_timeout, connecting).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(err)) => return Err(UpstreamError::Connect(err.to_string())),
            Err(_) => {
                return Err(UpstreamError::Connect(format!(
                    "no connection within {} ms",
                    self.connect_timeout.as_millis()
                )))
            }
        };
        let _ = stream.set_nodelay(true);
        let (sender, connection) = http1::Builder::new()
            .writev(false)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|err| UpstreamError::Connect(err.to_string()))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}
