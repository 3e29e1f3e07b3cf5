//! What the shops can serve, measured rather than guessed: before the
//! beyond-capacity story is sized, customers of its own are sent to every
//! shop directly (no gateway), a fixed number at once per shop, for a few
//! seconds, each doing what a drill customer does — look at the item,
//! then order it; the customers served per second after a short warm-up
//! are the stack's capacity.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::time::Instant;

/// The item the measurement orders: it never runs out.
const SKU: &str = "capacity-probe";
/// Orders in flight per shop: enough to keep a shop busy, as the
/// gateway's concurrency limit would.
const PER_SHOP: usize = 16;
const WARM_UP: Duration = Duration::from_millis(700);

#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    #[error("creating the probe item at {shop}: {detail}")]
    SetUp { shop: String, detail: String },
    #[error("no order was acknowledged while measuring: the shops serve nothing")]
    Nothing,
}

/// Customers (a page view and an order each) per second all `shops`
/// (`http://IP:PORT`) serve together, measured over `window` after a
/// warm-up.
pub(crate) async fn capacity(
    shops: &[String],
    admin_token: &str,
    window: Duration,
) -> Result<f64, CalibrationError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(PER_SHOP)
        .build()
        .unwrap_or_default();
    let first = shops.first().ok_or(CalibrationError::Nothing)?;
    let created = http
        .put(format!("{first}/admin/products/{SKU}"))
        .bearer_auth(admin_token)
        .json(&json!({
            "name": "Capacity probe",
            "price_cents": 1,
            "stock": 1_000_000_000_i64,
            "limit_per_customer": 1_000_000_000_i64,
        }))
        .send()
        .await;
    match created {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            return Err(CalibrationError::SetUp {
                shop: first.clone(),
                detail: response.status().to_string(),
            })
        }
        Err(err) => {
            return Err(CalibrationError::SetUp {
                shop: first.clone(),
                detail: err.to_string(),
            })
        }
    }
    let started = Instant::now();
    let (from, until) = (started + WARM_UP, started + WARM_UP + window);
    let counted = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for (s, shop) in shops.iter().enumerate() {
        for w in 0..PER_SHOP {
            let (http, counted) = (http.clone(), Arc::clone(&counted));
            let url = format!("{shop}/api/orders");
            let page = format!("{shop}/api/products/{SKU}");
            workers.push(tokio::spawn(async move {
                let mut n = 0u64;
                while Instant::now() < until {
                    n += 1;
                    let _ = http.get(&page).send().await;
                    let order = http
                        .post(&url)
                        .header("idempotency-key", format!("probe-{s}-{w}-{n}"))
                        .json(&json!({ "sku": SKU, "quantity": 1, "customer": format!("probe-{s}-{w}") }))
                        .send()
                        .await;
                    let ok = order.is_ok_and(|r| r.status().as_u16() == 201);
                    let now = Instant::now();
                    if ok && now >= from && now < until {
                        counted.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
    }
    for worker in workers {
        let _ = worker.await;
    }
    let orders = counted.load(Ordering::Relaxed);
    if orders == 0 {
        return Err(CalibrationError::Nothing);
    }
    Ok(orders as f64 / window.as_secs_f64())
}
