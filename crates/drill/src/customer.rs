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
}

/// What a visit needs next.
pub(crate) enum Next {
    Done,
    /// Order again at this time (after `Retry-After`, or a pause after a
    /// network error), with the same key.
    RetryAt(Instant),
}

impl Shopper {
    pub(crate) fn arrive(&self, arrived: Instant, n: u64) -> Visit {
        let c = &self.scenario_customer;
        let number = n.wrapping_mul(2_654_435_761) % c.population;
        let who = format!("customer-{number}");
        let mut headers: Vec<(&'static str, HeaderValue)> = Vec::with_capacity(2);
        // 10.0.0.0/8 holds every population the scenario allows.
        if c.synthetic_addresses {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + number as u32).to_string();
            if let Ok(value) = HeaderValue::from_str(&address) {
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
        }
    }

    /// The visit's next requests on `http`: the product page (the first
    /// time), then one try of the order. `due` is when this step was meant
    /// to start; latency counts from it.
    pub(crate) async fn step(&self, visit: &mut Visit, http: &Client, due: Instant) -> Next {
        let timeout = Duration::from_millis(self.scenario_customer.request_timeout_ms);
        let mut sent_at = due;
        if !visit.browsed {
            visit.browsed = true;
            // The order key is not sent with the page view.
            let browse = Outgoing {
                method: Method::GET,
                path: &visit.urls.product,
                json: None,
                headers: &visit.headers[..visit.page_headers],
            };
            let answer = match http.send(&browse, timeout).await {
                Ok(a) if (200..300).contains(&a.status) => Answer::Success,
                Ok(a) => Answer::Error(a.status.to_string()),
                Err(failure) => Answer::Error(failure.kind().to_string()),
            };
            self.recorder.request(due, answer);
            sent_at = Instant::now();
        }
        let order = Outgoing {
            method: Method::POST,
            path: &visit.urls.orders,
            json: Some(visit.body.clone()),
            headers: &visit.headers,
        };
        let wait = match http.send(&order, timeout).await {
            Ok(answer) => match answer.status {
                201 | 200 => {
                    self.recorder.request(sent_at, Answer::Success);
                    let order_id = serde_json::from_slice::<Created>(&answer.body)
                        .map(|c| c.order_id)
                        .unwrap_or_default();
                    self.recorder.lock().acknowledged.push(Acknowledged {
                        order_id,
                        customer: std::mem::take(&mut visit.who),
                        idempotency_key: std::mem::take(&mut visit.key),
                    });
                    return Next::Done;
                }
                409 | 429 | 404 | 422 => {
                    self.recorder.request(sent_at, Answer::ByDesign);
                    return Next::Done;
                }
                status => {
                    self.recorder
                        .request(sent_at, Answer::Error(status.to_string()));
                    Duration::from_secs(answer.retry_after_s.unwrap_or(0))
                        .max(Duration::from_millis(100))
                }
            },
            Err(failure) => {
                self.recorder
                    .request(sent_at, Answer::Error(failure.kind().to_string()));
                Duration::from_millis(100)
            }
        };
        let next = Instant::now() + wait;
        if next >= visit.deadline {
            self.recorder.lock().gave_up += 1;
            return Next::Done;
        }
        Next::RetryAt(next)
    }
}
