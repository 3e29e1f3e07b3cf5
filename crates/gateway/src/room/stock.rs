//! The sale's stock, from the shops' own catalogue: every second, each of
//! the room's SKUs is asked of a backend that is up (`GET
//! /api/products/{sku}`); when every one has nothing left, the room says
//! "sold out" to everyone waiting.

use std::sync::{Arc, Weak};
use std::time::Duration;

use http::{Request, Uri};
use http_body_util::{BodyExt, Empty};
use serde::Deserialize;
use tokio::time::Instant;

use super::{Notice, Room, Sale};
use crate::backend::State;
use crate::balance::Backends;
use crate::checker::CheckClient;

#[derive(Debug, Deserialize)]
struct Product {
    remaining: i64,
    sale_state: String,
}

/// Polls until the room goes; `notify` gets the sold-out notice.
pub(crate) fn watch_stock(
    room: &Arc<Room>,
    backends: &Arc<Backends>,
    client: CheckClient,
    notify: impl Fn(Notice) + Send + 'static,
) {
    if room.rules.skus.is_empty() {
        return;
    }
    let room: Weak<Room> = Arc::downgrade(room);
    let backends = Arc::downgrade(backends);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(room), Some(backends)) = (room.upgrade(), backends.upgrade()) else {
                return;
            };
            if let Some(sale) = look(&room.rules.skus, &backends, &client).await {
                if let Some(notice) = room.set_sale(sale) {
                    notify(notice);
                }
            }
        }
    });
}

/// Where the sale stands, from one backend that is up; `None` when none
/// answered.
async fn look(skus: &[String], backends: &Backends, client: &CheckClient) -> Option<Sale> {
    let now = Instant::now();
    let list = backends.snapshot();
    let backend = list.iter().find(|b| b.state(now) == State::Up)?;
    let mut products = Vec::with_capacity(skus.len());
    for sku in skus {
        let uri = Uri::builder()
            .scheme("http")
            .authority(backend.authority.clone())
            .path_and_query(format!("/api/products/{sku}"))
            .build()
            .ok()?;
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = uri;
        let response = tokio::time::timeout(Duration::from_secs(1), client.request(request))
            .await
            .ok()?
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        let body = response.into_body().collect().await.ok()?.to_bytes();
        products.push(serde_json::from_slice::<Product>(&body).ok()?);
    }
    Some(if products.iter().all(|p| p.remaining <= 0) {
        Sale::SoldOut
    } else if products.iter().any(|p| p.sale_state == "open") {
        Sale::Open
    } else if products.iter().any(|p| p.sale_state == "upcoming") {
        Sale::Upcoming
    } else {
        Sale::Ended
    })
}
