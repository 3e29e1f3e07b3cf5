//! The store trait's contract, on SQLite and on PostgreSQL, with time under
//! the test's control: key expiry, purging, export paging.

use std::time::Duration;

use flashguard_shop::model::{OrderRequest, Product};
use flashguard_shop::store::{self, Decision, Store, StoreOptions};
use sqlx::Connection;

const TTL: Duration = Duration::from_secs(60);

fn options() -> StoreOptions {
    StoreOptions {
        idempotency_ttl: TTL,
        ..StoreOptions::default()
    }
}

fn product(stock: i64) -> Product {
    Product {
        sku: "hot".into(),
        name: "Hot".into(),
        price_cents: 1,
        initial_stock: stock,
        sold: 0,
        sale_starts_at: None,
        sale_ends_at: None,
        limit_per_customer: None,
    }
}

fn request(key: &str, quantity: i64) -> OrderRequest {
    OrderRequest {
        sku: "hot".into(),
        quantity,
        customer: "c".into(),
        idempotency_key: key.into(),
    }
}

async fn keys_expire_and_are_purged(store: &dyn Store) {
    store.migrate().await.unwrap();
    let t0 = 1_000_000;
    store.upsert_product(&product(10), t0).await.unwrap();
    let first = store
        .place_orders("hot", &[request("k", 1)], t0)
        .await
        .unwrap();
    assert!(matches!(first[0], Decision::Created { .. }));
    let within = store
        .place_orders("hot", &[request("k", 1)], t0 + TTL.as_millis() as i64 - 1)
        .await
        .unwrap();
    assert!(matches!(within[0], Decision::Replay(_)), "{within:?}");
    let after = t0 + TTL.as_millis() as i64;
    let expired = store
        .place_orders("hot", &[request("k", 2)], after)
        .await
        .unwrap();
    assert!(
        matches!(expired[0], Decision::Created { .. }),
        "an expired key is free again: {expired:?}"
    );
    assert_eq!(
        store
            .purge_expired_keys(after + TTL.as_millis() as i64)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .purge_expired_keys(after + TTL.as_millis() as i64)
            .await
            .unwrap(),
        0
    );
}

async fn export_pages_cover_every_order_once(store: &dyn Store) {
    store.migrate().await.unwrap();
    store.upsert_product(&product(500), 0).await.unwrap();
    let requests: Vec<_> = (0..250).map(|i| request(&format!("k{i}"), 1)).collect();
    // Same timestamp for all: paging must break ties by order id.
    store.place_orders("hot", &requests, 5).await.unwrap();
    let mut seen = std::collections::HashSet::new();
    let mut after = None;
    loop {
        let page = store.orders_after(after.clone(), 40).await.unwrap();
        if page.is_empty() {
            break;
        }
        for (_, order) in &page {
            assert!(
                seen.insert(order.order_id.clone()),
                "order {} exported twice",
                order.order_id
            );
        }
        let (at, last) = page.last().unwrap();
        after = Some((*at, last.order_id.clone()));
    }
    assert_eq!(seen.len(), 250);
    let inventory = store.inventory().await.unwrap();
    assert_eq!((inventory[0].sold, inventory[0].remaining), (250, 250));
}

#[tokio::test]
async fn sqlite_keys_expire_and_are_purged() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        &options(),
    )
    .unwrap();
    keys_expire_and_are_purged(store.as_ref()).await;
}

#[tokio::test]
async fn sqlite_export_pages_cover_every_order_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        &options(),
    )
    .unwrap();
    export_pages_cover_every_order_once(store.as_ref()).await;
}

async fn with_pg(check: impl AsyncFnOnce(&dyn Store)) {
    let admin = std::env::var("FLASHGUARD_TEST_PG")
        .expect("FLASHGUARD_TEST_PG must be set (scripts/test sets it)");
    let name = format!("fg_test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let store = store::open(&url, &options()).unwrap();
    check(store.as_ref()).await;
    store.close().await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut connection)
        .await
        .unwrap();
}

#[tokio::test]
async fn postgres_keys_expire_and_are_purged() {
    with_pg(keys_expire_and_are_purged).await;
}

#[tokio::test]
async fn postgres_export_pages_cover_every_order_once() {
    with_pg(export_pages_cover_every_order_once).await;
}
