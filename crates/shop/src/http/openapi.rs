//! `GET /api/openapi.json`: the OpenAPI 3 description of the shop. It is a
//! file kept beside the code; a test checks that every path and status it
//! documents is what the server really does.

use axum::http::header;
use axum::response::IntoResponse;

pub(super) const OPENAPI_JSON: &str = include_str!("../../openapi.json");

pub(super) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON)
}
