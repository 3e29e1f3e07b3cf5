//! Malformed requests: each gets its documented 4xx JSON error, and nothing
//! in the store changes.

mod support;

use serde_json::{json, Value};
use support::{client, export, inventory, put_product, Shop, ADMIN_TOKEN};

struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: Option<&'static str>,
    key: Option<String>,
    admin: bool,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
}

fn order_case(
    name: &'static str,
    body: impl Into<Vec<u8>>,
    status: u16,
    error: &'static str,
) -> Case {
    Case {
        name,
        method: "POST",
        path: "/api/orders",
        content_type: Some("application/json"),
        key: Some("bad-input-key".into()),
        admin: false,
        body: body.into(),
        status,
        error,
    }
}

fn cases() -> Vec<Case> {
    let long_customer = "c".repeat(129);
    let huge = "x".repeat(20_000);
    vec![
        order_case("not json", "this is not json", 400, "malformed_body"),
        order_case(
            "truncated json",
            r#"{"sku":"hot","quantity":1"#,
            400,
            "malformed_body",
        ),
        order_case("empty body", "", 400, "malformed_body"),
        order_case("json array", "[1,2,3]", 422, "invalid_field"),
        order_case(
            "missing sku",
            r#"{"quantity":1,"customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "missing customer",
            r#"{"sku":"hot","quantity":1}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "quantity as string",
            r#"{"sku":"hot","quantity":"1","customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "quantity fractional",
            r#"{"sku":"hot","quantity":1.5,"customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "quantity zero",
            r#"{"sku":"hot","quantity":0,"customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "quantity negative",
            r#"{"sku":"hot","quantity":-3,"customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "quantity huge",
            r#"{"sku":"hot","quantity":1000000,"customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "quantity beyond i64",
            r#"{"sku":"hot","quantity":99999999999999999999,"customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "unknown field",
            r#"{"sku":"hot","quantity":1,"customer":"a","price":0}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "empty customer",
            r#"{"sku":"hot","quantity":1,"customer":"  "}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "overlong customer",
            format!(r#"{{"sku":"hot","quantity":1,"customer":"{long_customer}"}}"#),
            422,
            "invalid_field",
        ),
        order_case(
            "control char in customer",
            r#"{"sku":"hot","quantity":1,"customer":"a\u0000b"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "sku with slash",
            r#"{"sku":"../hot","quantity":1,"customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "null sku",
            r#"{"sku":null,"quantity":1,"customer":"a"}"#,
            422,
            "invalid_field",
        ),
        order_case(
            "oversized body",
            format!(r#"{{"sku":"hot","quantity":1,"customer":"{huge}"}}"#),
            413,
            "body_too_large",
        ),
        Case {
            key: None,
            ..order_case(
                "missing key",
                r#"{"sku":"hot","quantity":1,"customer":"a"}"#,
                400,
                "missing_idempotency_key",
            )
        },
        Case {
            key: Some("k".repeat(256)),
            ..order_case(
                "overlong key",
                r#"{"sku":"hot","quantity":1,"customer":"a"}"#,
                400,
                "invalid_idempotency_key",
            )
        },
        Case {
            key: Some("has space".into()),
            ..order_case(
                "key with space",
                r#"{"sku":"hot","quantity":1,"customer":"a"}"#,
                400,
                "invalid_idempotency_key",
            )
        },
        Case {
            content_type: Some("text/plain"),
            ..order_case(
                "wrong content type",
                r#"{"sku":"hot","quantity":1,"customer":"a"}"#,
                415,
                "unsupported_media_type",
            )
        },
        Case {
            content_type: None,
            ..order_case(
                "no content type",
                r#"{"sku":"hot","quantity":1,"customer":"a"}"#,
                415,
                "unsupported_media_type",
            )
        },
        Case {
            method: "GET",
            ..order_case("GET on orders", "", 405, "method_not_allowed")
        },
        Case {
            method: "DELETE",
            path: "/api/products/hot",
            ..order_case("DELETE a product", "", 405, "method_not_allowed")
        },
        Case {
            method: "PUT",
            path: "/api/orders/x",
            ..order_case("PUT an order", "{}", 405, "method_not_allowed")
        },
        Case {
            method: "GET",
            path: "/api/nothing-here",
            ..order_case("unknown route", "", 404, "not_found")
        },
        Case {
            method: "PUT",
            path: "/admin/products/hot",
            admin: true,
            ..order_case(
                "admin: negative stock",
                r#"{"name":"x","price_cents":1,"stock":-1}"#,
                422,
                "invalid_field",
            )
        },
        Case {
            method: "PUT",
            path: "/admin/products/hot",
            admin: true,
            ..order_case(
                "admin: bad time",
                r#"{"name":"x","price_cents":1,"stock":1,"sale_starts_at":"tomorrow"}"#,
                422,
                "invalid_field",
            )
        },
        Case {
            method: "PUT",
            path: "/admin/products/hot",
            admin: true,
            ..order_case(
                "admin: window backwards",
                r#"{"name":"x","price_cents":1,"stock":1,"sale_starts_at":"2030-01-02T00:00:00Z","sale_ends_at":"2030-01-01T00:00:00Z"}"#,
                422,
                "invalid_field",
            )
        },
        Case {
            method: "PUT",
            path: "/admin/products/hot",
            admin: true,
            ..order_case(
                "admin: unknown field",
                r#"{"name":"x","price_cents":1,"stock":1,"colour":"red"}"#,
                422,
                "invalid_field",
            )
        },
        Case {
            method: "PUT",
            path: "/admin/products/bad%20sku",
            admin: true,
            ..order_case(
                "admin: bad sku",
                r#"{"name":"x","price_cents":1,"stock":1}"#,
                422,
                "invalid_field",
            )
        },
        Case {
            method: "PUT",
            path: "/admin/products/hot",
            admin: true,
            ..order_case(
                "admin: a NUL in the name",
                r#"{"name":"bad\u0000name","price_cents":1,"stock":1}"#,
                422,
                "invalid_field",
            )
        },
        Case {
            method: "PUT",
            path: "/admin/products/hot",
            admin: true,
            ..order_case(
                "admin: a control character in the name",
                r#"{"name":"bell\u0007","price_cents":1,"stock":1}"#,
                422,
                "invalid_field",
            )
        },
        order_case(
            "a NUL in the customer",
            r#"{"sku":"hot","quantity":1,"customer":"a\u0000b"}"#,
            422,
            "invalid_field",
        ),
        Case {
            method: "PUT",
            path: "/admin/products/hot",
            admin: true,
            ..order_case(
                "admin: zero limit",
                r#"{"name":"x","price_cents":1,"stock":1,"limit_per_customer":0}"#,
                422,
                "invalid_field",
            )
        },
        Case {
            method: "PUT",
            path: "/admin/products/hot",
            admin: false,
            ..order_case(
                "admin: no token",
                r#"{"name":"x","price_cents":1,"stock":1}"#,
                401,
                "unauthorized",
            )
        },
    ]
}

#[tokio::test]
async fn sqlite_every_malformed_request_gets_its_error_and_changes_nothing() {
    let db = support::sqlite_db();
    every_malformed_request_gets_its_error_and_changes_nothing(&db.url).await;
}

/// Both stores: a text PostgreSQL cannot hold (a NUL) must be refused as
/// bad input, never reach the database.
#[tokio::test]
async fn postgres_every_malformed_request_gets_its_error_and_changes_nothing() {
    let url = support::pg_database().await;
    every_malformed_request_gets_its_error_and_changes_nothing(&url).await;
    support::drop_pg_database(&url).await;
}

async fn every_malformed_request_gets_its_error_and_changes_nothing(db_url: &str) {
    let shop = Shop::start(db_url).await;
    assert_eq!(
        put_product(
            &shop.url,
            "hot",
            json!({ "name": "Hot", "price_cents": 100, "stock": 10 })
        )
        .await
        .status(),
        201
    );
    let c = client();
    let ok = c
        .post(format!("{}/api/orders", shop.url))
        .header("Idempotency-Key", "good")
        .json(&json!({ "sku": "hot", "quantity": 1, "customer": "a" }))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    let orders_before = export(&shop.url).await;
    let inventory_before = inventory(&shop.url).await;
    let products_before: Value = support::get_json(&c, &format!("{}/api/products", shop.url)).await;

    let cases = cases();
    assert!(cases.len() >= 25, "the table holds at least 25 cases");
    let mut failures = Vec::new();
    for case in &cases {
        let method = reqwest::Method::from_bytes(case.method.as_bytes()).unwrap();
        let mut request = c
            .request(method, format!("{}{}", shop.url, case.path))
            .body(case.body.clone());
        if let Some(kind) = case.content_type {
            request = request.header("content-type", kind);
        }
        if let Some(key) = &case.key {
            request = request.header("Idempotency-Key", key);
        }
        if case.admin {
            request = request.bearer_auth(ADMIN_TOKEN);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let detail = body["detail"].as_str().unwrap_or_default();
        // A text field refused names itself.
        let names_field = !case.name.contains(" in the ")
            || ["name:", "customer:"].iter().any(|f| detail.starts_with(f));
        if status != case.status || body["error"] != case.error || detail.is_empty() || !names_field
        {
            failures.push(format!(
                "{}: expected {} {}, got {status} {text}",
                case.name, case.status, case.error
            ));
        }
        if content_type.as_deref() != Some("application/json") {
            failures.push(format!("{}: content type {content_type:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    assert_eq!(
        export(&shop.url).await,
        orders_before,
        "no order was added or changed"
    );
    assert_eq!(
        inventory(&shop.url).await,
        inventory_before,
        "no stock changed"
    );
    let products_after: Value = support::get_json(&c, &format!("{}/api/products", shop.url)).await;
    assert_eq!(products_after, products_before, "no product changed");
}
