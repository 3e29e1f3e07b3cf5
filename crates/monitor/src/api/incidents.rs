//! The incident API: `GET /api/incidents`, `GET /api/incidents/{id}`,
//! `POST /api/incidents/{id}/notes`, `GET /api/incidents/{id}/postmortem`,
//! and `POST /api/events` for the stack and the drill to put what they did
//! on the timeline. Writes need the admin token when one is set.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use crate::incidents::postmortem::{self, Evidence};
use crate::incidents::{Event, IncidentView};
use crate::monitor::Monitor;
use crate::rules::{increase, steps};
use flashguard_telemetry::unix_ms as now_ms;

type Shared = State<Arc<Monitor>>;

use flashguard_telemetry::json_error as error;
use flashguard_telemetry::EventKind;

fn failed(err: impl std::fmt::Display) -> Response {
    tracing::error!(%err, "incident file");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "incident_file_unavailable",
        &err.to_string(),
    )
}

pub(super) fn authorize(monitor: &Monitor, headers: &HeaderMap) -> Option<Response> {
    // Without a token (the default, on loopback) anyone who can reach the
    // monitor may write to the timeline.
    let expected = monitor.admin_token.as_deref()?;
    flashguard_telemetry::check_bearer(Some(expected), headers)
        .err()
        .map(|_| {
            error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send Authorization: Bearer <admin token>",
            )
        })
}

pub(crate) async fn list(State(monitor): Shared) -> Response {
    match monitor.incidents.list(now_ms()).await {
        Ok(list) => Json(list).into_response(),
        Err(err) => failed(err),
    }
}

fn unknown(id: i64) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "unknown_incident",
        &format!("no incident {id}"),
    )
}

pub(crate) async fn one(State(monitor): Shared, Path(id): Path<i64>) -> Response {
    match monitor.incidents.get(id, now_ms()).await {
        Ok(Some(incident)) => Json(incident).into_response(),
        Ok(None) => unknown(id),
        Err(err) => failed(err),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Note {
    text: String,
    #[serde(default)]
    author: Option<String>,
}

pub(crate) async fn note(
    State(monitor): Shared,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<Note>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = authorize(&monitor, &headers) {
        return refused;
    }
    let Json(note) = match body {
        Ok(note) => note,
        Err(rejection) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_note",
                &rejection.body_text(),
            )
        }
    };
    let text = note.text.trim();
    if text.is_empty() || text.len() > 4000 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_note",
            "text: must be 1 to 4000 characters",
        );
    }
    let author = note.author.unwrap_or_else(|| "on-call".into());
    if author.len() > 128 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_note",
            "author: at most 128 characters",
        );
    }
    match monitor.incidents.note(id, &author, text, now_ms()).await {
        Ok(Some(event)) => (StatusCode::CREATED, Json(event)).into_response(),
        Ok(None) => unknown(id),
        Err(err) => failed(err),
    }
}

pub(crate) async fn post_event(
    State(monitor): Shared,
    headers: HeaderMap,
    body: Result<Json<Event>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = authorize(&monitor, &headers) {
        return refused;
    }
    let Json(mut event) = match body {
        Ok(event) => event,
        Err(rejection) => {
            let detail = flashguard_telemetry::json_rejection_detail(&rejection);
            // Not a kind at all: say which kinds may be posted, not every
            // kind there is.
            let detail = if detail.starts_with("kind:") {
                Event::postable_kinds()
            } else {
                detail
            };
            return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", &detail);
        }
    };
    if let Some(problem) = event.refusal() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_event", &problem);
    }
    if event.at_ms == 0 {
        event.at_ms = now_ms();
    }
    tracing::info!(source = %event.source, kind = %event.kind, subject = %event.subject, summary = %event.summary, "event");
    match monitor.incidents.record(event).await {
        Ok(event) => (StatusCode::CREATED, Json(event)).into_response(),
        Err(err) => failed(err),
    }
}

pub(crate) async fn postmortem(State(monitor): Shared, Path(id): Path<i64>) -> Response {
    let now = now_ms();
    let incident = match monitor.incidents.get(id, now).await {
        Ok(Some(incident)) => incident,
        Ok(None) => return unknown(id),
        Err(err) => return failed(err),
    };
    let mut evidence = evidence(&monitor, &incident);
    let end = incident.resolved_ms.unwrap_or(now);
    let start = incident.opened_ms - 120_000;
    // A drill that ran through the incident reports once it ends.
    evidence.drill = match monitor.incidents.reports_after(start, end + 600_000).await {
        Ok(reports) => reports
            .into_iter()
            .rev()
            .find(|r| {
                let began = r.data["started_ms"].as_i64().unwrap_or(i64::MAX);
                let ended = r.data["ended_ms"].as_i64().unwrap_or(0);
                began <= end && ended >= incident.opened_ms
            })
            .map(|r| r.data),
        Err(err) => return failed(err),
    };
    let markdown = postmortem::render(&incident, &evidence);
    ([("content-type", "text/markdown; charset=utf-8")], markdown).into_response()
}

/// The gateway's and host's figures over the incident's window, from the
/// history (empty once it has aged out of the retention).
fn evidence(monitor: &Monitor, incident: &IncidentView) -> Evidence {
    let end = incident.resolved_ms.unwrap_or_else(now_ms);
    let start = incident.opened_ms - 60_000;
    let store = monitor.store();
    let total = |metric: &str, matchers: &[(String, String)]| -> f64 {
        store
            .range(metric, matchers, start, end)
            .iter()
            .map(|s| increase(&s.points))
            // An empty f64 sum is -0.0, which would print as "-0".
            .sum::<f64>()
            .max(0.0)
    };
    let server_errors = [("status".to_string(), "5*".to_string())];
    // Requests shed in each second, across the gateway and the shops.
    let mut shed_by_second: std::collections::BTreeMap<i64, f64> = Default::default();
    for metric in ["gateway_shed_total", "shop_requests_shed_total"] {
        for series in store.range(metric, &[], start, end) {
            for (at, step, seconds) in steps(&series.points) {
                *shed_by_second.entry(at / 1000).or_default() += step / seconds.max(0.001);
            }
        }
    }
    let peak_rate = store
        .range("gateway_traffic_requests_per_second", &[], start, end)
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    let primary_shops = store
        .range(
            "gateway_backend_state",
            &[
                ("pool".to_string(), "primary".to_string()),
                ("state".to_string(), "up".to_string()),
            ],
            start,
            end,
        )
        .len();
    // Seconds the CPU alert fired, from its firing and resolving events.
    let mut cpu_saturated_s = 0.0;
    let mut since = None;
    for event in &incident.timeline {
        if event.subject != "HostCpuSaturated" {
            continue;
        }
        match event.kind {
            EventKind::AlertFiring => since = Some(event.at_ms),
            EventKind::AlertResolved => {
                if let Some(from) = since.take() {
                    cpu_saturated_s += (event.at_ms - from) as f64 / 1000.0;
                }
            }
            _ => {}
        }
    }
    if let Some(from) = since {
        cpu_saturated_s += (end - from).max(0) as f64 / 1000.0;
    }
    let gateway_requests = total("gateway_requests_total", &[]);
    Evidence {
        drill: None,
        behind_gateway: gateway_requests > 0.0
            || incident.timeline.iter().any(|e| e.source == "gateway"),
        gateway_requests,
        gateway_server_errors: total("gateway_requests_total", &server_errors),
        shed: total("gateway_shed_total", &[]) + total("shop_requests_shed_total", &[]),
        cpu_saturated_s,
        peak_shed_rate: shed_by_second.values().copied().fold(0.0, f64::max),
        shedding_s: shed_by_second.values().filter(|v| **v > 0.0).count() as f64,
        peak_rate,
        primary_shops,
        plan: monitor.capacity_plan,
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PublicUpdate {
    status: crate::status_page::Stage,
    body: String,
    /// The incident's public name (its internal title is not shown);
    /// the latest given is used.
    #[serde(default)]
    title: Option<String>,
}

/// `POST /api/incidents/{id}/updates`: a public update for the status
/// page; on the timeline, and on the page within a collection.
pub(crate) async fn public_update(
    State(monitor): Shared,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<PublicUpdate>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = authorize(&monitor, &headers) {
        return refused;
    }
    let Json(update) = match body {
        Ok(update) => update,
        Err(rejection) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_update",
                &rejection.body_text(),
            )
        }
    };
    let text = update.body.trim();
    if text.is_empty() || text.len() > 2000 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_update",
            "body: 1 to 2000 characters",
        );
    }
    if update
        .title
        .as_deref()
        .is_some_and(|t| t.trim().is_empty() || t.len() > 200)
    {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_update",
            "title: 1 to 200 characters",
        );
    }
    match monitor.incidents.get(id, now_ms()).await {
        Ok(Some(_)) => {}
        Ok(None) => return unknown(id),
        Err(err) => return failed(err),
    }
    let event = Event::new(
        now_ms(),
        "person",
        EventKind::PublicUpdate,
        "status page",
        format!(
            "public update ({}): {text}",
            serde_json::json!(update.status).as_str().unwrap_or("")
        ),
        serde_json::json!({
            "incident": id,
            "status": update.status,
            "body": text,
            "title": update.title,
        }),
    );
    match monitor.incidents.record_on(id, event).await {
        Ok(event) => {
            monitor.status_changed.notify_one();
            (StatusCode::CREATED, Json(event)).into_response()
        }
        Err(err) => failed(err),
    }
}
