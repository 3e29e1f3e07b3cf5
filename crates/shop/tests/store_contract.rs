//! The store trait's contract, on SQLite and on PostgreSQL, with time under
//! the test's control: key expiry, purging, export paging.

use std::time::Duration;

use flashguard_shop::model::{OrderRequest, Product};
use flashguard_shop::store::{self, Decision, Outcome, Store, StoreOptions};
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
    assert!(matches!(first[0], Decision::Final(Outcome::Created { .. })));
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
        matches!(expired[0], Decision::Final(Outcome::Created { .. })),
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

/// A batch mixing a replay, a reused key and a fresh key, and a replay after
/// the sale closed: a stored answer wins over everything the product's state
/// would say now.
async fn stored_answers_win_over_the_current_state(store: &dyn Store) {
    store.migrate().await.unwrap();
    let window = Product {
        sale_starts_at: Some(0),
        sale_ends_at: Some(10_000),
        ..product(2)
    };
    store.upsert_product(&window, 0).await.unwrap();
    let first = store
        .place_orders("hot", &[request("k1", 1), request("k2", 1)], 1)
        .await
        .unwrap();
    assert!(first
        .iter()
        .all(|decision| matches!(decision, Decision::Final(Outcome::Created { .. }))));
    let mixed = store
        .place_orders(
            "hot",
            &[request("k1", 1), request("k3", 1), request("k2", 2)],
            2,
        )
        .await
        .unwrap();
    assert!(matches!(mixed[0], Decision::Replay(_)), "{mixed:?}");
    assert!(
        matches!(mixed[1], Decision::Final(Outcome::SoldOut { .. })),
        "{mixed:?}"
    );
    assert!(matches!(mixed[2], Decision::KeyReused), "{mixed:?}");
    let closed = store
        .place_orders("hot", &[request("k1", 1), request("k9", 1)], 20_000)
        .await
        .unwrap();
    match &closed[0] {
        Decision::Replay(outcome) => {
            assert!(matches!(outcome, Outcome::Created { .. }), "{outcome:?}")
        }
        other => panic!("k1 must replay its 201 after the sale, got {other:?}"),
    }
    assert!(
        matches!(closed[1], Decision::SaleNotOpen { .. }),
        "{closed:?}"
    );
    let inventory = store.inventory().await.unwrap();
    assert_eq!(inventory[0].sold, 2);
    assert_eq!(store.orders_after(None, 10).await.unwrap().len(), 2);
}

async fn with_sqlite(check: impl AsyncFnOnce(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    let store = store::open(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        &options(),
    )
    .unwrap();
    check(store.as_ref()).await;
    store.close().await;
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

#[tokio::test]
async fn postgres_stored_answers_win_over_the_current_state() {
    with_pg(stored_answers_win_over_the_current_state).await;
}

#[tokio::test]
async fn sqlite_keys_expire_and_are_purged() {
    with_sqlite(keys_expire_and_are_purged).await;
}

#[tokio::test]
async fn sqlite_export_pages_cover_every_order_once() {
    with_sqlite(export_pages_cover_every_order_once).await;
}

#[tokio::test]
async fn sqlite_stored_answers_win_over_the_current_state() {
    with_sqlite(stored_answers_win_over_the_current_state).await;
}
