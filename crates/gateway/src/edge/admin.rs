//! The admin listener over HTTPS (`[tls.admin]`), with client certificates
//! when `client_ca` is set: handshakes run beside one another, so a client
//! that stalls in one does not hold up the others.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use super::metrics::{EdgeMetrics, HandshakeFailure};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; past this, accepting waits.
const MAX_HANDSHAKES: usize = 256;

pub(crate) struct TlsListener {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    metrics: Arc<EdgeMetrics>,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        metrics: Arc<EdgeMetrics>,
    ) -> TlsListener {
        TlsListener {
            listener,
            acceptor: tokio_rustls::TlsAcceptor::from(config),
            metrics,
            handshakes: JoinSet::new(),
        }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.listener.accept(), if self.handshakes.len() < MAX_HANDSHAKES => {
                    let Ok((stream, peer)) = accepted else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let (acceptor, metrics) = (self.acceptor.clone(), Arc::clone(&self.metrics));
                    self.handshakes.spawn(async move {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                            Ok(Ok(stream)) => Some((stream, peer)),
                            Ok(Err(err)) => {
                                metrics.handshake_failed(HandshakeFailure::of(&err));
                                tracing::debug!(%peer, error = %err, "admin TLS handshake failed");
                                None
                            }
                            Err(_) => {
                                metrics.handshake_failed(HandshakeFailure::Timeout);
                                None
                            }
                        }
                    });
                }
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => {
                    if let Ok(Some(accepted)) = done {
                        return accepted;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}
