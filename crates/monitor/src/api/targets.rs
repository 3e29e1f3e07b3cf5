//! Targets added and removed while the monitor runs (`POST /api/targets`,
//! `DELETE /api/targets/{name}`, with the admin token): the shops an
//! autoscaler starts and stops are scraped like the configured ones.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashguard_telemetry::json_error as error;

use super::incidents::authorize;
use crate::config::Target;
use crate::monitor::{Monitor, TargetRefusal, MOST_ADDED_TARGETS};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewTarget {
    name: String,
    /// The base URL; `/metrics` is appended.
    url: String,
}

pub(crate) async fn add(
    State(monitor): State<Arc<Monitor>>,
    headers: HeaderMap,
    body: Result<Json<NewTarget>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = authorize(&monitor, &headers) {
        return refused;
    }
    let Json(new) = match body {
        Ok(body) => body,
        Err(rejection) => {
            let detail = flashguard_telemetry::json_rejection_detail(&rejection);
            return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_target", &detail);
        }
    };
    let name_ok = !new.name.is_empty()
        && new.name.len() <= 64
        && new
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !name_ok {
        let detail = "name: must be 1 to 64 letters, digits, '-', '_' or '.'";
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_target", detail);
    }
    if !(new.url.starts_with("http://") || new.url.starts_with("https://")) {
        let detail = format!("url: {:?} is not an http:// or https:// URL", new.url);
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_target", &detail);
    }
    let target = Target {
        name: new.name.clone(),
        url: new.url.trim_end_matches('/').to_string(),
    };
    match monitor.add_target(target) {
        Ok(()) => {
            tracing::info!(target = %new.name, url = %new.url, "target added");
            (
                StatusCode::CREATED,
                Json(serde_json::json!({ "name": new.name, "url": new.url })),
            )
                .into_response()
        }
        Err(TargetRefusal::Exists) => error(
            StatusCode::CONFLICT,
            "target_exists",
            &format!("{} is already a target", new.name),
        ),
        Err(TargetRefusal::TooMany) => error(
            StatusCode::CONFLICT,
            "too_many_targets",
            &format!("at most {MOST_ADDED_TARGETS} targets may be added"),
        ),
    }
}

pub(crate) async fn remove(
    State(monitor): State<Arc<Monitor>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Some(refused) = authorize(&monitor, &headers) {
        return refused;
    }
    if monitor.remove_target(&name) {
        tracing::info!(target = %name, "target removed");
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::NOT_FOUND,
            "no_such_target",
            &format!("{name} is not a target added through the API"),
        )
    }
}
