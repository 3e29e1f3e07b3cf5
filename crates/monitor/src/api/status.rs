//! The status page from the monitor's side: `GET /api/status` (what the
//! alerts propose, what people set, what is pushed), and
//! `PUT|DELETE /api/status/components/{name}` for a person to set or clear
//! a component's state — how automatic states are confirmed when
//! `auto_publish = false`, and how a person overrides them otherwise.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::incidents::authorize;
use crate::monitor::Monitor;
use crate::status_page::{self, State as ComponentState};
use flashguard_telemetry::json_error as error;

type Shared = State<Arc<Monitor>>;

pub(crate) async fn show(State(monitor): Shared) -> Response {
    let settings = &monitor.status_settings;
    let set = monitor
        .status_set
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Json(json!({
        "auto_publish": settings.auto_publish,
        "proposed": status_page::proposed(&monitor, settings),
        "set_by_people": set.iter().map(|(name, (status, description))| {
            json!({ "name": name, "status": status, "description": description })
        }).collect::<Vec<_>>(),
        "published": status_page::published(&monitor, settings, flashguard_telemetry::unix_ms()).await,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetState {
    status: ComponentState,
    #[serde(default)]
    description: Option<String>,
}

fn unknown(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "unknown_component",
        &format!("{name:?}: the components are storefront, checkout, sale, waiting_room"),
    )
}

pub(crate) async fn set(
    State(monitor): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<Json<SetState>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = authorize(&monitor, &headers) {
        return refused;
    }
    if !status_page::is_component(&name) {
        return unknown(&name);
    }
    let Json(state) = match body {
        Ok(state) => state,
        Err(rejection) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_state",
                &rejection.body_text(),
            )
        }
    };
    if state.description.as_deref().is_some_and(|d| d.len() > 500) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_state",
            "description: at most 500 characters",
        );
    }
    monitor
        .status_set
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.clone(), (state.status, state.description));
    monitor.status_changed.notify_one();
    Json(json!({ "name": name, "status": state.status })).into_response()
}

pub(crate) async fn clear(
    State(monitor): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(refused) = authorize(&monitor, &headers) {
        return refused;
    }
    if !status_page::is_component(&name) {
        return unknown(&name);
    }
    monitor
        .status_set
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&name);
    monitor.status_changed.notify_one();
    StatusCode::NO_CONTENT.into_response()
}
