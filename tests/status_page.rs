//! The public status page under `flashguard up`: a maintenance window the
//! monitor knows reaches the page and, through the gateway, the
//! storefront's banner (a client cannot forge it); every shop killed, the
//! gateway's `/status` still answers and shows a major outage; a public
//! update posted to the monitor's API appears on the page, in the Atom
//! feed and in the Statuspage-shaped summary; the page renders in
//! Chromium, with no script to fail. The on-call is paged for the dead
//! shops behind the gateway.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::stack::Up;
use support::{client, poll_json};

async fn text(url: &str) -> String {
    client()
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_shop_dead_the_gateway_shows_the_outage_and_the_public_updates() {
    // Killed shops stay dead for the whole test. The monitor knows of a
    // maintenance of the checkout, now, and pages ana.
    let (receivers, received) = support::json_receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let monitor_config = dir.path().join("monitor.toml");
    let at = |offset: i64| {
        (time::OffsetDateTime::now_utc() + time::Duration::hours(offset))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    std::fs::write(
        &monitor_config,
        format!(
            "[status]\n[[status.maintenance]]\nname = \"Payment provider upgrade\"\n\
             from = \"{}\"\nto = \"{}\"\ncomponents = [\"checkout\"]\n\
             [oncall]\n[[oncall.person]]\nname = \"ana\"\nwebhook = \"{receivers}/ana\"\n\
             [[oncall.policy]]\nname = \"all\"\n[[oncall.policy.level]]\ntargets = [\"person:ana\"]\n",
            at(-1),
            at(1)
        ),
    )
    .unwrap();
    let stack = Up::start(
        2,
        1,
        &format!(
            "restart_backoff_ms = 120000\nmax_restart_backoff_ms = 120000\nmonitor_config = \"{}\"",
            monitor_config.display()
        ),
    )
    .await;
    let status = format!("{}/status.json", stack.storefront);
    let maintained = poll_json(&status, Duration::from_secs(10), |v| {
        v["status"]["indicator"] == "maintenance"
    })
    .await;
    let state = |v: &Value, name: &str| {
        v["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .map(|c| c["status"].clone())
    };
    assert_eq!(
        state(&maintained, "checkout"),
        Some(json!("under_maintenance"))
    );
    assert_eq!(state(&maintained, "storefront"), Some(json!("operational")));
    assert_eq!(
        maintained["scheduled_maintenances"][0]["name"],
        "Payment provider upgrade"
    );
    // The storefront's pages say so, with a link to the status page; a
    // client's own Flashguard-Status is not passed on.
    let home = client()
        .get(format!("{}/", stack.storefront))
        .header("flashguard-status", "major_outage")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(home.contains("id=\"status-banner\""), "{home}");
    assert!(home.contains("under maintenance"), "{home}");
    assert!(!home.contains("major outage"), "{home}");
    assert!(home.contains("href=\"/status\""));

    // A person sets the sale's state (as they confirm one when automatic
    // states are held); it is on the page within a push.
    let set = client()
        .put(format!("{}/api/status/components/sale", stack.monitor))
        .bearer_auth(&stack.token)
        .json(&json!({ "status": "degraded_performance", "description": "Checkout queues are long." }))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    let unknown = client()
        .put(format!("{}/api/status/components/kitchen", stack.monitor))
        .bearer_auth(&stack.token)
        .json(&json!({ "status": "major_outage" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let set_shown = poll_json(&status, Duration::from_secs(5), |v| {
        state(v, "sale") == Some(json!("degraded_performance"))
    })
    .await;
    assert_eq!(
        state(&set_shown, "checkout"),
        Some(json!("under_maintenance"))
    );
    let monitor_view: Value =
        support::get_json(&client(), &format!("{}/api/status", stack.monitor)).await;
    assert_eq!(
        monitor_view["set_by_people"][0]["name"], "sale",
        "{monitor_view}"
    );

    for part in ["shop-1", "shop-2", "backup-1"] {
        let killed = client()
            .post(format!("{}/parts/{part}/kill", stack.control))
            .bearer_auth(&stack.token)
            .send()
            .await
            .unwrap();
        assert!(killed.status().is_success(), "killing {part}");
    }
    let down = poll_json(&status, Duration::from_secs(15), |v| {
        v["status"]["indicator"] == "critical"
    })
    .await;
    // The shops behind the gateway died: the on-call was paged.
    let paged_by = Instant::now() + Duration::from_secs(15);
    while !received
        .lock()
        .unwrap()
        .iter()
        .any(|(to, page)| to == "ana" && page["kind"] == "trigger")
    {
        assert!(Instant::now() < paged_by, "ana was never paged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for component in ["storefront", "checkout", "sale"] {
        let shown = down["components"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == component)
            .unwrap_or_else(|| panic!("no {component}: {down}"));
        assert_eq!(shown["status"], "major_outage", "{down}");
    }

    // The kill opened an incident; the on-call tells customers.
    let incidents = poll_json(
        &format!("{}/api/incidents", stack.monitor),
        Duration::from_secs(15),
        |v| v.as_array().is_some_and(|l| !l.is_empty()),
    )
    .await;
    let id = incidents[0]["id"].as_i64().unwrap();
    let body = "We know the shop is unreachable and are bringing it back.";
    let posted = client()
        .post(format!("{}/api/incidents/{id}/updates", stack.monitor))
        .bearer_auth(&stack.token)
        .json(&json!({ "status": "identified", "body": body, "title": "The shop is unavailable" }))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 201);
    // A bad update is refused naming the field, and changes nothing.
    let bad = client()
        .post(format!("{}/api/incidents/{id}/updates", stack.monitor))
        .bearer_auth(&stack.token)
        .json(&json!({ "status": "on_fire", "body": "x" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);

    let posted_at = Instant::now();
    let page = loop {
        let page = text(&format!("{}/status", stack.storefront)).await;
        if page.contains(body) {
            break page;
        }
        assert!(
            posted_at.elapsed() < Duration::from_secs(10),
            "the update never reached the page: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("the update reached the page in {:?}", posted_at.elapsed());
    assert!(page.contains("The shop is unavailable"));
    assert!(page.contains("data-indicator=\"critical\""));
    assert!(!page.contains("on_fire"));
    assert!(!page.contains("<script"), "the page works without a script");

    let feed = text(&format!("{}/status/feed.atom", stack.storefront)).await;
    assert!(feed.starts_with("<?xml"), "{feed}");
    assert!(
        feed.contains("<title>Identified: The shop is unavailable</title>"),
        "{feed}"
    );
    assert!(feed.contains(body));

    let summary: Value = support::get_json(
        &client(),
        &format!("{}/api/v2/summary.json", stack.storefront),
    )
    .await;
    assert_eq!(summary["status"]["indicator"], "critical");
    assert_eq!(summary["incidents"][0]["status"], "identified");
    assert_eq!(summary["incidents"][0]["incident_updates"][0]["body"], body);
    assert!(summary["components"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == "storefront" && c["status"] == "major_outage"));

    // A real browser renders it.
    let dom = support::chromium_dom(&format!("{}/status", stack.storefront));
    assert!(dom.contains("data-indicator=\"critical\""), "{dom}");
    assert!(dom.contains(body));
}

/// `[status] listen`: the page apart from customers' traffic, answering
/// only its own paths; the monitor's word, pushed by hand here, shows on
/// it; a word the page cannot show is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_has_its_own_address_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "[status]\ntitle = \"Sneaker Shop\"\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let backend = support::gateway::echo_backend().await;
    let mut gateway = support::gateway::Gateway::start(&[
        "--config",
        &config.display().to_string(),
        "--backend",
        &format!("shop-1={backend}"),
    ])
    .await;
    let own = gateway.part.expect_line("status on ").await;
    let page = text(&format!("{own}/status")).await;
    assert!(page.contains("<h1>Sneaker Shop</h1>"), "{page}");
    let elsewhere = client()
        .get(format!("{own}/api/products"))
        .send()
        .await
        .unwrap();
    assert_eq!(elsewhere.status(), 404, "only the status page lives there");

    let push = |body: Value| {
        client()
            .put(format!("{}/admin/status", gateway.admin_url))
            .bearer_auth(support::ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let refused = push(json!({ "components": [{ "name": "kitchen", "status": "major_outage" }] }))
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let accepted =
        push(json!({ "components": [{ "name": "checkout", "status": "partial_outage" }] }))
            .await
            .unwrap();
    assert_eq!(accepted.status(), 204);
    let summary: Value = support::get_json(&client(), &format!("{own}/api/v2/summary.json")).await;
    assert_eq!(summary["status"]["indicator"], "major", "{summary}");
    assert_eq!(summary["page"]["name"], "Sneaker Shop");
}
