//! The one place from a result to the HTTP answer of the contract: every way
//! a shop request can fail, as `{"error": CODE, "detail": TEXT}`, and every
//! recorded order outcome (`outcome_answer`), rendered the same way for the
//! first answer and for each replay of its idempotency key. `Retry-After`
//! is added to every 503 by `http::finish`, from the shop's config.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::model::InvalidField;
use crate::store::Outcome;

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
    #[error("{0}")]
    SoldOut(String),
    #[error("{0}")]
    LimitExceeded(String),
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
            RequestInProgress | SaleNotOpen(_) | SoldOut(_) => StatusCode::CONFLICT,
            LimitExceeded(_) => StatusCode::TOO_MANY_REQUESTS,
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
            SoldOut(_) => "sold_out",
            LimitExceeded(_) => "limit_exceeded",
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

    /// The answer's body: the contract's error shape.
    fn body(&self) -> String {
        flashguard_telemetry::json_error_body(self.code(), &self.detail())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error()
            && !matches!(self, ApiError::Overloaded(_) | ApiError::Unavailable(_))
        {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            let headers = response.headers_mut();
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// A recorded outcome as the contract answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OutcomeAnswer {
    pub(crate) status: StatusCode,
    /// Headers beside `Content-Type: application/json`.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: String,
}

/// Renders a recorded outcome: 201 with the order and its `Location`, 409
/// `sold_out`, 429 `limit_exceeded`. The first answer, every replay, and
/// the columns the previous version replays from all come from here.
pub(crate) fn outcome_answer(outcome: &Outcome) -> OutcomeAnswer {
    let refused = |error: ApiError| OutcomeAnswer {
        status: error.status(),
        headers: Vec::new(),
        body: error.body(),
    };
    match outcome {
        Outcome::Created { order } => OutcomeAnswer {
            status: StatusCode::CREATED,
            headers: HeaderValue::from_str(&format!("/api/orders/{}", order.order_id))
                .map(|location| vec![(header::LOCATION, location)])
                .unwrap_or_default(),
            body: serde_json::to_string(order).expect("an order always serializes"),
        },
        Outcome::SoldOut { sku, remaining: 0 } => {
            refused(ApiError::SoldOut(format!("{sku} is sold out")))
        }
        Outcome::SoldOut { sku, remaining } => {
            refused(ApiError::SoldOut(format!("only {remaining} left of {sku}")))
        }
        Outcome::LimitExceeded { limit, already } => refused(ApiError::LimitExceeded(format!(
            "at most {limit} per customer; you already have {already}"
        ))),
        Outcome::Earlier(answer) => OutcomeAnswer {
            status: StatusCode::from_u16(answer.status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers: Vec::new(),
            body: answer.body.clone(),
        },
    }
}

/// The outcome as a response; a replay says so (`Idempotent-Replayed`).
pub(crate) fn outcome_response(outcome: &Outcome, replayed: bool) -> Response {
    let answer = outcome_answer(outcome);
    let mut response = (
        answer.status,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.extend(answer.headers);
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
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
