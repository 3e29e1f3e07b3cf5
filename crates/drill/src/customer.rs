//! One customer: browse, order with an idempotency key, honour
//! `Retry-After`, retry with the same key on a network error, give up after
//! their patience.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

use crate::oracle::Acknowledged;
use crate::record::{Answer, Recorder};

/// An item's two endpoints, parsed once.
pub(crate) struct Urls {
    pub(crate) sku: String,
    pub(crate) product: reqwest::Url,
    pub(crate) orders: reqwest::Url,
}

impl Urls {
    pub(crate) fn new(base: &str, sku: &str) -> Option<Urls> {
        Some(Urls {
            sku: sku.to_string(),
            product: reqwest::Url::parse(&format!("{base}/api/products/{sku}")).ok()?,
            orders: reqwest::Url::parse(&format!("{base}/api/orders")).ok()?,
        })
    }
}

pub(crate) struct Customer {
    pub(crate) http: reqwest::Client,
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
        let address = c
            .synthetic_addresses
            .then(|| std::net::Ipv4Addr::from(0x0a00_0000 + number as u32).to_string());
        let with_address = |request: reqwest::RequestBuilder| match &address {
            Some(address) => request.header("X-Forwarded-For", address),
            None => request,
        };
        if c.browse {
            let _connection = self.connections.acquire().await;
            let answer = match with_address(self.http.get(self.urls.product.clone()))
                .timeout(timeout)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => drain(r, Answer::Success).await,
                Ok(r) => {
                    let kind = r.status().as_u16().to_string();
                    drain(r, Answer::Error(kind)).await
                }
                Err(err) => Answer::Error(network_kind(&err)),
            };
            self.recorder.request(arrived, answer);
        }
        let quantity = 1 + (n % c.max_quantity as u64) as i64;
        // Unique per run and customer without asking the OS for randomness
        // on every arrival.
        let key = format!("{}-{n}", self.run_id);
        let body =
            json!({ "sku": self.urls.sku, "quantity": quantity, "customer": who }).to_string();
        let deadline = arrived + Duration::from_secs_f64(c.patience_s);
        let mut sent_at = Instant::now();
        loop {
            let connection = self.connections.acquire().await;
            let result = with_address(self.http.post(self.urls.orders.clone()))
                .header("Idempotency-Key", &key)
                .header("Content-Type", "application/json")
                .body(body.clone())
                .timeout(timeout)
                .send()
                .await;
            let wait = match result {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let body: serde_json::Value = response.json().await.unwrap_or_default();
                    drop(connection);
                    match status {
                        201 | 200 => {
                            self.recorder.request(sent_at, Answer::Success);
                            let order_id =
                                body["order_id"].as_str().unwrap_or_default().to_string();
                            self.recorder.lock().acknowledged.push(Acknowledged {
                                order_id,
                                customer: who.clone(),
                                idempotency_key: key.clone(),
                            });
                            return;
                        }
                        409 | 429 | 404 | 422 => {
                            self.recorder.request(sent_at, Answer::ByDesign);
                            return;
                        }
                        _ => {
                            self.recorder
                                .request(sent_at, Answer::Error(status.to_string()));
                            Duration::from_secs(retry_after.unwrap_or(0))
                                .max(Duration::from_millis(100))
                        }
                    }
                }
                Err(err) => {
                    self.recorder
                        .request(sent_at, Answer::Error(network_kind(&err)));
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

async fn drain(response: reqwest::Response, answer: Answer) -> Answer {
    match response.bytes().await {
        Ok(_) => answer,
        Err(err) => Answer::Error(network_kind(&err)),
    }
}

fn network_kind(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timeout".into()
    } else if err.is_connect() {
        "connect".into()
    } else {
        "network".into()
    }
}
