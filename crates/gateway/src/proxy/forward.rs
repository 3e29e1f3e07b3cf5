//! One request's tries: the backend chosen for each, the safe retry rule
//! with its budget, and what each answer or failure teaches the balancer
//! (latency, ejection).

use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use tokio::time::Instant;
use tower::retry::budget::Budget;

use super::answer::Refusal;
use super::body::RequestBody;
use super::client::ClientConn;
use super::upstream::{Answer, Outgoing, TryBody, UpstreamError};
use super::{headers, Forwarded, Live, Proxy, Reply, ThreadParts};
use crate::backend::{Backend, EjectionRules, Failure};
use crate::http1::body::State;
use crate::http1::request::RequestHead;
use crate::http1::Known;

/// How one try ended, when it did not produce the client's answer.
enum TryFailure {
    /// Never reached the backend.
    Connect(String),
    /// May have reached it.
    AfterSend(Refusal, String),
}

impl Proxy {
    /// Sends the request to a backend, retrying by the safe retry rule.
    pub(super) async fn forward(
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
        let mut body = match RequestBody::read(client, request, s, alarm).await {
            Ok(body) => body,
            Err((refusal, detail)) => {
                return Forwarded {
                    reply: Reply::Gateway(refusal, detail),
                    tries: 0,
                    body_read: false,
                }
            }
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
                            reply: Reply::Backend {
                                backends: list,
                                at,
                                answer,
                                sample: Some((sent, now)),
                            },
                            tries: tried.len() as u32,
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
                    return Forwarded {
                        reply: Reply::Gateway(refusal, detail),
                        tries: 0,
                        body_read: false,
                    };
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
                reply: Reply::Backend {
                    backends: list,
                    at,
                    answer,
                    sample: None,
                },
                tries,
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
            body_read,
        }
    }

    /// Feeds a backend's answer to its latency estimate and ejection count.
    pub(super) fn judge_status(
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
