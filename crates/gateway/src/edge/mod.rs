//! The edge: what a customer's connection meets before the request path.
//! Plain HTTP/1.1 by default; with `[tls]`, TLS (rustls) and then HTTP/1.1
//! or HTTP/2 as ALPN chose, an optional listener that redirects plain HTTP
//! to HTTPS, HSTS, and certificates reloaded without dropping a connection.
//!
//! h2c (HTTP/2 over cleartext) is not offered: browsers never speak it, and
//! a plain listener that also spoke HTTP/2 would be one more way in to
//! defend for nobody's benefit.

pub(crate) mod admin;
pub mod certs;
mod client_names;
pub mod config;
pub(crate) mod h2;
pub(crate) mod handshakes;
pub(crate) mod metrics;
pub(crate) mod redirect;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::TcpStream;

use crate::proxy::client::{self, ClientLimits};
use crate::proxy::headers::PeerIp;
use crate::proxy::{Proxy, ThreadParts};
use crate::threads::Closing;
use config::Http2File;
use metrics::EdgeMetrics;
use tls::Terminator;

/// The customers' listener's protocol stack.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub(crate) tls: Option<Arc<Terminator>>,
    pub(crate) metrics: Arc<EdgeMetrics>,
}

/// What a connection is held to, as the config read when it came: a reload
/// changes these for the connections after it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionRules {
    pub(crate) limits: ClientLimits,
    pub(crate) http2: Http2File,
}

impl Edge {
    pub(crate) fn new(tls: Option<Arc<Terminator>>, metrics: Arc<EdgeMetrics>) -> Edge {
        Edge { tls, metrics }
    }

    /// Serves one customer connection to its end.
    pub(crate) async fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        proxy: Arc<Proxy>,
        thread: ThreadParts,
        ConnectionRules { limits, http2 }: ConnectionRules,
        closing: Closing,
    ) {
        let Some(tls) = &self.tls else {
            client::serve(stream, peer, proxy, thread, limits, closing, Bytes::new()).await;
            return;
        };
        let Some(accepted) = tls.accept(stream, &thread.handshakes, http2.enabled).await else {
            return;
        };
        // As the config reads when the connection came: a reload changes it
        // for the connections after.
        let added = tls.added();
        if accepted.h2 {
            let parts = Arc::new(h2::bridge::StreamParts {
                peer: PeerIp::of(peer),
                proxy,
                thread,
                limits,
                closing,
                added,
                alarms: h2::bridge::Alarms::new(http2.max_concurrent_streams),
            });
            h2::serve(accepted.stream, http2, parts, Arc::clone(&self.metrics)).await;
        } else {
            client::serve(accepted.stream, peer, proxy, thread, limits, closing, added).await;
        }
    }
}
