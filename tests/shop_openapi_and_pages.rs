//! The OpenAPI document matches the server, and the storefront works the way
//! a person uses it: without JavaScript, form post, redirect, confirmation.

mod support;

use serde_json::{json, Value};
use support::{client, get_text, put_product, Shop};

#[tokio::test]
async fn every_documented_operation_is_served_and_every_route_documented() {
    let db = support::sqlite_db();
    let shop = Shop::start(&db.url).await;
    let c = client();
    let doc: Value = support::get_json(&c, &format!("{}/api/openapi.json", shop.url)).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let concrete = path.replace("{sku}", "demo").replace("{id}", "nope");
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = c
                .request(method.clone(), format!("{}{concrete}", shop.url))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            // The route exists for that method (not the fallback's
            // `not_found`, not 405), and the status it gave is documented.
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            let error = serde_json::from_str::<Value>(&body)
                .ok()
                .map(|v| v["error"].clone());
            assert_ne!(
                error,
                Some(json!("not_found")),
                "{method} {path} is documented but not routed"
            );
            assert!(
                operation["responses"].get(status.to_string()).is_some(),
                "{method} {path} answered {status}, which the document does not list: {body}"
            );
        }
    }
    assert_eq!(
        operations, 15,
        "a route was added or removed: update openapi.json and this count"
    );
    let order_codes = paths["/api/orders"]["post"]["responses"]
        .as_object()
        .unwrap();
    for status in [
        "201", "400", "404", "409", "413", "415", "422", "429", "503",
    ] {
        assert!(
            order_codes.contains_key(status),
            "POST /api/orders documents {status}"
        );
    }
}

#[tokio::test]
async fn a_customer_buys_through_the_pages_without_javascript() {
    let db = support::sqlite_db();
    let shop = Shop::start(&db.url).await;
    put_product(
        &shop.url,
        "lamp",
        json!({ "name": "Desk lamp", "price_cents": 2599, "stock": 1 }),
    )
    .await;
    put_product(&shop.url, "soon", json!({ "name": "Soon", "price_cents": 100, "stock": 1, "sale_starts_at": "2999-01-01T00:00:00Z" })).await;
    let c = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let index = get_text(&c, &format!("{}/", shop.url)).await;
    assert!(
        index.contains("Desk lamp") && index.contains("$25.99") && index.contains("1 of 1 left")
    );
    assert!(
        index.contains("Sale opens in"),
        "the upcoming sale shows a countdown"
    );

    let page = get_text(&c, &format!("{}/products/lamp", shop.url)).await;
    let key_at = page
        .find("name=\"idempotency_key\" value=\"")
        .expect("the form carries its own key")
        + 30;
    let key = &page[key_at..key_at + 36];
    let form = [
        ("idempotency_key", key),
        ("customer", "pat@example.com"),
        ("quantity", "1"),
    ];
    let bought = c
        .post(format!("{}/products/lamp/buy", shop.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(bought.status(), 303);
    let location = bought.headers()["location"].to_str().unwrap().to_string();
    assert!(location.starts_with("/orders/"));
    // A double submit of the same form goes to the same order.
    let again = c
        .post(format!("{}/products/lamp/buy", shop.url))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(again.headers()["location"].to_str().unwrap(), location);
    let confirmation = c
        .get(format!("{}{location}", shop.url))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmation.status(), 200);
    assert!(confirmation
        .text()
        .await
        .unwrap()
        .contains("your order is confirmed"));

    let sold_out_page = get_text(&c, &format!("{}/products/lamp", shop.url)).await;
    assert!(sold_out_page.contains("Sold out"));
    assert!(
        !sold_out_page.contains("<form"),
        "no buy button once sold out"
    );
    let late = [
        ("idempotency_key", "another-key"),
        ("customer", "sam"),
        ("quantity", "1"),
    ];
    let refused = c
        .post(format!("{}/products/lamp/buy", shop.url))
        .form(&late)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
    assert!(
        refused.text().await.unwrap().contains("Sold out"),
        "a friendly sold-out page"
    );
}
