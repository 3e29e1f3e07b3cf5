//! On call through the API: `POST /api/incidents/{id}/ack` and
//! `/resolve` (`{"by": NAME}`, the admin token when one is set),
//! `GET /api/oncall` (who is on call now, the escalations in progress),
//! and the signed links of notifications: `GET /oncall/ack/{token}` shows
//! a page with one button, its `POST` acknowledges. The link's signature
//! is its only authentication; it can do nothing but acknowledge its
//! incident as its person.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::incidents::authorize;
use crate::monitor::Monitor;
use crate::oncall::escalation::Via;
use crate::oncall::link::LinkRefusal;
use crate::oncall::{AckError, OnCallHandle};
use flashguard_telemetry::json_error as error;
use flashguard_telemetry::unix_ms as now_ms;

type Shared = State<Arc<Monitor>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Who {
    by: String,
    /// `api` (the default), `dashboard` or `cli`; links are their own.
    #[serde(default)]
    via: Option<Via>,
}

/// Why a request is refused before anything is done.
enum Refused {
    Field(String),
    NoOnCall,
    /// No admin token, or the wrong one.
    Unauthorized(Box<Response>),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Field(problem) => {
                error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", &problem)
            }
            Refused::NoOnCall => error(
                StatusCode::NOT_FOUND,
                "no_oncall",
                "nobody is paged here: configure [oncall] in monitor.toml",
            ),
            Refused::Unauthorized(response) => *response,
        }
    }
}

/// The body's `by`, checked.
fn who(body: Result<Json<Who>, axum::extract::rejection::JsonRejection>) -> Result<Who, Refused> {
    let Json(who) = body.map_err(|rejection| Refused::Field(rejection.body_text()))?;
    let by = who.by.trim();
    if by.is_empty() || by.len() > 128 {
        return Err(Refused::Field("by: 1 to 128 characters".into()));
    }
    if who.via == Some(Via::Link) {
        return Err(Refused::Field(
            "via: api, dashboard or cli (links acknowledge through /oncall/ack)".into(),
        ));
    }
    Ok(Who {
        by: by.to_string(),
        via: who.via,
    })
}

/// The token (when one is set) and the body's `by`, checked.
fn authorized(
    monitor: &Monitor,
    headers: &HeaderMap,
    body: Result<Json<Who>, axum::extract::rejection::JsonRejection>,
) -> Result<Who, Refused> {
    if let Some(refused) = authorize(monitor, headers) {
        return Err(Refused::Unauthorized(Box::new(refused)));
    }
    who(body)
}

fn oncall(monitor: &Monitor) -> Result<&OnCallHandle, Refused> {
    monitor.oncall.as_ref().ok_or(Refused::NoOnCall)
}

fn ack_error(err: &AckError) -> Response {
    let status = match err {
        AckError::NotPaging(_) => StatusCode::NOT_FOUND,
        AckError::Resolved(_) => StatusCode::CONFLICT,
        AckError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
    };
    let code = match err {
        AckError::NotPaging(_) => "not_paging",
        AckError::Resolved(_) => "resolved",
        AckError::Stopped => "oncall_stopped",
    };
    error(status, code, &err.to_string())
}

pub(crate) async fn ack(
    State(monitor): Shared,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<Who>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let who = match authorized(&monitor, &headers, body) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    let oncall = match oncall(&monitor) {
        Ok(oncall) => oncall,
        Err(refused) => return refused.into_response(),
    };
    match oncall
        .acknowledge(id, &who.by, who.via.unwrap_or(Via::Api))
        .await
    {
        Ok(acknowledged) => Json(acknowledged).into_response(),
        Err(err) => ack_error(&err),
    }
}

pub(crate) async fn resolve(
    State(monitor): Shared,
    headers: HeaderMap,
    Path(id): Path<i64>,
    body: Result<Json<Who>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let who = match authorized(&monitor, &headers, body) {
        Ok(who) => who,
        Err(refused) => return refused.into_response(),
    };
    match monitor.incidents.resolve_by(id, &who.by, now_ms()).await {
        Ok(true) => {
            if let Some(oncall) = &monitor.oncall {
                oncall.resolved(id, Some(who.by.clone()));
            }
            Json(json!({ "incident": id, "status": "resolved", "by": who.by })).into_response()
        }
        Ok(false) => error(
            StatusCode::CONFLICT,
            "not_open",
            &format!("incident {id} is unknown or resolved already"),
        ),
        Err(err) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "incident_file_unavailable",
            &err.to_string(),
        ),
    }
}

pub(crate) async fn status(State(monitor): Shared) -> Response {
    let oncall = match oncall(&monitor) {
        Ok(oncall) => oncall,
        Err(refused) => return refused.into_response(),
    };
    Json(json!({
        "on_call": oncall.on_call_now(),
        "escalations": oncall.escalations().await,
    }))
    .into_response()
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:32em}}\
         button{{font-size:1.3em;padding:.6em 1.4em}}</style></head><body><h1>{title}</h1>{body}</body></html>"
    );
    (status, Html(html)).into_response()
}

fn refused(refusal: LinkRefusal) -> Response {
    let status = match refusal {
        LinkRefusal::Forged => StatusCode::FORBIDDEN,
        LinkRefusal::Expired | LinkRefusal::Used => StatusCode::GONE,
    };
    page(
        status,
        "This link cannot acknowledge",
        &format!(
            "<p id=\"{}\">{}. Acknowledge from the dashboard or the API instead.</p>",
            refusal.code(),
            escape(&refusal.to_string())
        ),
    )
}

/// `GET`: what the link would do, and a button to do it. Nothing changes.
pub(crate) async fn link_page(State(monitor): Shared, Path(token): Path<String>) -> Response {
    let oncall = match oncall(&monitor) {
        Ok(oncall) => oncall,
        Err(refused) => return refused.into_response(),
    };
    match oncall.links.open(&token, oncall.clock.now_ms()) {
        Ok(link) => page(
            StatusCode::OK,
            &format!("Incident {}", link.incident),
            &format!(
                "<p>Acknowledge incident {} as <strong>{}</strong>? Escalation stops; \
                 you own it now.</p><form method=\"post\"><button id=\"acknowledge\" \
                 type=\"submit\">Acknowledge</button></form>",
                link.incident,
                escape(&link.person)
            ),
        ),
        Err(refusal) => refused(refusal),
    }
}

/// `POST`: acknowledges, once.
pub(crate) async fn link_ack(State(monitor): Shared, Path(token): Path<String>) -> Response {
    let oncall = match oncall(&monitor) {
        Ok(oncall) => oncall,
        Err(refused) => return refused.into_response(),
    };
    let now = oncall.clock.now_ms();
    let link = match oncall.links.open(&token, now) {
        Ok(link) => link,
        Err(refusal) => return refused(refusal),
    };
    if !oncall.links.spend(&link, now) {
        return refused(LinkRefusal::Used);
    }
    match oncall
        .acknowledge(link.incident, &link.person, Via::Link)
        .await
    {
        Ok(acknowledged) => page(
            StatusCode::OK,
            "Acknowledged",
            &format!(
                "<p id=\"acknowledged\">Incident {} is acknowledged by {}: nobody else is paged \
                 for {} min.</p>",
                acknowledged.incident,
                escape(&acknowledged.by),
                (acknowledged.until_ms - now) / 60_000
            ),
        ),
        Err(err) => page(
            StatusCode::CONFLICT,
            "Not acknowledged",
            &format!(
                "<p id=\"not-acknowledged\">{}</p>",
                escape(&err.to_string())
            ),
        ),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
