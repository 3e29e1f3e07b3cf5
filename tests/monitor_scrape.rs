//! The monitor scraping real parts of this repo, and a target that serves
//! something that is not a metrics page.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{client, get_text, poll_json, sqlite_db, Part, Shop};

async fn poll(url: &str, ok: impl Fn(&Value) -> bool) -> Value {
    poll_json(url, Duration::from_secs(15), ok).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_a_shop_and_the_host_and_explains_a_bad_target() {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    // Something that answers 200 with a web page, not metrics.
    let junk = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let junk_addr = junk.local_addr().unwrap();
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(|| async { "<html>hello</html>" }),
        );
        axum::serve(junk, app).await.unwrap();
    });
    // A webhook receiver that refuses its first delivery, then keeps them.
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_url = format!("http://{}/hook", hook.local_addr().unwrap());
    let kept = std::sync::Arc::clone(&received);
    let refused_once = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    tokio::spawn(async move {
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let (kept, refused_once) = (kept.clone(), refused_once.clone());
                async move {
                    if !refused_once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    kept.lock().unwrap().push(body);
                    axum::http::StatusCode::OK
                }
            }),
        );
        axum::serve(hook, app).await.unwrap();
    });
    let shop_target = format!("shop-1={}", shop.url);
    let junk_target = format!("junk=http://{junk_addr}");
    let rules = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        rules.path(),
        "[[rule]]\nname = \"TargetDown\"\nmetric = \"up\"\nop = \"<\"\nthreshold = 1\n\
         annotations = { summary = \"{{ $labels.target }} is down\" }\n",
    )
    .unwrap();
    let rules_path = rules.path().display().to_string();
    let mut monitor = Part::launch(
        &[
            "monitor",
            "--webhook",
            &hook_url,
            "--rules",
            &rules_path,
            "--listen",
            "127.0.0.1:0",
            "--interval-ms",
            "200",
            "--target",
            &shop_target,
            "--target",
            &junk_target,
        ],
        None,
    );
    let url = monitor.expect_line("listening on ").await;

    let up = poll(&format!("{url}/api/query?metric=up&target=shop-1"), |v| {
        v[0]["points"][0][1] == 1.0
    })
    .await;
    assert_eq!(up.as_array().unwrap().len(), 1);
    let series = poll(
        &format!("{url}/api/query?metric=shop_http_requests_total"),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert_eq!(series[0]["labels"]["target"], "shop-1");
    // A templated route puts braces in a label value; the shop must stay
    // readable (a parser that stops at the first `}` refused every scrape).
    let _ = client()
        .get(format!("{}/api/products/no-such-sku", shop.url))
        .send()
        .await
        .unwrap();
    let templated = poll(
        &format!(
            "{url}/api/query?metric=shop_http_requests_total&route=%2Fapi%2Fproducts%2F%7Bsku%7D"
        ),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    assert_eq!(templated[0]["labels"]["route"], "/api/products/{sku}");
    let still_up = poll(&format!("{url}/api/query?metric=up&target=shop-1"), |v| {
        v[0]["points"][0][1] == 1.0
    })
    .await;
    assert_eq!(still_up.as_array().unwrap().len(), 1);
    poll(
        &format!("{url}/api/query?metric=shop_http_request_duration_seconds_bucket&le=%2BInf"),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let memory = poll(
        &format!("{url}/api/query?metric=host_memory_available_bytes"),
        |v| v[0]["points"][0][1].as_f64().is_some_and(|m| m > 0.0),
    )
    .await;
    assert!(memory[0]["points"][0][1].as_f64().unwrap() > 1e6);
    poll(
        &format!("{url}/api/query?metric=host_cpu_usage_ratio"),
        |v| v[0]["points"][0][1].is_number(),
    )
    .await;

    let targets = poll(&format!("{url}/api/targets"), |v| {
        v.as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let junk = targets
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "junk")
        .unwrap();
    assert_eq!(junk["up"], false);
    assert!(
        junk["reason"].as_str().unwrap().contains("line 1"),
        "{junk}"
    );
    let down = poll(&format!("{url}/api/query?metric=up&target=junk"), |v| {
        v[0]["points"][0][1] == 0.0
    })
    .await;
    assert_eq!(down.as_array().unwrap().len(), 1);

    let range = poll(
        &format!("{url}/api/query_range?metric=up&target=shop-1"),
        |v| v[0]["points"].as_array().is_some_and(|p| p.len() >= 3),
    )
    .await;
    assert!(range[0]["points"].as_array().unwrap().len() >= 3);
    let bad = client()
        .get(format!("{url}/api/query_range?metric=up&start=yesterday"))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let missing = client()
        .get(format!("{url}/api/query"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let metrics = get_text(&client(), &format!("{url}/metrics")).await;
    assert!(metrics.contains("monitor_scrapes_total"), "{metrics}");
    assert!(
        metrics.contains("monitor_rule_evaluations_total"),
        "{metrics}"
    );

    // The junk target is down: its alert fires; the shop has none.
    let alerts = poll(&format!("{url}/api/alerts"), |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x["state"] == "firing"))
    })
    .await;
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["annotations"]["summary"], "junk is down");

    // The webhook got the Alertmanager payload, after one refused try.
    let deadline = Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the webhook never got the alert");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let payload = received.lock().unwrap()[0].clone();
    assert_eq!(payload["version"], "4");
    assert_eq!(payload["status"], "firing");
    assert_eq!(payload["alerts"][0]["labels"]["alertname"], "TargetDown");
    assert_eq!(payload["alerts"][0]["labels"]["target"], "junk");
    assert_eq!(payload["alerts"][0]["status"], "firing");
    let metrics = get_text(&client(), &format!("{url}/metrics")).await;
    assert!(
        metrics.contains("monitor_notifications_total{receiver="),
        "{metrics}"
    );
}

#[test]
fn exported_rules_pass_promtool() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args(["monitor", "--export-rules"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), &output.stdout).unwrap();
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(file.path())
        .output()
        .expect("promtool is installed (.ci/run installs the prometheus package)");
    let said = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    // Every rule exported is one promtool accepts, the defaults all there.
    let exported = String::from_utf8_lossy(&output.stdout)
        .matches("alert:")
        .count();
    assert!(exported >= 14, "{exported} rules exported");
    assert!(
        said.contains(&format!("SUCCESS: {exported} rules found")),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_added_through_the_api_are_scraped_and_bad_ones_refused() {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let dir = tempfile::tempdir().unwrap();
    let incidents = dir.path().join("incidents.sqlite").display().to_string();
    let mut monitor = Part::launch(
        &[
            "monitor",
            "--listen",
            "127.0.0.1:0",
            "--interval-ms",
            "200",
            "--incidents-db",
            &incidents,
            "--target",
            &format!("configured={}", shop.url),
        ],
        Some("a-token"),
    );
    let url = monitor.expect_line("listening on ").await;
    let http = client();
    let add = |body: Value, token: &'static str| {
        http.post(format!("{url}/api/targets"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    // Without the token, nothing changes.
    let refused = add(
        serde_json::json!({ "name": "added", "url": shop.url }),
        "wrong",
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 401);
    // Bad input names the field and changes nothing.
    let bad = add(
        serde_json::json!({ "name": "no spaces", "url": shop.url }),
        "a-token",
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("name:"));
    let bad = add(
        serde_json::json!({ "name": "x", "url": "ftp://x" }),
        "a-token",
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 422);
    // A configured name is taken (once the first tick has scraped it).
    poll(&format!("{url}/api/targets"), |t| {
        t.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let taken = add(
        serde_json::json!({ "name": "configured", "url": shop.url }),
        "a-token",
    )
    .await
    .unwrap();
    assert_eq!(taken.status(), 409);
    // Added: scraped from the next tick.
    let added = add(
        serde_json::json!({ "name": "added", "url": shop.url }),
        "a-token",
    )
    .await
    .unwrap();
    assert_eq!(added.status(), 201);
    let targets = poll(&format!("{url}/api/targets"), |t| {
        t.as_array()
            .is_some_and(|a| a.iter().any(|t| t["name"] == "added" && t["up"] == true))
    })
    .await;
    assert_eq!(targets.as_array().unwrap().len(), 2, "{targets}");
    // Removed: gone from the next tick; removing it again is a 404.
    let remove = || {
        http.delete(format!("{url}/api/targets/added"))
            .bearer_auth("a-token")
            .send()
    };
    assert_eq!(remove().await.unwrap().status(), 204);
    poll(&format!("{url}/api/targets"), |t| {
        t.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    assert_eq!(remove().await.unwrap().status(), 404);
}
