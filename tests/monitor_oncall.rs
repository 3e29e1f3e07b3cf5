//! On call end to end, on real processes: a shop is killed, its incident
//! pages level 1; nobody acknowledges, level 2 is paged after its delay
//! (a person's webhook and a team's PagerDuty service); an acknowledgement
//! through the signed link stops level 3; a tampered or reused link is
//! refused; the CLI resolves it and everyone paged is told. Receivers are
//! HTTP servers in the test; deadlines are generous (the timing targets
//! are the benchmark's).

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{client, poll_json, sqlite_db, Received, Shop};

fn to(received: &Received, name: &str) -> Vec<Value> {
    received
        .lock()
        .unwrap()
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, body)| body.clone())
        .collect()
}

/// Waits (15 s at most) for a body POSTed to `name` that `ok` accepts.
async fn first(received: &Received, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(body) = to(received, name).into_iter().find(|b| ok(b)) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "nothing for {name}: {:?}",
            received.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(receivers: &str) -> String {
    format!(
        r#"incident_quiet_s = 600
[oncall]
link_key = "a link key for the test run"
[[oncall.person]]
name = "ana"
webhook = "{receivers}/ana"
[[oncall.person]]
name = "ben"
webhook = "{receivers}/ben"
[[oncall.person]]
name = "cleo"
slack_webhook = "{receivers}/cleo"
[[oncall.channel]]
name = "ops"
pagerduty_routing_key = "0123456789abcdef0123456789abcdef"
pagerduty_events_url = "{receivers}/pagerduty"
[[oncall.policy]]
name = "shops"
[[oncall.policy.level]]
targets = ["person:ana"]
delay_s = 3
[[oncall.policy.level]]
targets = ["person:ben", "channel:ops"]
delay_s = 3
[[oncall.policy.level]]
targets = ["person:cleo"]
delay_s = 3
[[oncall.route]]
policy = "shops"
match = {{ alertname = "TargetDown" }}
[oncall.heartbeat]
url = "{receivers}/heartbeat"
every_s = 1
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_shop_pages_escalates_and_a_signed_link_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let (receivers, received) = support::json_receiver().await;
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let (_monitor, url) = support::monitor_watching(
        dir.path(),
        &config(&receivers),
        &format!("shop-1=http://{}", shop.addr()),
        None,
    )
    .await;
    // The shop is up: nobody is paged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        received
            .lock()
            .unwrap()
            .iter()
            .all(|(to, _)| to == "heartbeat"),
        "paged while the shop was up"
    );

    shop.signal("KILL");
    let killed = Instant::now();
    let page = first(&received, "ana", |b| b["kind"] == "trigger").await;
    let incident = page["incident"].as_i64().unwrap();
    assert_eq!(
        (page["level"].as_u64(), page["levels"].as_u64()),
        (Some(1), Some(3))
    );
    assert_eq!(page["severity"], "critical");
    let to_first_page = killed.elapsed();

    // Nobody acknowledges: level 2, a person and PagerDuty, after 3 s.
    let ben = first(&received, "ben", |b| b["kind"] == "trigger").await;
    assert_eq!(ben["level"], 2);
    let paged_ana_at = page["at_ms"].as_i64().unwrap();
    let escalated_after = ben["at_ms"].as_i64().unwrap() - paged_ana_at;
    assert!(
        (3_000..6_000).contains(&escalated_after),
        "level 2 came {escalated_after} ms after level 1 (delay 3 s)"
    );
    let pd = first(&received, "pagerduty", |b| b["event_action"] == "trigger").await;
    assert_pagerduty_trigger(&pd, incident);

    // Ben acknowledges with his link: a GET shows a button and changes
    // nothing; a tampered link is refused; the POST acknowledges, once.
    let link = ben["ack_url"]
        .as_str()
        .unwrap()
        .replace("http://127.0.0.1:8003", &url);
    let shown = client().get(&link).send().await.unwrap();
    assert_eq!(shown.status(), 200);
    assert!(shown.text().await.unwrap().contains("id=\"acknowledge\""));
    let tampered = format!("{}x", &link[..link.len() - 1]);
    let forged = client().post(&tampered).send().await.unwrap();
    assert_eq!(forged.status(), 403);
    let acked = client().post(&link).send().await.unwrap();
    assert_eq!(acked.status(), 200);
    assert!(acked.text().await.unwrap().contains("id=\"acknowledged\""));
    let again = client().post(&link).send().await.unwrap();
    assert_eq!(again.status(), 410);
    assert!(again.text().await.unwrap().contains("link_used"));
    // PagerDuty's incident is acknowledged too.
    first(&received, "pagerduty", |b| {
        b["event_action"] == "acknowledge" && b["dedup_key"] == pd["dedup_key"]
    })
    .await;

    // Level 3 is never paged: wait out its delay and then some.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        to(&received, "cleo").is_empty(),
        "level 3 paged after an ack"
    );

    // The timeline has the page, the escalation and the acknowledgement.
    let timeline = poll_json(
        &format!("{url}/api/incidents/{incident}"),
        Duration::from_secs(5),
        |v| actions(v).contains(&"acknowledge".to_string()),
    )
    .await;
    let seen = actions(&timeline);
    for action in ["page", "escalate", "acknowledge"] {
        assert!(
            seen.contains(&action.to_string()),
            "{action} missing: {seen:?}"
        );
    }
    let ack = timeline["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["data"]["action"] == "acknowledge")
        .unwrap();
    assert_eq!(
        (ack["data"]["by"].as_str(), ack["data"]["via"].as_str()),
        (Some("ben"), Some("link"))
    );

    // The CLI resolves it: everyone paged is told, PagerDuty resolves.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args([
            "incident",
            "resolve",
            &incident.to_string(),
            "--as",
            "ben",
            "--monitor",
            &url,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    first(&received, "ana", |b| b["kind"] == "resolved").await;
    first(&received, "ben", |b| b["kind"] == "resolved").await;
    first(&received, "pagerduty", |b| b["event_action"] == "resolve").await;
    // The postmortem times the response against the original outage's.
    let postmortem = client()
        .get(format!("{url}/api/incidents/{incident}/postmortem"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let response = postmortem
        .lines()
        .find(|l| l.starts_with("- **Response:**"))
        .unwrap_or_else(|| panic!("no response line: {postmortem}"));
    for part in [
        "first page",
        "escalated",
        "by ben (link)",
        "resolved",
        "15 min",
    ] {
        assert!(response.contains(part), "{part}: {response}");
    }
    // An acknowledgement of a resolved incident is refused, saying why.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args([
            "incident",
            "ack",
            &incident.to_string(),
            "--as",
            "ana",
            "--monitor",
            &url,
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("no escalation in progress"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("first page {to_first_page:?} after the kill");
    // The dead man's switch beat all along, about once a second.
    let beats = to(&received, "heartbeat");
    assert!(beats.len() >= 5, "{} heartbeats", beats.len());
    assert!(beats.iter().all(|b| b["status"] == "alive"));
}

fn actions(incident: &Value) -> Vec<String> {
    incident["timeline"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter_map(|e| e["data"]["action"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The fields PagerDuty's Events API v2 requires of a trigger, with their
/// types and allowed values (developer.pagerduty.com, "Send an Alert
/// Event").
fn assert_pagerduty_trigger(event: &Value, incident: i64) {
    assert_eq!(
        event["routing_key"].as_str().map(str::len),
        Some(32),
        "{event}"
    );
    assert_eq!(
        event["dedup_key"],
        format!("flashguard-incident-{incident}")
    );
    let payload = &event["payload"];
    let summary = payload["summary"].as_str().unwrap();
    assert!(!summary.is_empty() && summary.len() <= 1024);
    assert!(payload["source"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(
        ["critical", "error", "warning", "info"].contains(&payload["severity"].as_str().unwrap())
    );
    let timestamp = payload["timestamp"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(timestamp, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "{timestamp}"
    );
    assert!(payload["custom_details"].is_object());
    for link in event["links"].as_array().unwrap() {
        assert!(link["href"].as_str().unwrap().starts_with("http"));
        assert!(link["text"].is_string());
    }
}
