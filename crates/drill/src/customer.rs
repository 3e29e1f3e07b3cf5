//! One customer: browse, order with an idempotency key, honour
//! `Retry-After`, retry with the same key on a network error, give up after
//! their patience.

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

pub(crate) struct Customer {
    pub(crate) http: Arc<Client>,
    pub(crate) urls: Arc<Urls>,
    pub(crate) scenario_customer: crate::scenario::Customer,
    pub(crate) recorder: Arc<Recorder>,
    pub(crate) connections: Arc<tokio::sync::Semaphore>,
    pub(crate) run_id: Arc<str>,
}

impl Customer {
    pub(crate) async fn shop(self, arrived: Instant, n: u64) {
        let c = &self.scenario_customer;
        let timeout = Duration::from_millis(c.request_timeout_ms);
        let number = n.wrapping_mul(2_654_435_761) % c.population;
        let who = format!("customer-{number}");
        // 10.0.0.0/8 holds every population the scenario allows.
        let mut headers: Vec<(&'static str, HeaderValue)> = Vec::with_capacity(2);
        if c.synthetic_addresses {
            let address = std::net::Ipv4Addr::from(0x0a00_0000 + number as u32).to_string();
            if let Ok(value) = HeaderValue::from_str(&address) {
                headers.push(("x-forwarded-for", value));
            }
        }
        if c.browse {
            let _connection = self.connections.acquire().await;
            let browse = Outgoing {
                method: Method::GET,
                path: &self.urls.product,
                json: None,
                headers: &headers,
            };
            let answer = match self.http.send(&browse, timeout).await {
                Ok(a) if (200..300).contains(&a.status) => Answer::Success,
                Ok(a) => Answer::Error(a.status.to_string()),
                Err(failure) => Answer::Error(failure.kind().to_string()),
            };
            self.recorder.request(arrived, answer);
        }
        let quantity = 1 + (n % c.max_quantity as u64) as i64;
        // Unique per run and customer without asking the OS for randomness
        // on every arrival.
        let key = format!("{}-{n}", self.run_id);
        // `who` is "customer-" and digits: nothing to escape.
        let body = bytes::Bytes::from(format!(
            r#"{{"sku":{},"quantity":{quantity},"customer":"{who}"}}"#,
            self.urls.sku_json
        ));
        if let Ok(value) = HeaderValue::from_str(&key) {
            headers.push(("idempotency-key", value));
        }
        let order = Outgoing {
            method: Method::POST,
            path: &self.urls.orders,
            json: Some(body),
            headers: &headers,
        };
        let deadline = arrived + Duration::from_secs_f64(c.patience_s);
        let mut sent_at = Instant::now();
        loop {
            let connection = self.connections.acquire().await;
            let result = self.http.send(&order, timeout).await;
            drop(connection);
            let wait = match result {
                Ok(answer) => match answer.status {
                    201 | 200 => {
                        self.recorder.request(sent_at, Answer::Success);
                        let order_id = serde_json::from_slice::<Created>(&answer.body)
                            .map(|c| c.order_id)
                            .unwrap_or_default();
                        self.recorder.lock().acknowledged.push(Acknowledged {
                            order_id,
                            customer: who,
                            idempotency_key: key,
                        });
                        return;
                    }
                    409 | 429 | 404 | 422 => {
                        self.recorder.request(sent_at, Answer::ByDesign);
                        return;
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
            if next >= deadline {
                self.recorder.lock().gave_up += 1;
                return;
            }
            tokio::time::sleep_until(next).await;
            sent_at = Instant::now();
        }
    }
}
