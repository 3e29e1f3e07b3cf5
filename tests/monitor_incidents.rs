//! Incidents: opened by the first firing alert, written to SQLite, noted
//! through the API, still there (and still open) after the monitor is
//! restarted; bad notes and events are refused and change nothing.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{client, get_json, poll_json, Part, ADMIN_TOKEN};

async fn monitor(dir: &std::path::Path) -> (Part, String) {
    // A quiet period longer than the test: the incident stays open.
    // Nothing listens on port 1: TargetDown fires.
    support::monitor_watching(
        dir,
        "incident_quiet_s = 600\n",
        "ghost=http://127.0.0.1:1",
        Some(ADMIN_TOKEN),
    )
    .await
}

async fn post(url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = client().post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

fn kinds(incident: &Value) -> Vec<String> {
    incident["timeline"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| e["kind"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incident_and_its_notes_survive_a_monitor_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, url) = monitor(dir.path()).await;
    let list = poll_json(
        &format!("{url}/api/incidents"),
        Duration::from_secs(15),
        |v| v.as_array().is_some_and(|l| !l.is_empty()),
    )
    .await;
    let id = list[0]["id"].as_i64().unwrap();
    assert_eq!(list[0]["status"], "open");
    assert!(
        list[0]["title"].as_str().unwrap().starts_with("TargetDown"),
        "{list}"
    );

    // Writes need the token; bad ones are refused naming the field.
    let notes = format!("{url}/api/incidents/{id}/notes");
    let (status, _) = post(&notes, None, json!({ "text": "looking" })).await;
    assert_eq!(status, 401);
    let (status, body) = post(&notes, Some(ADMIN_TOKEN), json!({ "text": "  " })).await;
    assert_eq!(status, 422);
    assert!(
        body["detail"].as_str().unwrap().starts_with("text:"),
        "{body}"
    );
    let (status, _) = post(
        &format!("{url}/api/incidents/999/notes"),
        Some(ADMIN_TOKEN),
        json!({ "text": "x" }),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = post(
        &format!("{url}/api/events"),
        Some(ADMIN_TOKEN),
        json!({ "source": "stack", "kind": "explode", "summary": "boom" }),
    )
    .await;
    assert_eq!(status, 422);
    assert!(
        body["detail"].as_str().unwrap().starts_with("kind:"),
        "{body}"
    );

    let (status, _) = post(
        &notes,
        Some(ADMIN_TOKEN),
        json!({ "text": "ghost is a decommissioned host", "author": "ana" }),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = post(
        &format!("{url}/api/events"),
        Some(ADMIN_TOKEN),
        json!({ "source": "stack", "kind": "part_exited", "subject": "ghost",
                "summary": "ghost killed by SIGKILL",
                "data": { "cause": "killed by SIGKILL", "signal": "SIGKILL" } }),
    )
    .await;
    assert_eq!(status, 201);
    let before: Value = get_json(&client(), &format!("{url}/api/incidents/{id}")).await;
    let seen = kinds(&before);
    for kind in ["incident_opened", "alert_firing", "note", "part_exited"] {
        assert!(seen.contains(&kind.to_string()), "{kind} missing: {seen:?}");
    }
    assert!(!seen.contains(&"explode".to_string()));

    first.signal("TERM");
    let exit = tokio::time::timeout(Duration::from_secs(10), first.child.wait())
        .await
        .expect("the monitor stops on SIGTERM");
    assert!(exit.unwrap().success());

    // The same file: the same incident, still open, with everything on it;
    // the alert firing again joins it rather than opening another.
    let (_second, url) = monitor(dir.path()).await;
    let after = poll_json(
        &format!("{url}/api/incidents/{id}"),
        Duration::from_secs(15),
        |v| {
            v["timeline"]
                .as_array()
                .is_some_and(|t| t.iter().filter(|e| e["kind"] == "alert_firing").count() >= 2)
        },
    )
    .await;
    assert_eq!(after["status"], "open");
    assert_eq!(after["opened_ms"], before["opened_ms"]);
    let note = after["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "note")
        .expect("the note survived");
    assert_eq!(note["summary"], "ghost is a decommissioned host");
    assert_eq!(note["subject"], "ana");
    let list: Vec<Value> = get_json(&client(), &format!("{url}/api/incidents")).await;
    assert_eq!(list.len(), 1, "no second incident: {list:?}");

    let postmortem = client()
        .get(format!("{url}/api/incidents/{id}/postmortem"))
        .send()
        .await
        .unwrap();
    assert!(postmortem.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/markdown"));
    let text = postmortem.text().await.unwrap();
    for needed in [
        "## Issue Summary",
        "## Timeline",
        "ghost is a decommissioned host",
        "ghost killed by SIGKILL",
        "## Corrective and Preventative Measures",
    ] {
        assert!(text.contains(needed), "{needed} missing:\n{text}");
    }
}
