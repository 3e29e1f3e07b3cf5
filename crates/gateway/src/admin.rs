//! The admin API, on its own address: backends (list, add, drain, remove),
//! state-change events, reload; plus `/metrics`, `/healthz`, `/readyz`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flashguard_telemetry::{check_bearer, BearerRefusal};
use serde_json::json;

use crate::config::BackendFile;
use crate::gateway::{Gateway, ReloadError};

type Shared = State<Arc<Gateway>>;

pub(crate) fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/admin/backends", get(list).post(add))
        .route("/admin/backends/{name}", axum::routing::delete(remove))
        .route("/admin/backends/{name}/drain", post(drain))
        .route("/admin/events", get(events))
        .route("/admin/traffic", get(traffic))
        .route("/admin/reload", post(reload))
        .route("/admin/room", get(room))
        .route("/admin/room/rehearse", post(rehearse_arrivals))
        .route("/admin/status", get(status).put(publish_status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(flashguard_telemetry::healthz))
        .route("/readyz", get(readyz))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such admin route") })
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&gateway.metrics.failed_auth),
            flashguard_telemetry::limit_failed_auth,
        ))
        .with_state(gateway)
}

use flashguard_telemetry::json_error as error;

/// What the monitor last pushed to the status page, and when.
async fn status(State(gateway): Shared, headers: HeaderMap) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    match &gateway.proxy.status {
        Some(board) => {
            let (published, at_ms) = board.published();
            Json(json!({ "published": published, "at_ms": at_ms })).into_response()
        }
        None => no_status_page(),
    }
}

fn no_status_page() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no_status_page",
        "the status page is off: [status] enabled = false",
    )
}

/// The monitor's word for the status page: component states, public
/// incidents, maintenance. Replaces what was there; a body the page cannot
/// show changes nothing.
async fn publish_status(
    State(gateway): Shared,
    headers: HeaderMap,
    body: Result<Json<crate::status::Published>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    let Some(board) = &gateway.proxy.status else {
        return no_status_page();
    };
    let published = match body {
        Ok(Json(published)) => published,
        Err(rejection) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_status",
                &rejection.body_text(),
            )
        }
    };
    if let Err(problem) = published.check() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_status", &problem);
    }
    board.publish(published, flashguard_telemetry::unix_ms());
    StatusCode::NO_CONTENT.into_response()
}

/// The status page alone, for its own listener (`[status] listen`).
pub(crate) fn status_router(gateway: Arc<Gateway>) -> Router {
    Router::new().fallback(move |uri: axum::http::Uri| {
        let gateway = Arc::clone(&gateway);
        async move {
            match gateway.proxy.status_answer(uri.path()) {
                Some(answer) => {
                    let content_type = answer.content_type();
                    (
                        answer.status,
                        [("content-type", content_type), ("cache-control", "no-store")],
                        answer.body,
                    )
                        .into_response()
                }
                None => error(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "this address serves /status, /status.json, /status/feed.atom and /api/v2/summary.json",
                ),
            }
        }
    })
}

/// The refusal to send, or `None` when the caller may proceed.
fn authorize(gateway: &Gateway, headers: &HeaderMap) -> Option<Response> {
    let refusal = check_bearer(gateway.admin_token.as_deref(), headers).err()?;
    Some(match refusal {
        BearerRefusal::Disabled => error(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: set FLASHGUARD_ADMIN_TOKEN or admin_token",
        ),
        BearerRefusal::Unauthorized => {
            let mut response = error(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            );
            response
                .headers_mut()
                .insert("www-authenticate", "Bearer".parse().expect("static header"));
            response
        }
    })
}

async fn list(State(gateway): Shared, headers: HeaderMap) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    Json(gateway.backends.views()).into_response()
}

async fn add(
    State(gateway): Shared,
    headers: HeaderMap,
    body: Result<Json<BackendFile>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    let Json(file) = match body {
        Ok(body) => body,
        // Well-formed JSON with a bad value (a pool that is neither
        // primary nor backup): the field is named.
        Err(axum::extract::rejection::JsonRejection::JsonDataError(rejection)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                &flashguard_telemetry::json_rejection_detail(&rejection.into()),
            );
        }
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                &rejection.body_text(),
            );
        }
    };
    let spec = match file.to_spec() {
        Ok(spec) => spec,
        Err((field, problem)) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                &format!("{field}: {problem}"),
            );
        }
    };
    let name = spec.name.clone();
    if !gateway.add(spec, true) {
        return error(
            StatusCode::CONFLICT,
            "backend_exists",
            &format!("{name} is already a backend"),
        );
    }
    let view = gateway
        .backends
        .views()
        .into_iter()
        .find(|v| v.name == name);
    (StatusCode::CREATED, Json(view)).into_response()
}

async fn drain(State(gateway): Shared, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    if !gateway.drain_now(&name) {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_backend",
            &format!("no backend named {name}"),
        );
    }
    let view = gateway
        .backends
        .views()
        .into_iter()
        .find(|v| v.name == name);
    (StatusCode::ACCEPTED, Json(view)).into_response()
}

async fn remove(State(gateway): Shared, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    match gateway.backends.remove(&name) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_backend",
            &format!("no backend named {name}"),
        ),
    }
}

async fn events(State(gateway): Shared, headers: HeaderMap) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    Json(gateway.backends.events()).into_response()
}

/// `GET /admin/traffic?seconds=N` (default 10): what the last seconds of
/// traffic looked like, for telling a flash crowd from an attack.
async fn traffic(
    State(gateway): Shared,
    headers: HeaderMap,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    let seconds = query
        .get("seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let summary = gateway
        .traffic
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .summary(seconds);
    Json(summary).into_response()
}

async fn reload(State(gateway): Shared, headers: HeaderMap) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    match gateway.reload() {
        Ok(reloaded) => Json(json!({
            "reloaded": true,
            "backend_changes": reloaded.backend_changes,
            "certificates": reloaded.certificates,
            "until_restart": reloaded.until_restart,
        }))
        .into_response(),
        Err(err @ ReloadError::NoConfigFile) => {
            error(StatusCode::CONFLICT, "no_config_file", &err.to_string())
        }
        Err(err @ ReloadError::Certificates(_)) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_certificate",
            &err.to_string(),
        ),
        Err(err) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            &err.to_string(),
        ),
    }
}

async fn metrics(State(gateway): Shared) -> Response {
    flashguard_telemetry::metrics_response(gateway.metrics.registry())
}

async fn readyz(State(gateway): Shared) -> Response {
    flashguard_telemetry::readiness_response(
        (!gateway.is_ready()).then_some("draining for shutdown"),
    )
}

/// The waiting room, as `/waiting-room.json` shows it.
async fn room(State(gateway): Shared, headers: HeaderMap) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    match &gateway.proxy.room {
        Some(room) => Json(room.public()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "no_waiting_room",
            "no waiting room: set [waiting_room] activation",
        ),
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Arrivals {
    customers: u64,
}

/// Issues tickets as that many first visits from distinct networks would,
/// through the room's own path: what a crowd costs, without a socket per
/// customer.
async fn rehearse_arrivals(
    State(gateway): Shared,
    headers: HeaderMap,
    body: Result<Json<Arrivals>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Some(refused) = authorize(&gateway, &headers) {
        return refused;
    }
    let Json(Arrivals { customers }) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                &rejection.body_text(),
            )
        }
    };
    if !(1..=10_000_000).contains(&customers) {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "customers: must be 1 to 10000000",
        );
    }
    let Some(room) = gateway.proxy.room.clone() else {
        return error(
            StatusCode::NOT_FOUND,
            "no_waiting_room",
            "no waiting room: set [waiting_room] activation",
        );
    };
    let issued = tokio::task::spawn_blocking(move || room.rehearse_arrivals(customers)).await;
    match issued {
        Ok(issued) => Json(json!({ "issued": issued })).into_response(),
        Err(err) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed",
            &err.to_string(),
        ),
    }
}
