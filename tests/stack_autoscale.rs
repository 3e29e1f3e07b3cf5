//! `flashguard up` with `[autoscale]`: load on one shop makes the stack add
//! a second, which the gateway then gives traffic; a sale about to open
//! brings the planned shops before any load.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::gateway::Load;
use support::stack::Up;

async fn backends(up: &Up) -> Vec<Value> {
    let listed = support::client()
        .get(format!("{}/admin/backends", up.gateway_admin))
        .bearer_auth(&up.token)
        .send()
        .await
        .expect("the gateway's admin API answers");
    listed.json().await.expect("a JSON list")
}

/// The added shop, once the gateway lists it up with `requests` answered.
async fn wait_for_added_shop(up: &Up, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let list = backends(up).await;
        if let Some(added) = list.iter().find(|b| {
            b["name"] == "shop-2" && b["state"] == "up" && b["requests"].as_u64() > Some(0)
        }) {
            return added.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no shop was added and served: {list:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_on_one_shop_adds_a_second_that_takes_traffic() {
    let up = Up::start(
        1,
        0,
        "demo = false\n[autoscale]\nmin_shops = 1\nmax_shops = 2\nstep_ms = 500\ndown_window_s = 600\n",
    )
    .await;
    let created = support::client()
        .put(format!("{}/admin/products/hot", up.storefront))
        .bearer_auth(&up.token)
        .json(&json!({ "name": "Hot", "price_cents": 100, "stock": 1_000_000 }))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    // Quiet: one shop stays one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backends(&up).await.len(), 1);

    let load = Load::start(&up.storefront, "hot", 64);
    let added = wait_for_added_shop(&up, Duration::from_secs(30)).await;
    let outcomes = load.stop().await;
    assert_eq!(added["pool"], "primary", "{added}");
    // The control API lists it (chaos can reach it).
    let parts: Vec<Value> = support::client()
        .get(format!("{}/parts", up.control))
        .bearer_auth(&up.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        parts
            .iter()
            .any(|p| p["name"] == "shop-2" && p["kind"] == "shop"),
        "{parts:?}"
    );
    // The monitor scrapes the new shop too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let targets: Vec<Value> =
            support::get_json(&support::client(), &format!("{}/api/targets", up.monitor)).await;
        if targets
            .iter()
            .any(|t| t["name"] == "shop-2" && t["up"] == true)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the monitor does not scrape shop-2: {targets:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let errors: Vec<_> = outcomes.iter().filter(|o| o.is_error()).collect();
    assert!(errors.is_empty(), "scaling up failed requests: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_sale_brings_the_planned_shops_before_any_load() {
    // The demo sale is open from the start: the planned two, at once.
    let up = Up::start(
        1,
        0,
        "demo = true\n[autoscale]\nmin_shops = 1\nmax_shops = 3\nplanned_shops = 2\nstep_ms = 500\n",
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = backends(&up).await;
        let up_now = list.iter().filter(|b| b["state"] == "up").count();
        if up_now == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not pre-scaled to 2: {list:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // And no further without load.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(backends(&up).await.len(), 2);
}
