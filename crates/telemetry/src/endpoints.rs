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
    let body = format!(
        "{{\"error\":{},\"detail\":{}}}",
        json_string(code),
        json_string(detail)
    );
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn json_status(code: StatusCode, status: &str, detail: &str) -> Response {
    let body = format!(
        "{{\"status\":{},\"detail\":{}}}",
        json_string(status),
        json_string(detail)
    );
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Quotes a short ASCII-ish string for JSON without pulling serde into this crate.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
