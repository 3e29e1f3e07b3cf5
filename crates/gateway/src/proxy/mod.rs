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

mod alarm;
pub(crate) mod answer;
mod body;
pub(crate) mod client;
mod headers;
mod relay;
mod upstream;

use std::io;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::retry::budget::{Budget, TpsBudget};

use crate::backend::{Backend, EjectionRules, Failure};
use crate::balance::Backends;
use crate::config::{Config, Settings};
use crate::http1::body::State;
use crate::http1::request::RequestHead;
use crate::http1::{Framing, Known};
use crate::metrics::GatewayMetrics;
use crate::published::Published;
pub(crate) use alarm::Alarm;
use answer::Refusal;
use body::RequestBody;
use client::ClientConn;
pub(crate) use upstream::UpstreamPool;
use upstream::{Answer, Outgoing, TryBody, UpstreamError};

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

/// Who answers the client.
// One per request, moved twice; boxing the large variant would cost an
// allocation on every request instead.
#[allow(clippy::large_enum_variant)]
enum Reply {
    /// From the backend at this place in `Forwarded::backends`.
    Backend {
        at: usize,
        answer: Answer,
    },
    Gateway(Refusal, String),
}

impl Reply {
    fn status(&self) -> u16 {
        match self {
            Reply::Backend { answer, .. } => answer.head.status.as_u16(),
            Reply::Gateway(refusal, _) => refusal.status().as_u16(),
        }
    }
}

/// What became of a request, for the connection that carried it.
struct Forwarded {
    reply: Reply,
    tries: u32,
    /// The serving thread's own copy of the backend list the request was
    /// balanced over: backends are named by their place in it.
    backends: Option<Arc<Vec<Arc<Backend>>>>,
    /// The answering backend's latency sample (sent, answered), fed to its
    /// estimate once the client has its answer: off the critical path.
    sample: Option<(Instant, Instant)>,
    /// Whether the request's body was read to its end, so the connection
    /// can carry another request.
    body_read: bool,
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

    /// Answers one client request and writes the answer. Returns whether
    /// the connection can carry another request.
    pub(crate) async fn handle(
        &self,
        thread: &ThreadParts,
        conn: &mut ClientConn,
        request: RequestHead,
    ) -> io::Result<bool> {
        let started = Instant::now();
        let live = self.live();
        let path_class = crate::traffic::PathClass::of(request.path());
        // Copied only when they will be logged: this is the hot path.
        let logged = live
            .settings
            .access_log
            .then(|| (request.method.clone(), request.path().to_string()));
        let client_ip = headers::client_ip(
            conn.peer.addr.ip(),
            &request,
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
        let request_id = headers::request_id(&request);
        let forwarded = match admitted {
            Ok(_admitted) => {
                self.metrics.in_flight(1);
                let forwarded = self
                    .forward(thread, conn, &request, &request_id, &live)
                    .await;
                self.metrics.in_flight(-1);
                forwarded
            }
            Err(refusal) => {
                self.metrics.shed(refusal.code());
                let detail = if refusal == Refusal::RateLimited {
                    "this client sends more requests than it may; slow down"
                } else {
                    "the gateway has too many requests in flight; retry shortly"
                };
                Forwarded {
                    reply: Reply::Gateway(refusal, detail.to_string()),
                    tries: 0,
                    backends: None,
                    sample: None,
                    body_read: request.framing == Framing::Empty,
                }
            }
        };
        // The answer goes out first; the counting after, off the path the
        // client (and the next hop) waits on.
        let elapsed = started.elapsed();
        let status = forwarded.reply.status();
        let close = !forwarded.body_read || !request.keep_alive();
        let answered_by = match (&forwarded.reply, &forwarded.backends) {
            (Reply::Backend { at, .. }, Some(list)) => list.get(*at),
            _ => None,
        };
        let written = match forwarded.reply {
            Reply::Gateway(refusal, detail) => {
                let out = &mut conn.scratch;
                out.clear();
                refusal.write(
                    out,
                    &detail,
                    live.settings.retry_after_secs,
                    Some(&request_id),
                    close,
                );
                conn.wire.write_all(out).await.map(|()| !close)
            }
            Reply::Backend { answer, .. } => {
                // A backend's answer always comes with the list it is in.
                let Some(backend) = answered_by else {
                    return Ok(false);
                };
                let whole = relay::relay(
                    &mut conn.wire,
                    answer,
                    &request_id,
                    (request.http11, close),
                    (&thread.upstream, &backend.authority),
                    &mut conn.scratch,
                )
                .await;
                whole.map(|whole| whole && !close)
            }
        };
        let label = answered_by.map(|backend| &backend.label);
        if let (Some(backend), Some((sent, answered))) = (answered_by, forwarded.sample) {
            self.judge_status(
                backend,
                StatusCode::from_u16(status).unwrap_or_default(),
                sent,
                answered,
                &live,
            );
        }
        thread
            .traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .record(client_ip, path_class, status);
        self.metrics.answered(label, status, elapsed);
        if let Some((method, path)) = logged {
            tracing::info!(
                target: "flashguard::access",
                client = %client_ip,
                method = %method,
                path,
                status,
                backend = label.map_or("gateway", |label| &**label),
                attempts = forwarded.tries,
                duration_ms = elapsed.as_secs_f64() * 1000.0,
                "request"
            );
        }
        written
    }

    /// Sends the request to a backend, retrying by the safe retry rule.
    async fn forward(
        &self,
        thread: &ThreadParts,
        conn: &mut ClientConn,
        request: &RequestHead,
        request_id: &Bytes,
        live: &Live,
    ) -> Forwarded {
        let ClientConn {
            wire: client,
            peer,
            upstream_alarm: alarm,
            scratch,
            upstream_head: head,
        } = conn;
        let s = &live.settings;
        let gateway = |refusal: Refusal, detail: String, body_read: bool| Forwarded {
            reply: Reply::Gateway(refusal, detail),
            tries: 0,
            backends: None,
            sample: None,
            body_read,
        };
        if request.expects_continue && request.framing != Framing::Empty {
            let too_large =
                matches!(request.framing, Framing::Length(n) if n > s.max_body_bytes as u64);
            if !too_large
                && client
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                return gateway(
                    Refusal::BadRequest,
                    "the client went away".to_string(),
                    false,
                );
            }
        }
        let mut body = match RequestBody::read(client, request.framing, s, alarm).await {
            Ok(body) => body,
            Err((refusal, detail)) => return gateway(refusal, detail, false),
        };
        let keyed = request.head.has(Known::IdempotencyKey);
        let repeatable = (is_idempotent(&request.method) || keyed) && body.is_buffered();
        let has_host = request.head.has(Known::Host);
        // Written once, whatever the number of tries.
        headers::upstream_head(head, request, peer, request_id);

        live.budget.deposit();
        let list = self.backends.snapshot();
        let mut tried: Vec<usize> = Vec::with_capacity(s.attempts as usize);
        let mut last_failure: Option<TryFailure> = None;
        let mut last_answer: Option<(usize, Answer)> = None;
        while (tried.len() as u32) < s.attempts {
            let Some(at) = self.backends.pick_in(&list, s.policy, s.slow_start, &tried) else {
                break;
            };
            let backend = &list[at];
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
            tried.push(at);
            let try_body = match &mut body {
                RequestBody::Buffered { bytes, announced } => TryBody::Buffered {
                    bytes: bytes.clone(),
                    announced: *announced,
                },
                RequestBody::Streaming { spent: true, .. } => break,
                RequestBody::Streaming { length, spent } => {
                    *spent = true;
                    TryBody::Streaming {
                        client: &mut *client,
                        state: State::of(request.framing),
                        length: *length,
                        limit: s.max_body_bytes as u64,
                    }
                }
            };
            let outgoing = Outgoing {
                method: &request.method,
                head,
                has_host,
                body: try_body,
                scratch,
            };

            let sent = Instant::now();
            let in_flight = backend.start_request();
            let deadline = sent + s.upstream_timeout;
            let outcome = tokio::select! {
                biased;
                answer = thread.upstream.send(&backend.authority, outgoing) => Ok(answer),
                () = alarm.until(deadline) => Err(()),
            };
            drop(in_flight);
            let now = Instant::now();
            let rules = live.ejection_rules();
            match outcome {
                Ok(Ok(answer)) => {
                    let status = answer.head.status;
                    last_failure = None;
                    let worth_another = matches!(status.as_u16(), 502..=504) && repeatable;
                    if !worth_another {
                        return Forwarded {
                            reply: Reply::Backend { at, answer },
                            tries: tried.len() as u32,
                            backends: Some(list),
                            sample: Some((sent, now)),
                            body_read: true,
                        };
                    }
                    self.judge_status(backend, status, sent, now, live);
                    last_answer = Some((at, answer));
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
                    // A streamed body was not touched: another backend
                    // can have it.
                    if let RequestBody::Streaming { spent, .. } = &mut body {
                        *spent = false;
                    }
                    last_failure = Some(TryFailure::Connect(format!(
                        "{} refused the connection",
                        backend.name()
                    )));
                }
                Ok(Err(UpstreamError::ClientBody { too_large, detail })) => {
                    // The client's fault, not the backend's.
                    let refusal = if too_large {
                        Refusal::PayloadTooLarge
                    } else {
                        Refusal::BadRequest
                    };
                    return gateway(refusal, detail, false);
                }
                Ok(Err(err)) => {
                    self.fail_after_send(backend, &rules, s.upstream_timeout, now);
                    last_failure = Some(TryFailure::AfterSend(
                        Refusal::BadGateway,
                        format!("{} failed while answering: {err}", backend.name()),
                    ));
                    if !repeatable {
                        break;
                    }
                }
                Err(_elapsed) => {
                    self.fail_after_send(backend, &rules, s.upstream_timeout, now);
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
        // A streamed body may be partly read: the connection cannot carry
        // another request.
        let body_read = body.is_buffered();
        // A backend's own answer (a 503 after all retries) beats ours.
        if let Some((at, answer)) = last_answer {
            return Forwarded {
                reply: Reply::Backend { at, answer },
                tries,
                backends: Some(list),
                sample: None,
                body_read,
            };
        }
        let (refusal, detail) = match last_failure {
            Some(TryFailure::AfterSend(refusal, detail)) => (refusal, detail),
            Some(TryFailure::Connect(detail)) => (Refusal::NoBackend, detail),
            None => (Refusal::NoBackend, "no backend is available".to_string()),
        };
        if refusal == Refusal::NoBackend {
            self.metrics.shed("no_backend");
        }
        Forwarded {
            reply: Reply::Gateway(refusal, detail),
            tries,
            backends: None,
            sample: None,
            body_read,
        }
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
