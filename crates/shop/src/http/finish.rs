//! The last word on every answer, outermost on the request path:
//!
//! - Error answers that axum makes on its own (405 Method Not Allowed, a
//!   path it cannot parse, a body over the limit) come with an empty or
//!   plain-text body. Clients of the shop parse one error shape only, so
//!   they are answered again as the `ApiError` their status means, through
//!   the one rendering in `error.rs`.
//! - Every 503 — an `ApiError`, a busy page, a shed request — gets
//!   `Retry-After` from the shop's config, so no handler has to remember.

use axum::body::to_bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::error::ApiError;

/// Plain-text error bodies from axum are short; anything longer is cut.
const MAX_PLAIN_ERROR: usize = 4096;

pub(super) async fn finish(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let is_json_or_html = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|kind| kind.contains("json") || kind.contains("html"));
        if !is_json_or_html {
            let text = to_bytes(response.into_body(), MAX_PLAIN_ERROR)
                .await
                .unwrap_or_default();
            response = as_api_error(status, &String::from_utf8_lossy(&text)).into_response();
        }
    }
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .entry(header::RETRY_AFTER)
            .or_insert_with(|| HeaderValue::from(state.config.retry_after_secs));
    }
    response
}

/// The `ApiError` an answer axum made by itself means.
fn as_api_error(status: StatusCode, text: &str) -> ApiError {
    let detail = match text.trim() {
        "" => status.canonical_reason().unwrap_or("error").to_string(),
        text => text.to_string(),
    };
    match status {
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::BodyTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType("application/json"),
        StatusCode::UNPROCESSABLE_ENTITY => ApiError::MalformedBody(detail),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::Overloaded(detail),
        s if s.is_server_error() => ApiError::Internal(detail),
        _ => ApiError::MalformedBody(detail),
    }
}
