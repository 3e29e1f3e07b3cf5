//! The shop's contract (DESIGN.md's shop table) checked against a real shop
//! process, once on SQLite and once on PostgreSQL: same checks, both stores.

mod support;

use serde_json::{json, Value};
use support::{client, export, get_text, inventory, order, put_product, Shop};

fn item(stock: i64) -> Value {
    json!({ "name": "Hot item", "price_cents": 1999, "stock": stock })
}

fn buy(sku: &str, quantity: i64, customer: &str) -> Value {
    json!({ "sku": sku, "quantity": quantity, "customer": customer })
}

async fn products_are_created_replaced_and_listed(shop: &Shop) {
    let created = put_product(&shop.url, "lamp", item(10)).await;
    assert_eq!(created.status(), 201);
    let replaced = put_product(
        &shop.url,
        "lamp",
        json!({"name": "Lamp v2", "price_cents": 2500, "stock": 12}),
    )
    .await;
    assert_eq!(replaced.status(), 200);
    let one: Value = support::get_json(&client(), &format!("{}/api/products/lamp", shop.url)).await;
    assert_eq!(one["name"], "Lamp v2");
    assert_eq!(one["stock"], 12);
    assert_eq!(one["remaining"], 12);
    assert_eq!(one["sale_state"], "open");
    let all: Vec<Value> = support::get_json(&client(), &format!("{}/api/products", shop.url)).await;
    assert!(all.iter().any(|p| p["sku"] == "lamp"));
    let missing = client()
        .get(format!("{}/api/products/nope", shop.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"],
        "unknown_sku"
    );
}

async fn an_order_is_created_and_can_be_read_back(shop: &Shop) {
    put_product(&shop.url, "mug", item(5)).await;
    let c = client();
    let (status, headers, body) = order(&c, &shop.url, "key-1", buy("mug", 2, "ann"))
        .await
        .unwrap();
    assert_eq!(status, 201, "{body}");
    for field in ["order_id", "sku", "quantity", "customer", "created_at"] {
        assert!(!body[field].is_null(), "201 body lacks {field}: {body}");
    }
    let id = body["order_id"].as_str().unwrap();
    assert_eq!(headers["location"], format!("/api/orders/{id}").as_str());
    let read: Value = support::get_json(&c, &format!("{}/api/orders/{id}", shop.url)).await;
    assert_eq!(read, body);
    let missing = c
        .get(format!("{}/api/orders/no-such-order", shop.url))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let remaining: Value = support::get_json(&c, &format!("{}/api/products/mug", shop.url)).await;
    assert_eq!(remaining["remaining"], 3);
}

async fn a_repeated_key_replays_the_first_answer(shop: &Shop) {
    put_product(&shop.url, "pen", item(5)).await;
    let c = client();
    let send = || {
        c.post(format!("{}/api/orders", shop.url))
            .header("Idempotency-Key", "k")
            .json(&buy("pen", 1, "bob"))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first_headers = first.headers().clone();
    let first_text = first.text().await.unwrap();
    let replay = send().await.unwrap();
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    for name in ["location", "content-type"] {
        assert_eq!(
            replay.headers().get(name),
            first_headers.get(name),
            "the replay carries the first answer's {name}"
        );
    }
    assert_eq!(
        replay.text().await.unwrap(),
        first_text,
        "the replay is the first body, byte for byte"
    );
    let (status, _, body) = order(&c, &shop.url, "k", buy("pen", 2, "bob"))
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (422, Some("idempotency_key_reused"))
    );
    // Keys are scoped to the customer: another customer's "k" is a new order.
    let (status, _, _) = order(&c, &shop.url, "k", buy("pen", 1, "carol"))
        .await
        .unwrap();
    assert_eq!(status, 201);
    let orders = export(&shop.url).await;
    assert_eq!(orders.iter().filter(|o| o["sku"] == "pen").count(), 2);
}

async fn stock_runs_out_and_sold_out_is_remembered(shop: &Shop) {
    put_product(&shop.url, "rare", item(2)).await;
    let c = client();
    assert_eq!(
        order(&c, &shop.url, "a", buy("rare", 2, "a"))
            .await
            .unwrap()
            .0,
        201
    );
    let (status, _, body) = order(&c, &shop.url, "b", buy("rare", 1, "b"))
        .await
        .unwrap();
    assert_eq!((status, body["error"].as_str()), (409, Some("sold_out")));
    let (status, headers, _) = order(&c, &shop.url, "b", buy("rare", 1, "b"))
        .await
        .unwrap();
    assert_eq!(status, 409);
    assert_eq!(headers["idempotent-replayed"], "true");
    let lines = inventory(&shop.url).await;
    let rare = lines.iter().find(|l| l["sku"] == "rare").unwrap();
    assert_eq!(
        (
            rare["initial"].as_i64(),
            rare["sold"].as_i64(),
            rare["remaining"].as_i64()
        ),
        (Some(2), Some(2), Some(0))
    );
}

async fn orders_outside_the_sale_window_are_refused_and_not_remembered(shop: &Shop) {
    let upcoming = json!({ "name": "Soon", "price_cents": 100, "stock": 5,
        "sale_starts_at": "2999-01-01T00:00:00Z" });
    put_product(&shop.url, "soon", upcoming).await;
    let ended = json!({ "name": "Past", "price_cents": 100, "stock": 5,
        "sale_starts_at": "2000-01-01T00:00:00Z", "sale_ends_at": "2000-01-02T00:00:00Z" });
    put_product(&shop.url, "past", ended).await;
    let c = client();
    for sku in ["soon", "past"] {
        let (status, _, body) = order(&c, &shop.url, "w", buy(sku, 1, "dan")).await.unwrap();
        assert_eq!(
            (status, body["error"].as_str()),
            (409, Some("sale_not_open")),
            "{sku}"
        );
    }
    // The sale opens: the same key now buys.
    put_product(&shop.url, "soon", item(5)).await;
    let (status, _, _) = order(&c, &shop.url, "w", buy("soon", 1, "dan"))
        .await
        .unwrap();
    assert_eq!(status, 201);
}

async fn the_per_customer_limit_holds(shop: &Shop) {
    put_product(
        &shop.url,
        "limited",
        json!({ "name": "L", "price_cents": 1, "stock": 50, "limit_per_customer": 2 }),
    )
    .await;
    let c = client();
    assert_eq!(
        order(&c, &shop.url, "1", buy("limited", 1, "eve"))
            .await
            .unwrap()
            .0,
        201
    );
    let (status, _, body) = order(&c, &shop.url, "2", buy("limited", 2, "eve"))
        .await
        .unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("limit_exceeded"))
    );
    assert_eq!(
        order(&c, &shop.url, "3", buy("limited", 1, "eve"))
            .await
            .unwrap()
            .0,
        201
    );
    assert_eq!(
        order(&c, &shop.url, "4", buy("limited", 1, "eve"))
            .await
            .unwrap()
            .0,
        429
    );
    assert_eq!(
        order(&c, &shop.url, "1", buy("limited", 2, "frank"))
            .await
            .unwrap()
            .0,
        201
    );
}

async fn unknown_skus_are_404(shop: &Shop) {
    let (status, _, body) = order(&client(), &shop.url, "x", buy("ghost", 1, "gus"))
        .await
        .unwrap();
    assert_eq!((status, body["error"].as_str()), (404, Some("unknown_sku")));
}

async fn stock_cannot_go_below_units_sold(shop: &Shop) {
    put_product(&shop.url, "shrink", item(5)).await;
    order(&client(), &shop.url, "s", buy("shrink", 3, "hal"))
        .await
        .unwrap();
    let refused = put_product(&shop.url, "shrink", item(2)).await;
    assert_eq!(refused.status(), 422);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "stock_below_sold"
    );
    let line = inventory(&shop.url)
        .await
        .into_iter()
        .find(|l| l["sku"] == "shrink")
        .unwrap();
    assert_eq!(line["initial"], 5, "a refused change changes nothing");
}

async fn admin_needs_the_token(shop: &Shop) {
    let c = client();
    for (token, expected) in [
        (None, 401),
        (Some("wrong"), 401),
        (Some(support::ADMIN_TOKEN), 200),
    ] {
        let mut request = c.get(format!("{}/admin/inventory", shop.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), expected, "token {token:?}");
        if expected == 401 {
            assert_eq!(response.headers()["www-authenticate"], "Bearer");
            assert_eq!(
                response.json::<Value>().await.unwrap()["error"],
                "unauthorized"
            );
        }
    }
    // The scheme is case-insensitive (RFC 9110 §11.1).
    let lowercase = c
        .get(format!("{}/admin/inventory", shop.url))
        .header("authorization", format!("bearer {}", support::ADMIN_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(lowercase.status(), 200);
}

async fn export_and_inventory_agree(shop: &Shop) {
    put_product(&shop.url, "agree", item(100)).await;
    let c = client();
    for i in 0..25 {
        order(
            &c,
            &shop.url,
            &format!("e{i}"),
            buy("agree", 1 + i % 3, &format!("cust{i}")),
        )
        .await
        .unwrap();
    }
    let orders = export(&shop.url).await;
    let units: i64 = orders
        .iter()
        .filter(|o| o["sku"] == "agree")
        .map(|o| o["quantity"].as_i64().unwrap())
        .sum();
    let line = inventory(&shop.url)
        .await
        .into_iter()
        .find(|l| l["sku"] == "agree")
        .unwrap();
    assert_eq!(line["sold"].as_i64(), Some(units));
    for o in orders.iter().filter(|o| o["sku"] == "agree") {
        for field in [
            "order_id",
            "sku",
            "quantity",
            "customer",
            "idempotency_key",
            "created_at",
        ] {
            assert!(!o[field].is_null(), "export line lacks {field}: {o}");
        }
    }
}

async fn probes_and_metrics_answer(shop: &Shop) {
    let c = client();
    assert_eq!(
        c.get(format!("{}/healthz", shop.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        c.get(format!("{}/readyz", shop.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let created = put_product(&shop.url, "metered", item(40)).await;
    assert_eq!(created.status(), 201);
    let (status, _, _) = order(&c, &shop.url, "metered-1", buy("metered", 2, "m"))
        .await
        .unwrap();
    assert_eq!(status, 201);
    let metrics = get_text(&c, &format!("{}/metrics", shop.url)).await;
    assert!(
        metrics.contains("shop_stock_remaining{sku=\"metered\"} 38"),
        "stock per item is exported: {metrics}"
    );
    assert!(metrics.contains("shop_stock_remaining_ratio{sku=\"metered\"} 0.95"));
    for family in [
        "shop_http_requests_total",
        "shop_http_request_duration_seconds_bucket",
        "shop_http_requests_in_flight",
        "shop_db_pool_connections",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(metrics.contains(family), "/metrics lacks {family}");
    }
}

macro_rules! contract {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let db = support::sqlite_db();
                    let shop = Shop::start(&db.url).await;
                    super::$check(&shop).await;
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test]
                async fn $check() {
                    let url = support::pg_database().await;
                    let shop = Shop::start(&url).await;
                    super::$check(&shop).await;
                    drop(shop);
                    support::drop_pg_database(&url).await;
                }
            )*
        }
    };
}

contract!(
    products_are_created_replaced_and_listed,
    an_order_is_created_and_can_be_read_back,
    a_repeated_key_replays_the_first_answer,
    stock_runs_out_and_sold_out_is_remembered,
    orders_outside_the_sale_window_are_refused_and_not_remembered,
    the_per_customer_limit_holds,
    unknown_skus_are_404,
    stock_cannot_go_below_units_sold,
    admin_needs_the_token,
    export_and_inventory_agree,
    probes_and_metrics_answer,
);

/// A key the previous version recorded (its answer as sent, no outcome)
/// is replayed as it was sent; so is one whose outcome is older than the
/// row (the previous version wrote an expired key again).
async fn keys_the_previous_version_recorded_replay_as_sent(db_url: &str) {
    let shop = Shop::start(db_url).await;
    put_product(&shop.url, "old", item(5)).await;
    let c = client();
    for key in ["before", "rewritten"] {
        let (status, _, _) = order(&c, &shop.url, key, buy("old", 1, "dora"))
            .await
            .unwrap();
        assert_eq!(status, 201);
    }
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
    let sent = r#"{"order_id":"as-sent"}"#;
    sqlx::query(
        "UPDATE idempotency_keys SET outcome = NULL, response_body = $1 WHERE idem_key = 'before'",
    )
    .bind(sent)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "UPDATE idempotency_keys SET created_at = created_at + 1, response_body = $1 \
         WHERE idem_key = 'rewritten'",
    )
    .bind(sent)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    for key in ["before", "rewritten"] {
        let replay = c
            .post(format!("{}/api/orders", shop.url))
            .header("Idempotency-Key", key)
            .json(&buy("old", 1, "dora"))
            .send()
            .await
            .unwrap();
        assert_eq!(replay.status(), 201, "{key}");
        assert_eq!(replay.headers()["idempotent-replayed"], "true");
        assert_eq!(replay.text().await.unwrap(), sent, "{key}");
    }
}

#[tokio::test]
async fn sqlite_keys_the_previous_version_recorded_replay_as_sent() {
    let db = support::sqlite_db();
    keys_the_previous_version_recorded_replay_as_sent(&db.url).await;
}

#[tokio::test]
async fn postgres_keys_the_previous_version_recorded_replay_as_sent() {
    let url = support::pg_database().await;
    keys_the_previous_version_recorded_replay_as_sent(&url).await;
    support::drop_pg_database(&url).await;
}

#[tokio::test]
async fn admin_is_off_without_a_token() {
    let db = support::sqlite_db();
    let shop = Shop::start_with(&db.url, &[], None).await;
    let response = client()
        .get(format!("{}/admin/inventory", shop.url))
        .bearer_auth("anything")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        response.json::<Value>().await.unwrap()["error"],
        "admin_disabled"
    );
}
