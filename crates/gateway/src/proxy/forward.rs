//! One request's tries: pick a backend, send, judge, then retry or answer.
//! What each try shows of its backend goes to that backend (`learn`); the
//! judgement of a failure is `failure::TryError`'s alone.

use bytes::Bytes;
use http::Method;
use tokio::time::Instant;
use tower::retry::budget::Budget;

use super::affinity;
use super::answer::Refusal;
use super::body::RequestBody;
use super::client::ClientConn;
use super::failure::{Fault, Happened, TryError};
use super::slot::{self, Slot};
use super::upstream::{Answer, Outgoing, UpstreamPool};
use super::{headers, Alarm, Live};
use crate::backend::{Backend, Learned, Lesson};
use crate::balance::{Backends, Change};
use crate::http1::request::RequestHead;
use crate::http1::{Known, Stream};
use crate::metrics::GatewayMetrics;
use crate::queue::WaitQueue;

/// What a request's tries use: the backends, the queue in front of them,
/// the settings of the moment, the metrics and the serving thread's
/// backend connections.
pub(super) struct Route<'a> {
    pub(super) backends: &'a Backends,
    pub(super) queue: &'a WaitQueue,
    pub(super) live: &'a Live,
    pub(super) metrics: &'a GatewayMetrics,
    pub(super) upstream: &'a UpstreamPool,
    pub(super) owners: &'a affinity::Owners,
    /// `Flashguard-Status` for the shops, when something is wrong.
    pub(super) store_status: Option<&'static [u8]>,
}

/// Who answers the client.
// One per request, moved twice; boxing the large variant would cost an
// allocation on every request instead.
#[allow(clippy::large_enum_variant)]
pub(super) enum Reply {
    Backend {
        /// The answering backend's slot, held until the answer is relayed.
        slot: Slot,
        answer: Answer,
        /// Its latency sample (sent, answered), taught to the backend once
        /// the client has its answer: off the critical path. `None` when
        /// it was taught already, before a retry.
        sample: Option<(Instant, Instant)>,
    },
    Gateway(Refusal, String),
    /// The waiting room's: a place in line, sold out, too many tickets, or
    /// the room's own pages.
    Room(crate::room::page::Answer),
}

impl Reply {
    pub(super) fn status(&self) -> u16 {
        match self {
            Reply::Backend { answer, .. } => answer.head.status.as_u16(),
            Reply::Gateway(refusal, _) => refusal.status().as_u16(),
            Reply::Room(answer) => answer.status.as_u16(),
        }
    }
}

/// What became of a request, for the connection that carried it.
pub(super) struct Forwarded {
    pub(super) reply: Reply,
    pub(super) tries: u32,
    /// Whether the request's body was read to its end, so the connection
    /// can carry another request.
    pub(super) body_read: bool,
    /// The body, read whole, of a request the queue turned away: what the
    /// waiting room offers a browser to send again (`room::hold_back`).
    pub(super) kept_body: Option<Bytes>,
}

impl Forwarded {
    /// No try answered the client: a backend's own 502–504 (kept from a
    /// try that was worth another) beats an answer of ours.
    fn out_of_tries(
        route: &Route<'_>,
        last: Option<Last>,
        tries: u32,
        body_read: bool,
    ) -> Forwarded {
        let error = match last {
            Some(Last::Answer(slot, answer)) => {
                let reply = Reply::Backend {
                    slot,
                    answer,
                    sample: None,
                };
                return Forwarded {
                    reply,
                    tries,
                    body_read,
                    kept_body: None,
                };
            }
            Some(Last::Failed(error)) => error,
            None => TryError::no_backend(),
        };
        if error.refusal == Refusal::NoBackend {
            route.metrics.shed("no_backend");
        }
        Forwarded::refused(error, tries, body_read)
    }

    /// The gateway answers by itself.
    pub(super) fn refused(error: TryError, tries: u32, body_read: bool) -> Forwarded {
        Forwarded {
            reply: Reply::Gateway(error.refusal, error.detail),
            tries,
            body_read,
            kept_body: None,
        }
    }
}

/// The last try that did not answer the client.
enum Last {
    /// A 502–504 from a backend, kept with its slot: it beats an answer of
    /// our own.
    Answer(Slot, Answer),
    Failed(TryError),
}

/// Sends the request to backends by the safe retry rule until one answers.
pub(super) async fn forward<S: Stream>(
    route: &Route<'_>,
    conn: &mut ClientConn<S>,
    request: &RequestHead,
    request_id: &Bytes,
) -> Forwarded {
    let s = &route.live.settings;
    let mut body = match RequestBody::read(&mut conn.wire, request, s, &mut conn.alarm).await {
        Ok(body) => body,
        Err(error) => return Forwarded::refused(error, 0, false),
    };
    let repeatable = (is_idempotent(&request.method) || request.head.has(Known::IdempotencyKey))
        && body.is_buffered();
    route.live.budget.deposit();
    let list = route.backends.snapshot();
    // Grown at the first try: a request waiting in the queue holds none.
    let (mut tries, mut tried) = (0, Vec::new());
    let mut last: Option<Last> = None;
    let sku = s
        .sku_affinity
        .then(|| affinity::sku_of(request, &body))
        .flatten();
    while tries < s.attempts {
        // An order waits for its item's owner (`affinity`); anything else,
        // or an order no primary can own, for any backend not yet tried.
        let owner = sku
            .as_deref()
            .and_then(|sku| route.owners.owner(&list, sku, &tried));
        let all_but_owner = owner.map(|owner| affinity::all_but(list.len(), owner));
        let avoid = all_but_owner.as_deref().unwrap_or(&tried);
        let waiting = (&mut conn.alarm, &mut conn.wire.stream);
        let slot = match slot::acquire(route, &list, avoid, waiting).await {
            Ok(slot) => slot,
            // No backend left: the last failure stands.
            Err(error) if error.refusal == Refusal::NoBackend => break,
            // The queue is full or the wait ran out: a deliberate answer.
            Err(error) => {
                let kept_body = body.into_buffered();
                let read = kept_body.is_some();
                return Forwarded {
                    kept_body,
                    ..Forwarded::refused(error, tries, read)
                };
            }
        };
        if last.as_ref().is_some_and(|last| !route.may_retry(last)) {
            break;
        }
        let limit = s.max_body_bytes as u64;
        let Some(try_body) = body.for_try(request.framing, limit) else {
            break; // streamed to an earlier try: it cannot be sent again
        };
        if tries == 0 {
            // Written once, whatever the number of tries, and only once a
            // backend is there to take it.
            headers::upstream_head(
                &mut conn.upstream_head,
                request,
                &conn.peer,
                request_id,
                route.store_status,
            );
        }
        tries += 1;
        tried.extend(slot.place_in(&list));
        let backend = slot.backend();
        let outgoing = Outgoing {
            method: &request.method,
            head: &conn.upstream_head,
            has_host: request.has_host(),
            body: try_body,
            client: &mut conn.wire,
            scratch: &mut conn.scratch,
        };
        let sent = Instant::now();
        let deadline = sent + s.upstream_timeout;
        let result = {
            // The thread watches for its own stalls while it awaits.
            let _awaiting = crate::stall::awaiting();
            send(route, backend, outgoing, (&mut conn.alarm, deadline)).await
        };
        let sample = (sent, Instant::now());
        let failed = match result {
            Ok(answer) if !answer.head.relayable_to(request.http11) => {
                let error = TryError::unrelayable(backend.name());
                return Forwarded::refused(error, tries, body.is_buffered());
            }
            // The common case, built in place: an answer is large to move.
            Ok(answer) if !(repeatable && is_gateway_error(&answer)) => {
                return Forwarded {
                    reply: Reply::Backend {
                        slot,
                        answer,
                        sample: Some(sample),
                    },
                    tries,
                    body_read: true,
                    kept_body: None,
                };
            }
            Ok(answer) => {
                route.teach(backend, Lesson::of_timed_answer(answer.head.status, sample));
                Last::Answer(slot, answer)
            }
            Err(happened) => {
                let error = TryError::judge(happened, backend.name(), repeatable);
                route.learn_from(backend, &error);
                match error.fault {
                    Fault::Client => return Forwarded::refused(error, 0, false),
                    Fault::BackendBeforeSend => body.untouched(),
                    Fault::BackendAfterSend | Fault::Gateway => {}
                }
                Last::Failed(error)
            }
        };
        let give_up = matches!(&failed, Last::Failed(error) if !error.retry);
        last = Some(failed);
        if give_up {
            break;
        }
    }
    // A streamed body may be partly read: the connection cannot carry
    // another request.
    Forwarded::out_of_tries(route, last, tries, body.is_buffered())
}

/// One try on `backend`, bounded by the upstream timeout (its deadline).
async fn send<C: Stream>(
    route: &Route<'_>,
    backend: &Backend,
    outgoing: Outgoing<'_, C>,
    (alarm, deadline): (&mut Alarm, Instant),
) -> Result<Answer, Happened> {
    backend.sending();
    let answer = tokio::select! {
        biased;
        answer = route.upstream.send(
            &backend.authority,
            outgoing,
            route.live.settings.connect_timeout,
        ) => answer,
        () = alarm.until(deadline) => {
            Err(Happened::NoAnswerInTime(route.live.settings.upstream_timeout))
        }
    };
    if answer.is_ok() {
        backend.heard(Instant::now());
    }
    answer
}

impl Route<'_> {
    /// Whether a retry after `last` may go ahead: it draws from the budget.
    fn may_retry(&self, last: &Last) -> bool {
        // A try that never reached its backend (refused, or no connection
        // in time) cost the backends nothing: sending the request to
        // another is its first delivery, not a retry the budget guards
        // against. Charging it would turn a crashed shop's refused
        // connections into 503s for requests no shop ever saw, while the
        // other shops live (measured: 300 to 1,400 in a rehearsal beyond
        // capacity, all `no_backend` after one refused try).
        let never_sent =
            matches!(last, Last::Failed(error) if error.fault == Fault::BackendBeforeSend);
        if !never_sent && !self.live.budget.withdraw() {
            self.metrics.budget_exhausted();
            return false;
        }
        self.metrics.retried(match last {
            Last::Answer(..) => "status",
            Last::Failed(error) => error.retry_reason(),
        });
        true
    }

    /// Teaches `backend` what a try showed, and puts what changed on the
    /// event log and the metrics.
    pub(super) fn teach(&self, backend: &Backend, lesson: Lesson) {
        self.teach_why(backend, lesson, "5xx answers in a row");
    }

    /// Teaches `backend` what a failed try showed of it, if it was to blame.
    fn learn_from(&self, backend: &Backend, error: &TryError) {
        let silent_for = backend.silent_for(Instant::now());
        if let Some(lesson) = error.lesson(silent_for, self.live.settings.hung_after) {
            self.teach_why(backend, lesson, &error.detail);
        }
    }

    fn teach_why(&self, backend: &Backend, lesson: Lesson, why: &str) {
        let rules = (&self.live.ejection_rules(), &self.live.settings.limit);
        let Learned {
            marked_down,
            ejected_for,
        } = backend.learn(lesson, rules, Instant::now());
        if marked_down {
            self.backends
                .record(backend.name(), Change::Down, why.to_string());
        }
        if let Some(length) = ejected_for {
            self.metrics.ejected(backend.name());
            if !marked_down {
                self.backends.record(
                    backend.name(),
                    Change::Ejected,
                    format!("{why}; back in {} ms", length.as_millis()),
                );
            }
        }
    }
}

/// A 502, 503 or 504: worth another backend when the request is repeatable.
fn is_gateway_error(answer: &Answer) -> bool {
    matches!(answer.head.status.as_u16(), 502..=504)
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE
    )
}
