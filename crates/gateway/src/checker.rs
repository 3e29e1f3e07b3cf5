//! Active health checks: each backend's readiness path, every interval,
//! with a timeout, through the hysteresis in `backend::health`.
//!
//! A busy backend is not a dead one. A check counts against a backend when
//! the backend says it is not ready (a non-2xx answer), when its
//! connection is refused, or when the check gets no answer in time *and*
//! the backend has sent no byte on any of its connections for
//! `hung_after_ms` (2 s): that is what "hung" means here. A check that
//! times out while the backend keeps answering live traffic proves only
//! that it is busy, and counts for nothing.

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::time::Instant;

use crate::backend::Backend;
use crate::balance::{Backends, Change};
use crate::proxy::Proxy;

pub(crate) type CheckClient = Client<HttpConnector, Empty<Bytes>>;

pub(crate) fn check_client() -> CheckClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(1)
        .build(connector)
}

/// Checks `backend` until it is removed or the gateway stops. Holds only
/// weak references, so a removed backend and its checker go away together.
pub(crate) fn watch(
    backend: &Arc<Backend>,
    backends: &Arc<Backends>,
    proxy: &Arc<Proxy>,
    client: CheckClient,
) {
    let backend = Arc::downgrade(backend);
    let backends = Arc::downgrade(backends);
    let proxy = Arc::downgrade(proxy);
    tokio::spawn(async move {
        // Checks start on a fixed beat, not an interval after the previous
        // one ended, so a hung backend (every check waiting out its timeout)
        // is found as fast as one that refuses connections.
        let mut next = Instant::now();
        loop {
            let Some(settings) = proxy.upgrade().map(|p| p.live()) else {
                return;
            };
            let s = &settings.settings;
            next = (next + s.health_interval).max(Instant::now());
            tokio::time::sleep_until(next).await;
            let Some(target) = live(&backend) else {
                return;
            };
            let check = probe(&client, &target, &s.health_path, s.health_timeout).await;
            let now = Instant::now();
            let ok = match check {
                Check::Ready => {
                    target.heard(now);
                    true
                }
                Check::NotReady | Check::Refused => false,
                Check::NoAnswer if target.silent_for(now) >= s.hung_after => false,
                // Busy: no verdict.
                Check::NoAnswer => continue,
            };
            if let Some(up) = target.record_check(ok, s.rise, s.fall, now) {
                if let Some(backends) = backends.upgrade() {
                    let (state, reason) = if up {
                        (Change::Up, format!("{} checks passed", s.rise))
                    } else {
                        (Change::Down, format!("{} checks failed", s.fall))
                    };
                    backends.record(target.name(), state, reason);
                }
            }
        }
    });
}

fn live(backend: &Weak<Backend>) -> Option<Arc<Backend>> {
    backend.upgrade().filter(|b| !b.is_removed())
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// 2xx.
    Ready,
    /// Another status: the backend says it cannot take traffic.
    NotReady,
    /// The connection was refused: nothing listens.
    Refused,
    /// No answer within the timeout, or the connection broke.
    NoAnswer,
}

async fn probe(client: &CheckClient, backend: &Backend, path: &str, timeout: Duration) -> Check {
    let uri = Uri::builder()
        .scheme("http")
        .authority(backend.authority.clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return Check::NotReady;
    };
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        "user-agent",
        http::HeaderValue::from_static("flashguard-gateway-check"),
    );
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) if response.status().is_success() => Check::Ready,
        Ok(Ok(_)) => Check::NotReady,
        Ok(Err(err)) if refused(&err) => Check::Refused,
        Ok(Err(_)) | Err(_) => Check::NoAnswer,
    }
}

/// Whether the check's connection was refused (found in its cause chain).
fn refused(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(err) = cause {
        if err
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused)
        {
            return true;
        }
        cause = err.source();
    }
    false
}
