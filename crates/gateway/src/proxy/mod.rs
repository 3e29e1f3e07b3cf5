//! The request path: admission, body buffering, choice of backend, the safe
//! retry rule with its budget, and passive outlier detection.
//!
//! The retry rule (DESIGN.md): a try that never reached a backend (the
//! connection was refused) goes to another backend whatever the request; a
//! try that may have reached one is repeated only for an idempotent method
//! or a request with an `Idempotency-Key` (the shop deduplicates it), and
//! only when its body was buffered so it can be sent again. Every retry
//! draws from a budget (a share of requests plus a floor per second), so a
//! sick tier is not flooded with retries in a surge.

pub(crate) mod answer;
mod body;
mod headers;
mod upstream;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full, Limited};
use hyper::body::Incoming;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

use crate::backend::{Backend, EjectionRules, Failure};
use crate::balance::Backends;
use crate::config::{Config, Settings};
use crate::metrics::GatewayMetrics;
use crate::published::Published;
use answer::{ClientBody, Refusal};
use body::RequestBody;

/// What a backend is sent: a buffered body (replayable) or the client's
/// body streamed through.
type UpstreamBody = Either<Full<Bytes>, Limited<Incoming>>;
use upstream::UpstreamError;
pub(crate) use upstream::UpstreamPool;

/// Requests per client address, when `limits.per_client_rps` is set.
pub(crate) type ClientLimiter = governor::DefaultKeyedRateLimiter<IpAddr>;

/// Settings, the retry budget and the per-client limiter, swapped whole on
/// reload.
#[derive(Debug, Clone)]
pub(crate) struct Live {
    pub(crate) settings: Settings,
    pub(crate) budget: Arc<TpsBudget>,
    pub(crate) limiter: Option<Arc<ClientLimiter>>,
}

impl Live {
    pub(crate) fn new(settings: Settings, config: &Config) -> Live {
        // The window the budget averages over; tower's own default.
        const BUDGET_WINDOW: Duration = Duration::from_secs(10);
        let limiter = NonZeroU32::new(settings.per_client_rps).map(|rate| {
            let burst = NonZeroU32::new(settings.per_client_burst).unwrap_or(rate);
            Arc::new(governor::RateLimiter::keyed(
                governor::Quota::per_second(rate).allow_burst(burst),
            ))
        });
        Live {
            settings,
            limiter,
            budget: Arc::new(TpsBudget::new(
                BUDGET_WINDOW,
                config.budget_min_per_s,
                config.budget_percent as f32 / 100.0,
            )),
        }
    }

    pub(crate) fn ejection_rules(&self) -> EjectionRules {
        let s = &self.settings;
        EjectionRules {
            after_connect_failures: s.eject_after_connect_failures,
            after_5xx: s.eject_after_5xx,
            base: s.base_ejection,
            max: s.max_ejection,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Proxy {
    backends: Arc<Backends>,
    live: Published<Live>,
    metrics: Arc<GatewayMetrics>,
    admission: Arc<Semaphore>,
}

/// What each serving thread has of its own.
#[derive(Debug, Clone)]
pub(crate) struct ThreadParts {
    pub(crate) upstream: Arc<UpstreamPool>,
    pub(crate) traffic: Arc<std::sync::Mutex<crate::traffic::Window>>,
}

/// How one try ended, when it did not produce the client's answer.
enum TryFailure {
    /// Never reached the backend.
    Connect(String),
    /// May have reached it.
    AfterSend(Refusal, String),
}

impl Proxy {
    pub(crate) fn new(
        config: &Config,
        backends: Arc<Backends>,
        metrics: Arc<GatewayMetrics>,
    ) -> Proxy {
        Proxy {
            backends,
            live: Published::new(Live::new(config.settings.clone(), config)),
            metrics,
            admission: Arc::new(Semaphore::new(config.max_concurrent_requests)),
        }
    }

    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.get()
    }

    pub(crate) fn set_live(&self, live: Live) {
        self.live.update(|_| live);
    }

    /// Answers one client request. `upstream` is the calling thread's own
    /// connection pool (see `server`).
    pub(crate) async fn handle(
        self: Arc<Self>,
        thread: ThreadParts,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Result<Response<ClientBody>, Infallible> {
        let started = Instant::now();
        let live = self.live();
        let path_class = crate::traffic::PathClass::of(request.uri().path());
        // Copied only when they will be logged: this is the hot path.
        let logged = live
            .settings
            .access_log
            .then(|| (request.method().clone(), request.uri().path().to_string()));
        let client_ip = headers::client_ip(
            client.ip(),
            request.headers(),
            &live.settings.trusted_proxies,
        );
        let limited = live
            .limiter
            .as_ref()
            .is_some_and(|limiter| limiter.check_key(&client_ip).is_err());
        let admitted = if limited {
            Err(Refusal::RateLimited)
        } else {
            Arc::clone(&self.admission)
                .try_acquire_owned()
                .map_err(|_| Refusal::Overloaded)
        };
        let (backend, response, attempts) = match admitted {
            Ok(_admitted) => {
                self.metrics.in_flight().inc();
                let answer = self.forward(&thread.upstream, request, client, &live).await;
                self.metrics.in_flight().dec();
                answer
            }
            Err(refusal) => {
                self.metrics.shed(refusal.code());
                let detail = if refusal == Refusal::RateLimited {
                    "this client sends more requests than it may; slow down"
                } else {
                    "the gateway has too many requests in flight; retry shortly"
                };
                (
                    None,
                    refusal.response(detail, live.settings.retry_after_secs),
                    0,
                )
            }
        };
        let elapsed = started.elapsed();
        let status = response.status().as_u16();
        thread
            .traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(client_ip, path_class, status);
        self.metrics.answered(backend.as_ref(), status, elapsed);
        let answered_by = backend.as_deref().unwrap_or("gateway");
        if let Some((method, path)) = logged {
            tracing::info!(
                target: "flashguard::access",
                client = %client_ip,
                method = %method,
                path,
                status,
                backend = answered_by,
                attempts,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        }
        Ok(response)
    }

    /// Returns who answered (a backend's name, or `None` for the gateway),
    /// the response and the number of tries.
    async fn forward(
        &self,
        upstream_pool: &UpstreamPool,
        request: Request<Incoming>,
        client: SocketAddr,
        live: &Live,
    ) -> (Option<Arc<str>>, Response<ClientBody>, u32) {
        let s = &live.settings;
        let (mut parts, incoming) = request.into_parts();
        let body = match RequestBody::read(incoming, &parts.headers, s).await {
            Ok(body) => body,
            Err((refusal, detail)) => {
                return (None, refusal.response(&detail, s.retry_after_secs), 0);
            }
        };
        headers::strip_hop_by_hop(&mut parts.headers);
        let request_id = headers::add_forwarding(&mut parts.headers, client.ip());
        let keyed = parts.headers.contains_key(headers::IDEMPOTENCY_KEY);
        let repeatable = (is_idempotent(&parts.method) || keyed) && body.is_buffered();
        // Shared, not copied: a clone of the client's path is a reference
        // count.
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));

        live.budget.deposit();
        let mut body = Some(body);
        let mut tried: Vec<Arc<Backend>> = Vec::with_capacity(s.attempts as usize);
        let mut last_failure: Option<TryFailure> = None;
        let mut last_answer: Option<(Arc<str>, Response<Incoming>)> = None;
        while (tried.len() as u32) < s.attempts {
            let Some(backend) = self.backends.pick(s.policy, s.slow_start, &tried) else {
                break;
            };
            if !tried.is_empty() {
                if !live.budget.withdraw() {
                    self.metrics.budget_exhausted();
                    break;
                }
                self.metrics.retried(match &last_failure {
                    Some(TryFailure::Connect(_)) => "connect",
                    Some(TryFailure::AfterSend(Refusal::UpstreamTimeout, _)) => "timeout",
                    Some(TryFailure::AfterSend(..)) => "reset",
                    None => "status",
                });
            }
            tried.push(Arc::clone(&backend));
            let Some(upstream_body) = body.as_mut().and_then(RequestBody::for_try) else {
                break;
            };
            // Origin form: the connection already names the backend.
            let mut target = http::uri::Parts::default();
            target.path_and_query = Some(path_and_query.clone());
            let Ok(uri) = Uri::from_parts(target) else {
                return (
                    None,
                    Refusal::BadRequest.response("the request target is not valid", 0),
                    0,
                );
            };
            let mut upstream = Request::new(upstream_body);
            *upstream.method_mut() = parts.method.clone();
            *upstream.uri_mut() = uri;
            *upstream.headers_mut() = parts.headers.clone();
            if !upstream.headers().contains_key(http::header::HOST) {
                if let Ok(host) = http::HeaderValue::from_str(backend.authority.as_str()) {
                    upstream.headers_mut().insert(http::header::HOST, host);
                }
            }

            let sent = Instant::now();
            let in_flight = backend.start_request();
            let outcome = tokio::time::timeout(
                s.upstream_timeout,
                upstream_pool.send(&backend.authority, upstream),
            )
            .await;
            drop(in_flight);
            let now = Instant::now();
            let rules = live.ejection_rules();
            match outcome {
                Ok(Ok(response)) => {
                    let status = response.status();
                    self.judge_status(&backend, status, sent, now, live);
                    last_failure = None;
                    let worth_another = matches!(status.as_u16(), 502..=504) && repeatable;
                    if !worth_another {
                        return (
                            Some(Arc::clone(&backend.label)),
                            pass_on(response, &request_id),
                            tried.len() as u32,
                        );
                    }
                    last_answer = Some((Arc::clone(&backend.label), response));
                }
                Ok(Err(UpstreamError::Connect(err))) => {
                    // Nothing reached the backend: it is gone. Out of
                    // rotation at once; health checks bring it back.
                    if backend.mark_down() {
                        self.backends.record(
                            backend.name(),
                            "down",
                            format!("connect failed: {err}"),
                        );
                    }
                    if backend
                        .record_failure(Failure::Connect, s.upstream_timeout, &rules, now)
                        .is_some()
                    {
                        self.metrics.ejected(backend.name());
                    }
                    last_failure = Some(TryFailure::Connect(format!(
                        "{} refused the connection",
                        backend.name()
                    )));
                }
                Ok(Err(err)) => {
                    self.fail_after_send(&backend, &rules, s.upstream_timeout, now);
                    last_failure = Some(TryFailure::AfterSend(
                        Refusal::BadGateway,
                        format!("{} failed while answering: {err}", backend.name()),
                    ));
                    if !repeatable {
                        break;
                    }
                }
                Err(_elapsed) => {
                    self.fail_after_send(&backend, &rules, s.upstream_timeout, now);
                    last_failure = Some(TryFailure::AfterSend(
                        Refusal::UpstreamTimeout,
                        format!(
                            "{} did not answer within {} ms",
                            backend.name(),
                            s.upstream_timeout.as_millis()
                        ),
                    ));
                    if !repeatable {
                        break;
                    }
                }
            }
        }
        let tries = tried.len() as u32;
        // A backend's own answer (a 503 after all retries) beats ours.
        if let Some((name, response)) = last_answer {
            return (Some(name), pass_on(response, &request_id), tries);
        }
        let (refusal, detail) = match last_failure {
            Some(TryFailure::AfterSend(refusal, detail)) => (refusal, detail),
            Some(TryFailure::Connect(detail)) => (Refusal::NoBackend, detail),
            None => (Refusal::NoBackend, "no backend is available".to_string()),
        };
        if refusal == Refusal::NoBackend {
            self.metrics.shed("no_backend");
        }
        (None, refusal.response(&detail, s.retry_after_secs), tries)
    }

    /// Feeds a backend's answer to its latency estimate and ejection count.
    fn judge_status(
        &self,
        backend: &Backend,
        status: StatusCode,
        sent: Instant,
        now: Instant,
        live: &Live,
    ) {
        let s = &live.settings;
        match status.as_u16() {
            // A shop sheds load with 503 on purpose: make it look slow so
            // traffic moves elsewhere, but do not eject it for that.
            503 => backend.record_shed(s.upstream_timeout, now),
            500..=599 => {
                self.fail_after_send(backend, &live.ejection_rules(), s.upstream_timeout, now)
            }
            _ => backend.record_success(now.saturating_duration_since(sent), now),
        }
    }

    fn fail_after_send(
        &self,
        backend: &Backend,
        rules: &EjectionRules,
        penalty: Duration,
        now: Instant,
    ) {
        if let Some(length) = backend.record_failure(Failure::ServerError, penalty, rules, now) {
            self.metrics.ejected(backend.name());
            self.backends.record(
                backend.name(),
                "ejected",
                format!("failures in a row; back in {} ms", length.as_millis()),
            );
        }
    }
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}

/// A backend's response, cleaned of hop-by-hop headers, body streamed.
fn pass_on(response: Response<Incoming>, request_id: &http::HeaderValue) -> Response<ClientBody> {
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts
        .headers
        .insert(headers::REQUEST_ID, request_id.clone());
    Response::from_parts(parts, Either::Left(body))
}
