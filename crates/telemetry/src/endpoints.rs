use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::text::encode;
use prometheus_client::registry::Registry;

/// The content type Prometheus expects for its text exposition format.
const PROMETHEUS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `/metrics`: the registry in the OpenMetrics text format, which Prometheus
/// and the flashguard monitor both read.
pub fn metrics_response(registry: &Registry) -> Response {
    let mut body = String::with_capacity(16 * 1024);
    match encode(&mut body, registry) {
        Ok(()) => ([(header::CONTENT_TYPE, PROMETHEUS_TEXT)], body).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response(),
    }
}

/// `/healthz`: 200 for as long as the process can answer at all.
pub async fn healthz() -> Response {
    json_status(StatusCode::OK, "ok", "process is alive")
}

/// `/readyz`: 200 when the server can do its job, 503 with the reason
/// otherwise, so a load balancer stops sending it traffic.
pub fn readiness_response(not_ready_because: Option<&str>) -> Response {
    match not_ready_because {
        None => json_status(StatusCode::OK, "ready", "ready to take traffic"),
        Some(reason) => json_status(StatusCode::SERVICE_UNAVAILABLE, "not_ready", reason),
    }
}

/// What was wrong with a JSON body, as `field: problem` when serde could
/// say which field (axum's own wording, "Failed to deserialize the JSON
/// body into the target type: ", taken off).
pub fn json_rejection_detail(rejection: &axum::extract::rejection::JsonRejection) -> String {
    const PREFIX: &str = "Failed to deserialize the JSON body into the target type: ";
    let text = rejection.body_text();
    match text.strip_prefix(PREFIX) {
        Some(detail) => detail.to_string(),
        None => text,
    }
}

/// An error answer in the shape every flashguard API uses:
/// `{"error": "<code>", "detail": "<text>"}`.
pub fn json_error(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = json_error_body(code, detail);
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// The body of every error answer: `{"error": "<code>", "detail": "<text>"}`.
pub fn json_error_body(code: &str, detail: &str) -> String {
    serde_json::json!({ "error": code, "detail": detail }).to_string()
}

fn json_status(code: StatusCode, status: &str, detail: &str) -> Response {
    let body = serde_json::json!({ "status": status, "detail": detail }).to_string();
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::json_error_body;

    #[test]
    fn error_bodies_are_escaped_json() {
        let body = json_error_body("bad", "a\"b\\c\n");
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["error"], "bad");
        assert_eq!(parsed["detail"], "a\"b\\c\n");
    }
}
