//! Four shop processes on one database, 2,000 concurrent orders from 500
//! customers for 100 units — with and without a SIGKILL in the middle — and
//! concurrent duplicates of one key. The three invariants are checked
//! against the store afterwards, on SQLite and on PostgreSQL.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use support::{client, export, inventory, order, put_product, Shop};

const SHOPS: usize = 4;
const ORDERS: usize = 2_000;
const CUSTOMERS: usize = 500;
const STOCK: i64 = 100;
/// Attempts per order before the client gives up (a customer's patience).
const ATTEMPTS: usize = 40;

/// What the clients saw.
struct Seen {
    /// Order ids of every 201 a client received.
    acknowledged: Vec<String>,
    /// Orders that never got a final answer.
    gave_up: usize,
}

/// Fires every order at once, spread over the shops. A client retries with
/// the same key on the next shop after a connection error or a 503, as the
/// gateway does; `kill_after` is an answer count and what to run when it is
/// reached.
async fn surge(urls: Vec<String>, kill_after: Option<(usize, Box<dyn FnOnce() + Send>)>) -> Seen {
    let answered = Arc::new(AtomicUsize::new(0));
    let (kill_at, kill) = match kill_after {
        Some((at, kill)) => (at, Some(kill)),
        None => (usize::MAX, None),
    };
    let kill = Arc::new(std::sync::Mutex::new(kill));
    let urls = Arc::new(urls);
    let c = client();
    let mut tasks = Vec::with_capacity(ORDERS);
    for i in 0..ORDERS {
        let (urls, c, answered, kill) = (urls.clone(), c.clone(), answered.clone(), kill.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({ "sku": "hot", "quantity": 1, "customer": format!("customer-{}", i % CUSTOMERS) });
            let key = format!("order-{i}");
            for attempt in 0..ATTEMPTS {
                let url = &urls[(i + attempt) % urls.len()];
                let outcome = order(&c, url, &key, body.clone()).await;
                if answered.fetch_add(1, Ordering::SeqCst) + 1 == kill_at {
                    if let Some(kill) = kill.lock().unwrap().take() {
                        kill();
                    }
                }
                match outcome {
                    Ok((201, _, body)) => return Some(Some(body["order_id"].as_str().unwrap().to_string())),
                    Ok((409, _, body)) if body["error"] == "sold_out" => return Some(None),
                    Ok((status, _, body)) if status == 503 || body["error"] == "request_in_progress" => {}
                    Ok((status, _, body)) => panic!("unexpected answer {status}: {body}"),
                    Err(_) => {}
                }
                tokio::time::sleep(Duration::from_millis(20 + 10 * attempt as u64)).await;
            }
            None
        }));
    }
    let mut seen = Seen {
        acknowledged: Vec::new(),
        gave_up: 0,
    };
    for task in tasks {
        match task.await.expect("client task") {
            Some(Some(id)) => seen.acknowledged.push(id),
            Some(None) => {}
            None => seen.gave_up += 1,
        }
    }
    seen
}

/// The three invariants, checked against the store's own export.
async fn assert_invariants(shop_url: &str, seen: &Seen) {
    let orders = export(shop_url).await;
    let units: i64 = orders.iter().map(|o| o["quantity"].as_i64().unwrap()).sum();
    assert!(units <= STOCK, "oversold: {units} units sold of {STOCK}");
    let stored: HashSet<&str> = orders
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    let lost: Vec<_> = seen
        .acknowledged
        .iter()
        .filter(|id| !stored.contains(id.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged orders missing from the store: {lost:?}"
    );
    let mut per_key: HashMap<(String, String), usize> = HashMap::new();
    for o in &orders {
        let key = (
            o["customer"].as_str().unwrap().to_string(),
            o["idempotency_key"].as_str().unwrap().to_string(),
        );
        *per_key.entry(key).or_default() += 1;
    }
    let duplicated: Vec<_> = per_key.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "keys with more than one order: {duplicated:?}"
    );
    let line = inventory(shop_url)
        .await
        .into_iter()
        .find(|l| l["sku"] == "hot")
        .unwrap();
    assert_eq!(
        line["sold"].as_i64(),
        Some(units),
        "inventory agrees with the orders"
    );
}

async fn start_shops(db_url: &str) -> Vec<Shop> {
    let first = Shop::start(db_url).await;
    assert_eq!(
        put_product(
            &first.url,
            "hot",
            json!({ "name": "Hot", "price_cents": 500, "stock": STOCK })
        )
        .await
        .status(),
        201
    );
    let mut shops = vec![first];
    for _ in 1..SHOPS {
        shops.push(Shop::start(db_url).await);
    }
    shops
}

async fn exactly_the_stock_is_sold(db_url: &str) {
    let shops = start_shops(db_url).await;
    let seen = surge(shops.iter().map(|s| s.url.clone()).collect(), None).await;
    assert_eq!(seen.gave_up, 0, "every customer got an answer");
    assert_eq!(
        seen.acknowledged.len() as i64,
        STOCK,
        "exactly the stock was sold"
    );
    assert_invariants(&shops[0].url, &seen).await;
}

async fn a_killed_shop_loses_nothing(db_url: &str) {
    let mut shops = start_shops(db_url).await;
    let victim = shops.remove(1);
    let pid = victim.pid();
    let urls: Vec<String> = std::iter::once(victim.url.clone())
        .chain(shops.iter().map(|s| s.url.clone()))
        .collect();
    let kill = Box::new(move || {
        std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill runs");
    });
    let seen = surge(urls, Some((300, kill))).await;
    assert!(!seen.acknowledged.is_empty());
    assert_invariants(&shops[0].url, &seen).await;
    drop(victim);
}

async fn concurrent_duplicates_make_one_order(db_url: &str) {
    let shops = start_shops(db_url).await;
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (c, url) = (c.clone(), shops[i % 2].url.clone());
        tasks.push(tokio::spawn(async move {
            let body = json!({ "sku": "hot", "quantity": 1, "customer": "dup" });
            loop {
                let response = c
                    .post(format!("{url}/api/orders"))
                    .header("Idempotency-Key", "same")
                    .json(&body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                let text = response.text().await.unwrap();
                if status == 201 {
                    return text;
                }
                let error: Value = serde_json::from_str(&text).unwrap();
                assert!(
                    status == 409 && error["error"] == "request_in_progress" || status == 503,
                    "{status} {text}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    let mut bodies = HashSet::new();
    for task in tasks {
        bodies.insert(task.await.unwrap());
    }
    assert_eq!(
        bodies.len(),
        1,
        "every duplicate got the identical body: {bodies:?}"
    );
    let orders = export(&shops[0].url).await;
    assert_eq!(orders.iter().filter(|o| o["customer"] == "dup").count(), 1);
}

macro_rules! on_both_stores {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let db = super::support::sqlite_db();
                    super::$check(&db.url).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    let url = super::support::pg_database().await;
                    super::$check(&url).await;
                    super::support::drop_pg_database(&url).await;
                }
            )*
        }
    };
}

on_both_stores!(
    exactly_the_stock_is_sold,
    a_killed_shop_loses_nothing,
    concurrent_duplicates_make_one_order
);
