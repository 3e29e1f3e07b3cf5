//! The query API and the monitor's own probes and metrics.
//!
//! `GET /api/query?metric=NAME&LABEL=VALUE...`: the latest point of every
//! matching series. `GET /api/query_range?metric=NAME&start=MS&end=MS&...`:
//! their points in the range (unix ms; default the last five minutes).
//! `GET /api/targets`: each target's last scrape, and why it is down.
//! `GET /api/alerts`, `GET /api/verdict`; incidents in `incidents`; the
//! dashboard at `/` with its stream at `/api/stream`.

mod incidents;
mod oncall;
mod status;
mod targets;

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use prometheus_client::registry::Registry;

use flashguard_telemetry::unix_ms as now_ms;

use crate::dashboard;
use crate::monitor::Monitor;

pub(crate) fn router(monitor: Arc<Monitor>) -> Router {
    let mut registry = Registry::default();
    let metrics = &monitor.metrics;
    registry.register(
        "monitor_scrapes",
        "Scrapes by target and result",
        metrics.scrapes.clone(),
    );
    registry.register(
        "monitor_rule_evaluations",
        "Evaluations of the rule set (one per collection)",
        metrics.evaluations.clone(),
    );
    registry.register(
        "monitor_notifications",
        "Notifications by receiver and result (sent, failed, dropped)",
        metrics.notifications.clone(),
    );
    registry.register(
        "monitor_pages",
        "On-call notices by channel and result (sent, failed, dropped)",
        metrics.pages.clone(),
    );
    registry.register_collector(Box::new(flashguard_telemetry::ProcessCollector));
    let failed_auth = flashguard_telemetry::FailedAuth::new();
    failed_auth.register(&mut registry);
    let registry = Arc::new(registry);
    Router::new()
        .route("/api/query", get(query))
        .route("/api/query_range", get(query_range))
        .route("/api/targets", get(targets).post(targets::add))
        .route(
            "/api/targets/{name}",
            axum::routing::delete(targets::remove),
        )
        .route("/api/alerts", get(alerts))
        .route("/api/verdict", get(verdict))
        .route("/api/events", post(incidents::post_event))
        .route("/api/incidents", get(incidents::list))
        .route("/api/incidents/{id}", get(incidents::one))
        .route("/api/incidents/{id}/notes", post(incidents::note))
        .route("/api/incidents/{id}/postmortem", get(incidents::postmortem))
        .route("/api/incidents/{id}/ack", post(oncall::ack))
        .route(
            "/api/incidents/{id}/updates",
            post(incidents::public_update),
        )
        .route("/api/incidents/{id}/resolve", post(oncall::resolve))
        .route("/api/oncall", get(oncall::status))
        .route("/api/status", get(status::show))
        .route(
            "/api/status/components/{name}",
            axum::routing::put(status::set).delete(status::clear),
        )
        .route(
            "/oncall/ack/{token}",
            get(oncall::link_page).post(oncall::link_ack),
        )
        .route("/healthz", get(flashguard_telemetry::healthz))
        .route(
            "/readyz",
            get(|| async { flashguard_telemetry::readiness_response(None) }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = Arc::clone(&registry);
                async move { flashguard_telemetry::metrics_response(&registry) }
            }),
        )
        .with_state(Arc::clone(&monitor))
        .merge(dashboard::routes(Arc::clone(&monitor.feed)))
        .layer(axum::middleware::from_fn_with_state(
            failed_auth,
            flashguard_telemetry::limit_failed_auth,
        ))
}

type Params = Query<HashMap<String, String>>;

/// A query the API cannot answer, and why.
enum BadQuery {
    MissingMetric,
    NotMilliseconds(&'static str),
}

impl IntoResponse for BadQuery {
    fn into_response(self) -> Response {
        let (status, code, detail) = match self {
            BadQuery::MissingMetric => (
                StatusCode::BAD_REQUEST,
                "missing_metric",
                "give ?metric=NAME".to_string(),
            ),
            BadQuery::NotMilliseconds(field) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_field",
                format!("{field} must be unix milliseconds"),
            ),
        };
        flashguard_telemetry::json_error(status, code, &detail)
    }
}

/// The metric name and label matchers from the query string.
fn selector(params: &HashMap<String, String>) -> Result<(String, Vec<(String, String)>), BadQuery> {
    let metric = params
        .get("metric")
        .filter(|m| !m.is_empty())
        .ok_or(BadQuery::MissingMetric)?;
    let matchers = params
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "metric" | "start" | "end"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok((metric.clone(), matchers))
}

async fn query(
    State(monitor): State<Arc<Monitor>>,
    Query(params): Params,
) -> Result<Response, BadQuery> {
    let (metric, matchers) = selector(&params)?;
    Ok(Json(monitor.store().instant(&metric, &matchers)).into_response())
}

async fn query_range(
    State(monitor): State<Arc<Monitor>>,
    Query(params): Params,
) -> Result<Response, BadQuery> {
    let (metric, matchers) = selector(&params)?;
    let number = |key: &'static str, default: i64| match params.get(key) {
        None => Ok(default),
        Some(text) => text
            .parse::<i64>()
            .map_err(|_| BadQuery::NotMilliseconds(key)),
    };
    let now = now_ms();
    let (start, end) = (number("start", now - 300_000)?, number("end", now)?);
    Ok(Json(monitor.store().range(&metric, &matchers, start, end)).into_response())
}

async fn alerts(State(monitor): State<Arc<Monitor>>) -> Response {
    Json(&monitor.latest().alerts).into_response()
}

/// The current surge verdict, or `null` when traffic is not surging.
async fn verdict(State(monitor): State<Arc<Monitor>>) -> Response {
    Json(&monitor.latest().verdict).into_response()
}

async fn targets(State(monitor): State<Arc<Monitor>>) -> Response {
    Json(&monitor.latest().targets).into_response()
}
