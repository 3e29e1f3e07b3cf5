//! One customer: browse, order with an idempotency key, honour
//! `Retry-After`, retry with the same key on a network error, give up after
//! their patience. A visit is a small state machine that the load thread's
//! lanes step through (see `run`), so waiting customers cost no task.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderValue;
use http::{Method, Uri};
use tokio::time::Instant;

use crate::client::{Client, Outgoing};
use crate::oracle::Acknowledged;
use crate::record::{Answer, Recorder};

/// An item's two endpoints, parsed once.
pub(crate) struct Urls {
    /// The SKU as a JSON string, quotes included.
    pub(crate) sku_json: String,
    pub(crate) product: Uri,
    pub(crate) orders: Uri,
}

impl Urls {
    pub(crate) fn new(sku: &str) -> Option<Urls> {
        Some(Urls {
            sku_json: serde_json::to_string(sku).ok()?,
            product: format!("/api/products/{sku}").parse().ok()?,
            orders: Uri::from_static("/api/orders"),
        })
    }
}

/// The one field of a created order the oracle needs; the rest is skipped
/// without building a JSON tree.
#[derive(serde::Deserialize)]
struct Created {
    order_id: String,
}

/// How customers behave in this run, and where their requests go.
pub(crate) struct Shopper {
    pub(crate) urls: Vec<Arc<Urls>>,
    pub(crate) scenario_customer: crate::scenario::Customer,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) run_id: Arc<str>,
}

/// One customer's visit, from arrival to an answer or giving up.
pub(crate) struct Visit {
    urls: Arc<Urls>,
    who: String,
    key: String,
    /// X-Forwarded-For (when synthetic addresses are on), then
    /// Idempotency-Key.
    headers: Vec<(&'static str, HeaderValue)>,
    /// How many of `headers` the product page gets (not the key).
    page_headers: usize,
    body: bytes::Bytes,
    deadline: Instant,
    browsed: bool,
    /// A waiting room's ticket, kept and shown on every request after.
    ticket: Option<HeaderValue>,
    /// Shown a place in line at least once.
    waited: bool,
}

/// What a visit needs next.
pub(crate) enum Next {
    Done,
    /// Order again at this time (after `Retry-After`, or a pause after a
    /// network error), with the same key.
    RetryAt(Instant),
}

/// What an answer means for the visit.
enum Heard {
    /// 2xx.
    Through,
    /// A waiting room holds the customer: come back after this.
    Wait(Duration),
    /// A waiting room that let the customer in holds this request back
    /// (every shop full): come back after this, still in.
    HeldBack(Duration),
    /// The sale sold out (the room's word or the shop's).
    SoldOut,
    /// The sale's window closed while the customer waited (the room's
    /// word).
    SaleEnded,
    /// Refused by design (limit, unknown item...): the visit ends.
    Refused,
    /// An error: try again after this, within patience.
    Failed(String, Duration),
}

fn hear(
    answer: Result<crate::client::Answer, crate::client::Failure>,
) -> (Heard, Option<HeaderValue>, bytes::Bytes) {
    let answer = match answer {
        Ok(answer) => answer,
        Err(failure) => {
            let pause = Duration::from_millis(100);
            return (
                Heard::Failed(failure.kind().to_string(), pause),
                None,
                bytes::Bytes::new(),
            );
        }
    };
    let says = |what: &[u8]| answer.body.windows(what.len()).any(|w| w == what);
    let heard = match answer.status {
        200..=299 => Heard::Through,
        429 if says(br#""status":"waiting""#) => {
            let after = Duration::from_secs(answer.retry_after_s.unwrap_or(1).max(1));
            if says(br#""held_back":true"#) {
                Heard::HeldBack(after)
            } else {
                Heard::Wait(after)
            }
        }
        409 if says(b"sold_out") => Heard::SoldOut,
        409 if says(br#""status":"sale_ended""#) => Heard::SaleEnded,
        409 | 429 | 404 | 422 => Heard::Refused,
        status => Heard::Failed(
            error_kind(status, &answer.body),
            Duration::from_secs(answer.retry_after_s.unwrap_or(0)).max(Duration::from_millis(100)),
        ),
    };
    (heard, answer.ticket, answer.body)
}

/// "503" and, when the body names it (`{"error":"queue_timeout"}`), the
/// error: who answered what is what a report reader needs first.
fn error_kind(status: u16, body: &[u8]) -> String {
    const FIELD: &[u8] = br#""error":""#;
    let named = body
        .windows(FIELD.len())
        .position(|w| w == FIELD)
        .map(|at| &body[at + FIELD.len()..])
        .and_then(|rest| rest.iter().position(|&b| b == b'"').map(|end| &rest[..end]))
        .filter(|name| !name.is_empty() && name.len() <= 40)
        .and_then(|name| std::str::from_utf8(name).ok());
    match named {
        Some(name) => format!("{status} {name}"),
        None => status.to_string(),
    }
}

impl Shopper {
    pub(crate) fn arrive(&self, arrived: Instant, n: u64) -> Visit {
        let c = &self.scenario_customer;
        let number = n.wrapping_mul(2_654_435_761) % c.population;
        let who = format!("customer-{number}");
        let mut headers: Vec<(&'static str, HeaderValue)> = Vec::with_capacity(3);
        // 10.0.0.0/8 holds every population the scenario allows; the low
        // bytes of the number go first, so neighbours differ in their /24.
        if c.synthetic_addresses {
            let [a, b, c, _] = (number as u32).to_le_bytes();
            let address = std::net::Ipv4Addr::new(10, a, b, c);
            if let Ok(value) = HeaderValue::from_str(&address.to_string()) {
                headers.push(("x-forwarded-for", value));
            }
        }
        let page_headers = headers.len();
        let urls = Arc::clone(&self.urls[n as usize % self.urls.len()]);
        let quantity = 1 + (n % c.max_quantity as u64) as i64;
        // Unique per run and customer without asking the OS for randomness
        // on every arrival.
        let key = format!("{}-{n}", self.run_id);
        if let Ok(value) = HeaderValue::from_str(&key) {
            headers.push(("idempotency-key", value));
        }
        // `who` is "customer-" and digits: nothing to escape.
        let body = bytes::Bytes::from(format!(
            r#"{{"sku":{},"quantity":{quantity},"customer":"{who}"}}"#,
            urls.sku_json
        ));
        Visit {
            urls,
            who,
            key,
            headers,
            page_headers,
            body,
            deadline: arrived + Duration::from_secs_f64(c.patience_s),
            browsed: !c.browse,
            ticket: None,
            waited: false,
        }
    }

    /// The visit's next requests on `http`: the product page (the first
    /// time), then one try of the order. `due` is when this step was meant
    /// to start; latency counts from it. A waiting room may hold either:
    /// the customer keeps the ticket and comes back when told.
    pub(crate) async fn step(&self, visit: &mut Visit, http: &Client, due: Instant) -> Next {
        // A customer whose next step comes after their patience ran out
        // (the generator fell behind a server that answers nobody) has
        // left already.
        if Instant::now() >= visit.deadline {
            let ending = if visit.waited {
                Ending::GaveUpWaiting
            } else {
                Ending::GaveUp
            };
            return self.end(visit, due, ending);
        }
        let timeout = Duration::from_millis(self.scenario_customer.request_timeout_ms);
        let mut sent_at = due;
        if !visit.browsed {
            // The order key is not sent with the page view.
            let headers = with_ticket(&visit.headers[..visit.page_headers], &visit.ticket);
            let browse = Outgoing {
                method: Method::GET,
                path: &visit.urls.product,
                json: None,
                headers: &headers,
            };
            let (heard, ticket, _) = hear(http.send(&browse, timeout).await);
            visit.ticket = ticket.or(visit.ticket.take());
            match heard {
                Heard::Wait(after) => return self.wait(visit, sent_at, after),
                Heard::HeldBack(after) => return self.held_back(visit, sent_at, after),
                Heard::SoldOut => return self.end(visit, sent_at, Ending::SoldOut),
                Heard::SaleEnded => return self.end(visit, sent_at, Ending::SaleEnded),
                Heard::Through => self.recorder.request(sent_at, Answer::Success),
                Heard::Refused => self.recorder.request(sent_at, Answer::ByDesign),
                Heard::Failed(kind, _) => self.recorder.request(sent_at, Answer::Error(kind)),
            }
            self.admitted(visit);
            visit.browsed = true;
            sent_at = Instant::now();
        }
        let headers = with_ticket(&visit.headers, &visit.ticket);
        let order = Outgoing {
            method: Method::POST,
            path: &visit.urls.orders,
            json: Some(visit.body.clone()),
            headers: &headers,
        };
        let (heard, ticket, body) = hear(http.send(&order, timeout).await);
        visit.ticket = ticket.or(visit.ticket.take());
        let pause = match heard {
            Heard::Through => {
                self.recorder.served(sent_at);
                self.recorder.request(sent_at, Answer::Success);
                let order_id = serde_json::from_slice::<Created>(&body)
                    .map(|c| c.order_id)
                    .unwrap_or_default();
                // Served while the ticket says they are still in line.
                let bypassed =
                    (visit.waited || visit.ticket.is_some()) && !ticket_admitted(&visit.ticket);
                let mut observed = self.recorder.lock();
                observed.room.bypassed_orders += u64::from(bypassed);
                observed.acknowledged.push(Acknowledged {
                    order_id,
                    customer: std::mem::take(&mut visit.who),
                    idempotency_key: std::mem::take(&mut visit.key),
                });
                drop(observed);
                return self.end(visit, sent_at, Ending::Ordered);
            }
            Heard::Wait(after) => return self.wait(visit, sent_at, after),
            Heard::HeldBack(after) => return self.held_back(visit, sent_at, after),
            Heard::SoldOut => return self.end(visit, sent_at, Ending::SoldOut),
            Heard::SaleEnded => return self.end(visit, sent_at, Ending::SaleEnded),
            Heard::Refused => return self.end(visit, sent_at, Ending::Refused),
            Heard::Failed(kind, pause) => {
                self.recorder.request(sent_at, Answer::Error(kind));
                pause
            }
        };
        self.admitted(visit);
        let next = Instant::now() + pause;
        if next >= visit.deadline {
            return self.end(visit, sent_at, Ending::GaveUp);
        }
        Next::RetryAt(next)
    }

    /// A waiting room said to come back after `after`: the customer does,
    /// with their ticket, while their patience for waiting lasts.
    fn wait(&self, visit: &mut Visit, sent_at: Instant, after: Duration) -> Next {
        if !visit.waited {
            visit.waited = true;
            let patience = self.scenario_customer.waiting_patience_s;
            visit.deadline = Instant::now() + Duration::from_secs_f64(patience);
        }
        self.come_back(visit, sent_at, after)
    }

    /// The room let the customer in but held this request back: they come
    /// back when told, with the patience they have (they are not in line
    /// again), and the page they were shown is an answer.
    fn held_back(&self, visit: &mut Visit, sent_at: Instant, after: Duration) -> Next {
        self.recorder.lock().room.held_back += 1;
        self.come_back(visit, sent_at, after)
    }

    /// The room answered: the customer comes back after `after`, unless
    /// their patience runs out first.
    fn come_back(&self, visit: &mut Visit, sent_at: Instant, after: Duration) -> Next {
        self.recorder.request(sent_at, Answer::Waiting);
        let next = Instant::now() + after;
        if next >= visit.deadline {
            return self.end(visit, sent_at, Ending::GaveUpWaiting);
        }
        Next::RetryAt(next)
    }

    /// Through the room after waiting: the usual patience from now on.
    fn admitted(&self, visit: &mut Visit) {
        if visit.waited && ticket_admitted(&visit.ticket) {
            let patience = Duration::from_secs_f64(self.scenario_customer.patience_s);
            visit.deadline = visit.deadline.max(Instant::now() + patience);
        }
    }

    /// The visit ends: how, and what its ticket says of its wait.
    fn end(&self, visit: &mut Visit, sent_at: Instant, ending: Ending) -> Next {
        match ending {
            Ending::SoldOut | Ending::SaleEnded | Ending::Refused => {
                self.recorder.request(sent_at, Answer::ByDesign)
            }
            Ending::GaveUp => self.recorder.lock().gave_up += 1,
            Ending::Ordered | Ending::GaveUpWaiting => {}
        }
        let stamp = visit
            .ticket
            .as_ref()
            .and_then(|t| t.to_str().ok())
            .and_then(|t| flashguard_ticket::Ticket::read(t).ok());
        self.recorder.lock().room.ended(ending, visit.waited, stamp);
        Next::Done
    }
}

/// How a customer's visit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Ordered,
    SoldOut,
    /// Told the sale's window had closed.
    SaleEnded,
    /// A deliberate refusal (over the limit, unknown item).
    Refused,
    /// Patience ran out while shown a place in line: answered, not served.
    GaveUpWaiting,
    /// Patience ran out on errors: never properly answered.
    GaveUp,
}

fn ticket_admitted(ticket: &Option<HeaderValue>) -> bool {
    ticket
        .as_ref()
        .and_then(|t| t.to_str().ok())
        .and_then(|t| flashguard_ticket::Ticket::read(t).ok())
        .is_some_and(|t| t.admitted_ms > 0)
}

/// The headers with the ticket added, when there is one.
fn with_ticket(
    headers: &[(&'static str, HeaderValue)],
    ticket: &Option<HeaderValue>,
) -> Vec<(&'static str, HeaderValue)> {
    let mut all = headers.to_vec();
    if let Some(ticket) = ticket {
        all.push((crate::client::TICKET, ticket.clone()));
    }
    all
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_is_named_by_its_status_and_the_body_s_error() {
        assert_eq!(
            super::error_kind(503, br#"{"error":"queue_timeout","detail":"x"}"#),
            "503 queue_timeout"
        );
        assert_eq!(super::error_kind(502, b"<html>bad gateway</html>"), "502");
        assert_eq!(super::error_kind(500, br#"{"error":""}"#), "500");
    }
}
