//! Follows each gateway's admin event log (`GET /admin/events`): every
//! backend state change goes on the incident timeline with the gateway's
//! own timestamp, so "ejected after 240 ms" is measured where it happened.

use std::sync::Arc;
use std::time::Duration;

use flashguard_telemetry::EventKind;
use serde::Deserialize;
use serde_json::json;

use crate::config::GatewayAdmin;
use crate::incidents::Event;
use crate::monitor::Monitor;

#[derive(Debug, Deserialize)]
struct GatewayEvent {
    at_ms: i64,
    backend: String,
    state: String,
    #[serde(default)]
    reason: String,
}

/// The name the gateway records its waiting room's changes under.
const ROOM: &str = "waiting-room";

fn room_change(state: &str) -> &str {
    match state {
        "room_on" => "on",
        "room_off" => "off",
        "room_rate" => "rate changed",
        "sold_out" => "sold out",
        "sale_ended" => "sale ended",
        other => other,
    }
}

pub(crate) async fn follow(
    monitor: Arc<Monitor>,
    gateways: Vec<GatewayAdmin>,
    token: Option<String>,
    interval: Duration,
) {
    if gateways.is_empty() {
        return;
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap_or_default();
    // Resume after what an earlier run already recorded.
    let mut seen = monitor
        .incidents
        .last_event_ms("gateway")
        .await
        .unwrap_or(0);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let mut newest = seen;
        for gateway in &gateways {
            let url = format!("{}/admin/events", gateway.url.trim_end_matches('/'));
            let mut request = http.get(&url);
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            let events: Vec<GatewayEvent> = match request.send().await {
                Ok(response) if response.status().is_success() => {
                    response.json().await.unwrap_or_default()
                }
                Ok(response) => {
                    tracing::debug!(gateway = %gateway.name, status = %response.status(), "gateway events refused");
                    continue;
                }
                Err(err) => {
                    tracing::debug!(gateway = %gateway.name, %err, "gateway events unreachable");
                    continue;
                }
            };
            for event in events.into_iter().filter(|e| e.at_ms > seen) {
                newest = newest.max(event.at_ms);
                if event.backend == ROOM {
                    let summary = format!(
                        "{}: waiting room {}: {}",
                        gateway.name,
                        room_change(&event.state),
                        event.reason
                    );
                    let recorded = Event::new(
                        event.at_ms,
                        "gateway",
                        EventKind::WaitingRoom,
                        ROOM,
                        summary,
                        json!({ "gateway": gateway.name, "change": event.state, "reason": event.reason }),
                    );
                    if let Err(err) = monitor.incidents.record(recorded).await {
                        tracing::error!(%err, "recording a waiting-room event");
                    }
                    continue;
                }
                monitor.feed.backend_changed(&event.backend, &event.state);
                let summary = if event.reason.is_empty() {
                    format!(
                        "{}: backend {} is {}",
                        gateway.name, event.backend, event.state
                    )
                } else {
                    format!(
                        "{}: backend {} is {} ({})",
                        gateway.name, event.backend, event.state, event.reason
                    )
                };
                let recorded = Event::new(
                    event.at_ms,
                    "gateway",
                    EventKind::BackendState,
                    &event.backend,
                    summary,
                    json!({ "gateway": gateway.name, "state": event.state, "reason": event.reason }),
                );
                if let Err(err) = monitor.incidents.record(recorded).await {
                    tracing::error!(%err, "recording a gateway event");
                }
            }
        }
        seen = newest;
    }
}
