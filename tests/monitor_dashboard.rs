//! The live dashboard in a real browser: Debian's Chromium driven by
//! playwright-core (tests/dashboard/check.mjs) while a drill runs through
//! the stack. No console errors, every chart receives data, and a killed
//! shop shows as down, and a note added from the page lands on the
//! incident. The screenshot is kept in target/tmp.

mod support;

use std::process::Command;

use serde_json::Value;
use support::stack::Up;

const STEADY_SALE: &str = r#"
name = "steady sale for the dashboard"
availability_floor = 0.0

[[item]]
sku = "dashboard-item"
stock = 100000
limit_per_customer = 2

[[phase]]
duration_s = 45
rate = 30
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_charts_live_data_and_shows_a_killed_shop_down() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard/check.mjs");
    let modules = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard/node_modules");
    assert!(
        std::path::Path::new(modules).exists(),
        "run `npm ci --prefix tests/dashboard` first (scripts/test does)"
    );
    // The killed shop stays dead for 3 s: long enough for the gateway's
    // health checks to take it out even when no request hits it. The
    // monitor pages someone (at an address nobody answers), so the page's
    // Acknowledge button has an escalation to stop.
    let dir = tempfile::tempdir().unwrap();
    let monitor_config = dir.path().join("monitor.toml");
    std::fs::write(
        &monitor_config,
        "[oncall]\n[[oncall.person]]\nname = \"ana\"\nwebhook = \"http://127.0.0.1:9/\"\n\
         [[oncall.policy]]\nname = \"all\"\n[[oncall.policy.level]]\ntargets = [\"person:ana\"]\n",
    )
    .unwrap();
    let stack = Up::start(
        3,
        1,
        &format!(
            "restart_backoff_ms = 3000\nmax_restart_backoff_ms = 3000\nmonitor_config = \"{}\"",
            monitor_config.display()
        ),
    )
    .await;
    let _drill = stack.drill("steady", STEADY_SALE);
    let screenshot = format!("{}/dashboard.png", env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::remove_file(&screenshot);
    let dashboard = format!("{}/", stack.monitor);
    let control = stack.control.clone();
    let token = stack.token.clone();
    let shot = screenshot.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args([script, &dashboard, &control, "shop-2", &shot, &token])
            .output()
            .expect("node runs")
    })
    .await
    .unwrap();
    let seen = support::last_json_line(&output);
    assert_eq!(seen["consoleErrors"], serde_json::json!([]), "{seen}");
    let charts = seen["charts"].as_object().expect("charts were counted");
    assert_eq!(charts.len(), 5, "{seen}");
    for (chart, points) in charts {
        assert!(
            points.as_u64().unwrap_or(0) > 0,
            "{chart} got no data: {seen}"
        );
    }
    // This stack has no waiting room: the panel says so instead of zeros.
    assert_eq!(seen["room"], "none", "{seen}");
    assert_eq!(seen["before"], "up");
    assert!(
        matches!(seen["after"].as_str(), Some("down" | "ejected")),
        "{seen}"
    );
    assert_eq!(seen["note"], "added", "{seen}");
    assert_eq!(seen["ack"], "acknowledged by dashboard-tester", "{seen}");
    assert_eq!(seen["update"], "published", "{seen}");
    let incidents: Vec<Value> = support::get_json(
        &support::client(),
        &format!("{}/api/incidents", stack.monitor),
    )
    .await;
    let id = incidents[0]["id"]
        .as_i64()
        .expect("the kill opened an incident");
    let incident: Value = support::get_json(
        &support::client(),
        &format!("{}/api/incidents/{id}", stack.monitor),
    )
    .await;
    assert!(
        incident["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "note" && e["summary"] == "noted from the dashboard"),
        "{incident}"
    );
    assert!(
        incident["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| { e["data"]["action"] == "acknowledge" && e["data"]["via"] == "dashboard" }),
        "{incident}"
    );
    assert!(
        incident["timeline"].as_array().unwrap().iter().any(|e| {
            e["kind"] == "public_update" && e["data"]["body"] == "published from the dashboard"
        }),
        "{incident}"
    );
    let png = std::fs::read(&screenshot).expect("the screenshot was saved");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    eprintln!("dashboard screenshot: {screenshot}");
}
