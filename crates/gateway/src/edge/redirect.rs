//! The optional plain-HTTP listener of a TLS gateway: every request gets
//! `308 Permanent Redirect` to the same host and path over HTTPS (308, not
//! 301, so a POST stays a POST). The HTTPS port is kept in the target
//! unless it is 443.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::metrics::EdgeMetrics;

#[derive(Clone)]
struct Target {
    https_port: u16,
    metrics: Arc<EdgeMetrics>,
}

pub(crate) fn router(https_port: u16, metrics: Arc<EdgeMetrics>) -> axum::Router {
    axum::Router::new().fallback(redirect).with_state(Target {
        https_port,
        metrics,
    })
}

async fn redirect(State(target): State<Target>, request: Request) -> Response {
    let Some(host) = request
        .headers()
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| host_without_port(host))
    else {
        return (StatusCode::BAD_REQUEST, "a Host header is required\n").into_response();
    };
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let location = match target.https_port {
        443 => format!("https://{host}{path}"),
        port => format!("https://{host}:{port}{path}"),
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return (StatusCode::BAD_REQUEST, "the request target is not valid\n").into_response();
    };
    target.metrics.redirects.inc();
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
        "",
    )
        .into_response()
}

/// The host of a `Host` header, without its port (IPv6 literals kept in
/// brackets); `None` when it is not a host name.
fn host_without_port(host: &str) -> Option<&str> {
    let name = if host.starts_with('[') {
        &host[..=host.find(']')?]
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':'));
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::host_without_port;

    #[test]
    fn hosts_lose_their_port_and_junk_is_refused() {
        assert_eq!(host_without_port("shop.example:8080"), Some("shop.example"));
        assert_eq!(host_without_port("shop.example"), Some("shop.example"));
        assert_eq!(host_without_port("[::1]:80"), Some("[::1]"));
        assert_eq!(host_without_port("evil.example/x"), None);
        assert_eq!(host_without_port(""), None);
    }
}
