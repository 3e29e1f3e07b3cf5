//! Wrong admin tokens, limited per client, for every admin API (shop,
//! gateway, monitor, stack control): `FREE` failures are forgiven; the
//! next one starts a hold, during which the client is refused with 429 and
//! `Retry-After`, for a delay that doubles with each further failure (1 s, 2 s, 4 s... at most 5 min), during which no token
//! it sends is even checked. A success forgets its failures.
//!
//! It is a layer around the whole admin router, not a change to each
//! handler: it sees the handler's 401 and counts it. Only requests that
//! carry `Authorization` are held back while a client is blocked, so
//! health checks and scrapes from the same address keep working.
//!
//! The client is the peer's address (`ConnectInfo`): these APIs are for
//! operators, not for customers behind a CDN.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Failures forgiven before a client is held back.
const FREE: u32 = 5;
const FIRST_DELAY: Duration = Duration::from_secs(1);
const LONGEST_DELAY: Duration = Duration::from_secs(300);
/// Clients remembered at most; past it, those not held back are forgotten.
const MOST_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    held_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct FailedAuth {
    clients: Mutex<HashMap<IpAddr, Failures>>,
    /// Wrong or missing tokens.
    pub failures: Counter,
    /// Requests refused with 429 while their client was held back.
    pub refused: Counter,
}

impl FailedAuth {
    pub fn new() -> Arc<FailedAuth> {
        Arc::new(FailedAuth::default())
    }

    /// `admin_auth_failures_total` and `admin_auth_refused_total`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "admin_auth_failures",
            "Admin API calls with a wrong or missing token",
            self.failures.clone(),
        );
        registry.register(
            "admin_auth_refused",
            "Admin API calls refused (429) while their client was held back after failures",
            self.refused.clone(),
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Failures>> {
        self.clients.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How long `client` is still held back, if it is.
    pub fn held(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        let until = self.lock().get(&client)?.held_until?;
        (until > now).then(|| until - now)
    }

    /// One more failure; how long the client is now held back, if it is.
    pub fn failed(&self, client: IpAddr, now: Instant) -> Option<Duration> {
        self.failures.inc();
        let mut clients = self.lock();
        if clients.len() >= MOST_CLIENTS && !clients.contains_key(&client) {
            clients.retain(|_, f| f.held_until.is_some_and(|until| until > now));
        }
        let entry = clients.entry(client).or_insert(Failures {
            count: 0,
            held_until: None,
        });
        entry.count += 1;
        let over = entry.count.checked_sub(FREE).filter(|over| *over > 0)?;
        let delay = FIRST_DELAY
            .saturating_mul(1u32 << (over.saturating_sub(1)).min(16))
            .min(LONGEST_DELAY);
        entry.held_until = Some(now + delay);
        Some(delay)
    }

    pub fn succeeded(&self, client: IpAddr) {
        self.lock().remove(&client);
    }
}

/// The layer: `axum::middleware::from_fn_with_state(guard, limit_failed_auth)`.
pub async fn limit_failed_auth(
    State(guard): State<Arc<FailedAuth>>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let Some(client) = client else {
        return next.run(request).await;
    };
    let presents_token = request.headers().contains_key(header::AUTHORIZATION);
    if presents_token {
        if let Some(wait) = guard.held(client, Instant::now()) {
            guard.refused.inc();
            return too_many(wait);
        }
    }
    let response = next.run(request).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        if let Some(wait) = guard.failed(client, Instant::now()) {
            tracing::warn!(%client, hold_s = wait.as_secs(), "repeated wrong admin tokens: client held back");
        }
    } else if presents_token && response.status().is_success() {
        guard.succeeded(client);
    }
    response
}

fn too_many(wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = crate::json_error(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
        &format!("too many wrong tokens from this address: wait {seconds} s (no token is checked until then)"),
    );
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&seconds.to_string()).expect("digits are a header value"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_failures_are_free_then_the_hold_doubles_and_a_success_forgets() {
        let guard = FailedAuth::default();
        let client: IpAddr = "203.0.113.7".parse().unwrap();
        let other: IpAddr = "203.0.113.8".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE {
            assert_eq!(guard.failed(client, t0), None);
        }
        assert_eq!(guard.held(client, t0), None);
        assert_eq!(guard.failed(client, t0), Some(Duration::from_secs(1)));
        assert_eq!(guard.failed(client, t0), Some(Duration::from_secs(2)));
        assert_eq!(guard.failed(client, t0), Some(Duration::from_secs(4)));
        assert_eq!(
            guard.held(client, t0 + Duration::from_secs(3)),
            Some(Duration::from_secs(1))
        );
        assert_eq!(guard.held(client, t0 + Duration::from_secs(4)), None);
        // Another client is not held back for it.
        assert_eq!(guard.held(other, t0), None);
        // Never longer than five minutes.
        for _ in 0..40 {
            guard.failed(client, t0);
        }
        assert_eq!(guard.held(client, t0), Some(LONGEST_DELAY));
        guard.succeeded(client);
        assert_eq!(guard.held(client, t0), None);
        assert_eq!(guard.failures.get(), u64::from(FREE) + 43);
    }
}
