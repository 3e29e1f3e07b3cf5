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

mod affinity;
mod alarm;
pub(crate) mod answer;
mod back_office;
mod body;
pub(crate) mod client;
mod failure;
mod forward;
pub(crate) mod headers;
pub(crate) mod relay;
mod room;
mod slot;
mod upstream;

use std::io;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tower::retry::budget::TpsBudget;

use crate::backend::{EjectionRules, Lesson};
use crate::balance::Backends;
use crate::config::{Config, Settings};
use crate::http1::request::RequestHead;
use crate::http1::{AfterAnswer, Framing, Stream};
use crate::metrics::GatewayMetrics;
use crate::permits::ResizablePermits;
use crate::published::Published;
use crate::queue::WaitQueue;
use crate::room::Room;
pub(crate) use alarm::Alarm;
use answer::Refusal;
use client::ClientConn;
use forward::{Forwarded, Reply, Route};
use room::RoomAnswer;
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
            penalty: s.upstream_timeout,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Proxy {
    backends: Arc<Backends>,
    /// Where requests wait while every backend is at its limit.
    pub(crate) queue: Arc<WaitQueue>,
    live: Published<Live>,
    pub(crate) metrics: Arc<GatewayMetrics>,
    /// `limits.max_concurrent_requests`.
    pub(crate) admission: ResizablePermits,
    /// The waiting room, when one is configured.
    pub(crate) room: Option<Arc<Room>>,
    /// Each hot item's shop (`affinity`).
    owners: affinity::Owners,
    /// The public status page, unless turned off.
    pub(crate) status: Option<Arc<crate::status::StatusBoard>>,
}

/// What each serving thread has of its own.
#[derive(Debug, Clone)]
pub(crate) struct ThreadParts {
    pub(crate) upstream: Arc<UpstreamPool>,
    /// The thread's TLS handshakes, in turns.
    pub(crate) handshakes: Arc<crate::edge::handshakes::HandshakeTurns>,
    pub(crate) traffic: Arc<std::sync::Mutex<crate::traffic::Window>>,
}

impl Proxy {
    pub(crate) fn new(
        config: &Config,
        backends: Arc<Backends>,
        queue: Arc<WaitQueue>,
        metrics: Arc<GatewayMetrics>,
    ) -> Proxy {
        let room = (config.room.activation != crate::room::Activation::Off)
            .then(|| Arc::new(Room::new(config.room.clone(), metrics.room.clone())));
        metrics.room.configured.set(i64::from(room.is_some()));
        Proxy {
            backends,
            queue,
            live: Published::new(Live::new(config.settings.clone(), config)),
            metrics,
            admission: ResizablePermits::new(config.max_concurrent_requests),
            room,
            owners: affinity::Owners::default(),
            status: config
                .status_title
                .clone()
                .map(|title| Arc::new(crate::status::StatusBoard::new(title))),
        }
    }

    /// The status page's answer for `path`, if it is one of its paths.
    pub(crate) fn status_answer(&self, path: &str) -> Option<crate::room::page::Answer> {
        let board = self.status.as_deref()?;
        crate::status::answer(board, path, || self.own_view())
    }

    /// What the gateway sees itself, for the status page.
    pub(crate) fn own_view(&self) -> crate::status::OwnView {
        let now = Instant::now();
        let list = self.backends.snapshot();
        crate::status::OwnView {
            serving: list
                .iter()
                .filter(|b| b.state(now) == crate::backend::State::Up)
                .count(),
            backends: list.len(),
            room: self
                .room
                .as_deref()
                .map(|room| (room.is_on(), room.waiting())),
        }
    }

    pub(crate) fn live(&self) -> Arc<Live> {
        self.live.get()
    }

    pub(crate) fn set_live(&self, live: Live) {
        self.live.update(|_| live);
    }

    /// Answers one client request and writes the answer: admission, the
    /// tries, the answer, then the counting. Returns whether the connection
    /// can carry another request.
    pub(crate) async fn handle<S: Stream>(
        &self,
        thread: &ThreadParts,
        conn: &mut ClientConn<S>,
        request: RequestHead,
    ) -> io::Result<bool> {
        let started = Instant::now();
        let live = self.live();
        let route = Route {
            backends: &self.backends,
            queue: &self.queue,
            live: &live,
            metrics: &self.metrics,
            upstream: &thread.upstream,
            owners: &self.owners,
            store_status: self.status.as_deref().and_then(|board| board.for_shops()),
        };
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
        let request_id = headers::request_id(&request);
        // The shops' back office is not for the internet: outside the
        // allow-list (the peer, never X-Forwarded-For) it does not exist.
        // The status page answers by itself, before the room: customers
        // must read it even while they would be in line.
        let peer = conn.peer.addr.ip();
        let back_office_closed = back_office::is_admin(request.path())
            && !live
                .settings
                .admin_allow
                .iter()
                .any(|net| net.contains(&peer));
        let step = match self.status_answer(request.path()) {
            _ if back_office_closed => {
                self.metrics.shed("admin_not_allowed");
                Some(room::Step::Answer(RoomAnswer::Ready(
                    back_office::not_found(),
                )))
            }
            Some(answer) => Some(room::Step::Answer(RoomAnswer::Ready(answer))),
            None => self
                .room
                .as_deref()
                .map(|r| room::step(r, &request, client_ip)),
        };
        // A guarded path the room let through: the room, not the queue,
        // answers its customer if the shops stay full (`room::hold_back`).
        let guarded = matches!(step, Some(room::Step::Pass(_)));
        let (hand_back, room_answer) = match step {
            Some(room::Step::Pass(Some(ticket))) => {
                let room = self.room.as_deref().expect("a room decided");
                (Some(room::hand_back(room, &ticket)), None)
            }
            Some(room::Step::Answer(answer)) => (None, Some(answer)),
            Some(room::Step::Pass(None) | room::Step::Unguarded) | None => (None, None),
        };
        let admitted = match (room_answer, conn.refused.take()) {
            (Some(answer), _) => Err(answer),
            (None, Some(refused)) => Ok(Err(refused)),
            (None, None) => Ok(self.admit(&live, client_ip)),
        };
        let forwarded = match admitted {
            Err(answer) => {
                let (body_read, body) = room::read_body(conn, &request, &live).await;
                Forwarded {
                    reply: Reply::Room(answer.made(&request, body.as_deref())),
                    tries: 0,
                    body_read,
                    kept_body: None,
                }
            }
            Ok(Ok(_admitted)) => {
                self.metrics.in_flight(1);
                let forwarded = forward::forward(&route, conn, &request, &request_id).await;
                self.metrics.in_flight(-1);
                forwarded
            }
            Ok(Err(refusal)) => {
                self.metrics.shed(refusal.code());
                let detail = match refusal {
                    Refusal::RateLimited => "this client sends more requests than it may; slow down",
                    Refusal::QueueTimeout => {
                        "this connection's earlier requests kept their places at the shops for as long as a request may wait; retry shortly"
                    }
                    _ => "the gateway has too many requests in flight; retry shortly",
                };
                Forwarded {
                    reply: Reply::Gateway(refusal, detail.to_string()),
                    tries: 0,
                    body_read: request.framing == Framing::Empty,
                    kept_body: None,
                }
            }
        };
        let forwarded = match self.room.as_deref() {
            Some(room) if guarded => Forwarded {
                reply: room::hold_back(
                    room,
                    forwarded.reply,
                    (&request, forwarded.kept_body.as_deref()),
                    live.settings.retry_after_secs,
                ),
                ..forwarded
            },
            _ => forwarded,
        };
        // The answer goes out first; the counting after, off the path the
        // client (and the next hop) waits on.
        let elapsed = started.elapsed();
        let status = forwarded.reply.status();
        let close = !forwarded.body_read || !request.keep_alive() || conn.closing();
        let after = AfterAnswer::of(close, request.http11);
        // The room's cookie and the connection's lines (HSTS, and the idle
        // timeout unless this answer closes it) go on the answer; joined
        // only when both are there.
        // (A clone of an empty `Bytes` is free; of the others, one count.)
        let added = if close {
            conn.added.clone()
        } else {
            conn.added_kept_open.clone()
        };
        let joined;
        let extra: &[u8] = match (hand_back.as_deref(), added.is_empty()) {
            (None, _) => &added,
            (Some(cookie), true) => cookie,
            (Some(cookie), false) => {
                joined = [cookie, &added[..]].concat();
                &joined
            }
        };
        let (written, answered_by) = match forwarded.reply {
            Reply::Gateway(refusal, detail) => {
                // Why the gateway answered by itself, for whoever debugs a
                // run (`RUST_LOG=flashguard::refused=debug`).
                tracing::debug!(
                    target: "flashguard::refused",
                    code = refusal.code(),
                    tries = forwarded.tries,
                    detail = %detail,
                    "answered by the gateway"
                );
                let out = &mut conn.scratch;
                out.clear();
                refusal.write(
                    out,
                    &detail,
                    live.settings.retry_after_secs,
                    Some(&request_id),
                    after,
                    extra,
                );
                (conn.wire.write_all(out).await.map(|()| !close), None)
            }
            Reply::Room(answer) => {
                let out = &mut conn.scratch;
                out.clear();
                let keep_s = self.room.as_ref().map_or(0, |room| room.rules.keep_s());
                answer.write(out, keep_s, &request_id, after, extra);
                (conn.wire.write_all(out).await.map(|()| !close), None)
            }
            Reply::Backend {
                slot,
                answer,
                sample,
            } => {
                let backend = slot.backend();
                let answered_with = answer.head.status;
                let whole = relay::relay(
                    &mut conn.wire,
                    answer,
                    (&request_id, extra),
                    (request.http11, after),
                    (&thread.upstream, &backend.authority),
                    &mut conn.scratch,
                    relay::Pace {
                        alarm: &mut conn.alarm,
                        client: live.settings.client_send_timeout,
                        backend: live.settings.upstream_timeout,
                        metrics: &self.metrics,
                        slot: Some((&slot, live.settings.limit.max_waiting_on_clients)),
                    },
                )
                .await;
                if let Some(sample) = sample {
                    route.teach(backend, Lesson::of_timed_answer(answered_with, sample));
                }
                (whole.map(|whole| whole && !close), Some(slot))
            }
        };
        let label = answered_by.as_ref().map(|slot| &slot.backend().label);
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

    /// A slot for the request, or why it gets none: its client is over its
    /// rate, or too many requests are in flight.
    fn admit(
        &self,
        live: &Live,
        client: IpAddr,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Refusal> {
        if live
            .limiter
            .as_ref()
            .is_some_and(|limiter| limiter.check_key(&client).is_err())
        {
            return Err(Refusal::RateLimited);
        }
        self.admission.try_admit().ok_or(Refusal::Overloaded)
    }
}
