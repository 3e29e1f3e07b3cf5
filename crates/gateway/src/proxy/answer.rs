//! The gateway's own answers, in the shop's JSON error shape.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

/// What the client gets: a backend's streamed body, or one of ours.
pub(crate) type ClientBody = Either<Incoming, Full<Bytes>>;

/// Why the gateway answered by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many requests in flight.
    Overloaded,
    /// No backend can take the request.
    NoBackend,
    /// The client sent more than its share.
    RateLimited,
    /// The backend failed after the request may have reached it.
    BadGateway,
    /// The backend did not answer in time.
    UpstreamTimeout,
    PayloadTooLarge,
    /// The client's body could not be read.
    BadRequest,
}

impl Refusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::Overloaded | Refusal::NoBackend => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Refusal::BadGateway => StatusCode::BAD_GATEWAY,
            Refusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::Overloaded => "overloaded",
            Refusal::NoBackend => "no_backend",
            Refusal::RateLimited => "rate_limited",
            Refusal::BadGateway => "bad_gateway",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::PayloadTooLarge => "payload_too_large",
            Refusal::BadRequest => "bad_request",
        }
    }

    pub(crate) fn response(self, detail: &str, retry_after_secs: u64) -> Response<ClientBody> {
        let body = serde_json::json!({ "error": self.code(), "detail": detail }).to_string();
        let mut response = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if matches!(
            self.status(),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            headers.insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}
