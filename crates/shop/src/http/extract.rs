//! Extractors that fail with the contract's errors instead of axum's
//! plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::model::{validate_idempotency_key, InvalidField};

/// The `Idempotency-Key` header, present and well-formed.
pub(super) struct IdempotencyKey(pub(super) String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get("idempotency-key")
            .ok_or(ApiError::MissingIdempotencyKey)?;
        let key = value.to_str().map_err(|_| {
            ApiError::InvalidIdempotencyKey("Idempotency-Key must be printable ASCII".into())
        })?;
        validate_idempotency_key(key).map_err(ApiError::InvalidIdempotencyKey)?;
        Ok(IdempotencyKey(key.to_string()))
    }
}

/// A JSON body: 415 without a JSON content type, 413 over the body limit,
/// 400 when it is not JSON, 422 when it is JSON of the wrong shape.
pub(super) struct JsonBody<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::UnsupportedMediaType("application/json"));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::BodyTooLarge
                } else {
                    ApiError::MalformedBody("the body could not be read".into())
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

pub(super) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|err| match err.classify() {
        serde_json::error::Category::Data => ApiError::InvalidField(InvalidField {
            field: "body",
            problem: err.to_string(),
        }),
        _ => ApiError::MalformedBody(format!("the body is not valid JSON: {err}")),
    })
}
