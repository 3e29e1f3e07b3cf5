//! The surge verdict on real traffic: a flash-crowd drill and then an
//! attack-like drill through the stack's gateway (which trusts the drill's
//! X-Forwarded-For, as `up` does by default). Each verdict must be right,
//! and reached within 10 s of its surge starting.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use support::stack::Up;
use support::{client, get_json, poll_json};

/// Seconds of ordinary traffic before each surge.
const CALM_S: u64 = 6;

const FLASH_CROWD: &str = r#"
name = "flash crowd"
availability_floor = 0.0

[[item]]
sku = "crowd-item"
stock = 100000
limit_per_customer = 2

[[phase]]
duration_s = 6
rate = 10

[[phase]]    # 15x: many new customers, each browsing and ordering once
duration_s = 10
rate = 150
"#;

const ATTACK: &str = r#"
name = "attack"
availability_floor = 0.0

[[item]]
sku = "quiet-item"
stock = 100000
limit_per_customer = 2

[[phase]]
duration_s = 16
rate = 10

[[attack]]    # five addresses, 400 requests/s to paths the shop lacks
start_s = 6
duration_s = 10
rate = 400
clients = 5
"#;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Runs the drill and returns the verdict it provoked and how long after
/// the surge's start (at the latest) it came.
async fn verdict_of(stack: &Up, name: &str, scenario: &str) -> (Value, i64) {
    let launched = now_ms();
    let mut drill = stack.drill(name, scenario);
    let verdict = poll_json(
        &format!("{}/api/verdict", stack.monitor),
        Duration::from_secs(25),
        |v| v["decided_ms"].as_i64().is_some_and(|at| at > launched),
    )
    .await;
    let surge_start = launched + CALM_S as i64 * 1000;
    let late_ms = verdict["decided_ms"].as_i64().unwrap() - surge_start;
    let exit = tokio::time::timeout(Duration::from_secs(60), drill.child.wait())
        .await
        .expect("the drill ends");
    assert!(exit.unwrap().success(), "the {name} drill failed");
    (verdict, late_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flash_crowd_and_an_attack_get_the_right_verdict_within_ten_seconds() {
    let stack = Up::start(2, 0, "").await;

    let (crowd, late_ms) = verdict_of(&stack, "crowd", FLASH_CROWD).await;
    assert_eq!(crowd["kind"], "flash_crowd", "{crowd}");
    assert!(
        late_ms <= 10_000,
        "verdict {late_ms} ms after the surge: {crowd}"
    );
    assert!(
        crowd["figures"]["distinct_clients"].as_f64().unwrap() > 100.0,
        "{crowd}"
    );
    eprintln!("flash crowd verdict {late_ms} ms after the surge: {crowd}");

    // The crowd leaves; the verdict ends before the attack begins.
    poll_json(
        &format!("{}/api/verdict", stack.monitor),
        Duration::from_secs(30),
        Value::is_null,
    )
    .await;

    let (attack, late_ms) = verdict_of(&stack, "attack", ATTACK).await;
    assert_eq!(attack["kind"], "suspected_attack", "{attack}");
    assert!(
        late_ms <= 10_000,
        "verdict {late_ms} ms after the surge: {attack}"
    );
    assert!(
        attack["attack_signals"].as_array().unwrap().len() >= 2,
        "{attack}"
    );
    eprintln!("attack verdict {late_ms} ms after the surge: {attack}");
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(stack.dir.path().join("attack/report.json")).unwrap(),
    )
    .unwrap();
    assert!(
        report["attack"]["sent"].as_u64().unwrap() > 1000,
        "{report}"
    );

    // The verdict is in the alert's annotations (as it fired: by now the
    // surge may be over), and on the incident's timeline.
    let incidents: Vec<Value> =
        get_json(&client(), &format!("{}/api/incidents", stack.monitor)).await;
    let id = incidents[0]["id"].as_i64().expect("an incident was opened");
    let incident: Value =
        get_json(&client(), &format!("{}/api/incidents/{id}", stack.monitor)).await;
    let timeline = incident["timeline"].as_array().unwrap();
    let verdicts: Vec<&str> = timeline
        .iter()
        .filter(|e| e["kind"] == "surge_verdict")
        .map(|e| e["data"]["kind"].as_str().unwrap_or_default())
        .collect();
    assert!(verdicts.contains(&"suspected_attack"), "{verdicts:?}");
    let fired = timeline
        .iter()
        .find(|e| {
            e["kind"] == "alert_firing"
                && e["subject"] == "TrafficSurge"
                && e["data"]["labels"]["verdict"] == "suspected_attack"
        })
        .expect("the attack's TrafficSurge alert fired");
    assert_eq!(
        fired["data"]["annotations"]["verdict"], "suspected attack",
        "{fired}"
    );
}
