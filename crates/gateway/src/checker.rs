//! Active health checks: each backend's readiness path, every interval,
//! with a timeout, through the hysteresis in `backend::health`.

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
            let ok = probe(&client, &target, &s.health_path, s.health_timeout).await;
            if let Some(up) = target.record_check(ok, s.rise, s.fall, Instant::now()) {
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

async fn probe(client: &CheckClient, backend: &Backend, path: &str, timeout: Duration) -> bool {
    let uri = Uri::builder()
        .scheme("http")
        .authority(backend.authority.clone())
        .path_and_query(path)
        .build();
    let Ok(uri) = uri else {
        return false;
    };
    let mut request = Request::new(Empty::new());
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        "user-agent",
        http::HeaderValue::from_static("flashguard-gateway-check"),
    );
    match tokio::time::timeout(timeout, client.request(request)).await {
        Ok(Ok(response)) => response.status().is_success(),
        _ => false,
    }
}
