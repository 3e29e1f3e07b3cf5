//! Every way a shop request can fail, and the one place that turns a failure
//! into the JSON answer of the contract: `{"error": CODE, "detail": TEXT}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::model::InvalidField;

/// A failed request: the variant decides the status and the error code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the Idempotency-Key header is required")]
    MissingIdempotencyKey,
    #[error("{0}")]
    InvalidIdempotencyKey(String),
    #[error("{0}")]
    MalformedBody(String),
    #[error("Content-Type must be {0}")]
    UnsupportedMediaType(&'static str),
    #[error("the body is larger than this server accepts")]
    BodyTooLarge,
    #[error("{0}")]
    InvalidField(InvalidField),
    #[error("this Idempotency-Key was used before with a different request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still being processed")]
    RequestInProgress,
    #[error("{0}")]
    SaleNotOpen(String),
    #[error("no product has SKU {0}")]
    UnknownSku(String),
    #[error("no order has id {0}")]
    OrderNotFound(String),
    #[error("no such route")]
    NotFound,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("the admin API is disabled: set FLASHGUARD_ADMIN_TOKEN to enable it")]
    AdminDisabled,
    #[error("{0}")]
    StockBelowSold(String),
    #[error("{0}")]
    Overloaded(String),
    #[error("{0}")]
    Unavailable(String),
    /// A bug or a broken store: logged with its cause, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MissingIdempotencyKey | InvalidIdempotencyKey(_) | MalformedBody(_) => {
                StatusCode::BAD_REQUEST
            }
            Unauthorized => StatusCode::UNAUTHORIZED,
            AdminDisabled => StatusCode::FORBIDDEN,
            UnknownSku(_) | OrderNotFound(_) | NotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestInProgress | SaleNotOpen(_) => StatusCode::CONFLICT,
            BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            InvalidField(_) | IdempotencyKeyReused | StockBelowSold(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            Overloaded(_) | Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code clients branch on.
    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MissingIdempotencyKey => "missing_idempotency_key",
            InvalidIdempotencyKey(_) => "invalid_idempotency_key",
            MalformedBody(_) => "malformed_body",
            UnsupportedMediaType(_) => "unsupported_media_type",
            BodyTooLarge => "body_too_large",
            InvalidField(_) => "invalid_field",
            IdempotencyKeyReused => "idempotency_key_reused",
            RequestInProgress => "request_in_progress",
            SaleNotOpen(_) => "sale_not_open",
            UnknownSku(_) => "unknown_sku",
            OrderNotFound(_) => "order_not_found",
            NotFound => "not_found",
            MethodNotAllowed => "method_not_allowed",
            Unauthorized => "unauthorized",
            AdminDisabled => "admin_disabled",
            StockBelowSold(_) => "stock_below_sold",
            Overloaded(_) => "overloaded",
            Unavailable(_) => "unavailable",
            Internal(_) => "internal",
        }
    }

    fn detail(&self) -> String {
        match self {
            ApiError::Internal(_) => "something went wrong on our side; it was logged".to_string(),
            other => other.to_string(),
        }
    }
}

/// `Retry-After` for 503 answers, in seconds; set once at start from config.
static RETRY_AFTER_SECS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

pub(crate) fn set_retry_after(seconds: u64) {
    let _ = RETRY_AFTER_SECS.set(seconds);
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error()
            && !matches!(self, ApiError::Overloaded(_) | ApiError::Unavailable(_))
        {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({ "error": self.code(), "detail": self.detail() }).to_string();
        let mut response =
            (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let seconds = RETRY_AFTER_SECS.get().copied().unwrap_or(1);
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(err: crate::store::StoreError) -> Self {
        use crate::store::StoreError;
        match err {
            StoreError::Unavailable(_) => {
                ApiError::Unavailable("the store cannot be reached; try again shortly".into())
            }
            StoreError::Contention(_) => {
                ApiError::Overloaded("the store is busy; try again shortly".into())
            }
            StoreError::Refused(why) => ApiError::StockBelowSold(why),
            StoreError::Internal(inner) => ApiError::Internal(format!("{inner:#}")),
        }
    }
}
