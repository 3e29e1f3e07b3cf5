//! The gateway's own answers, in the shop's JSON error shape.

use bytes::{BufMut, BytesMut};
use http::StatusCode;

use crate::http1::{put_field, put_number, put_status_line, AfterAnswer};

/// Why the gateway answered by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Too many requests in flight.
    Overloaded,
    /// No backend can take the request.
    NoBackend,
    /// Every backend is at its limit and the queue is full.
    QueueFull,
    /// Every backend stayed at its limit for the whole wait in the queue.
    QueueTimeout,
    /// The client sent more than its share.
    RateLimited,
    /// The backend failed after the request may have reached it.
    BadGateway,
    /// The backend did not answer in time.
    UpstreamTimeout,
    PayloadTooLarge,
    /// The client's request could not be read.
    BadRequest,
    /// The client's request head is too large.
    HeadTooLarge,
    /// The client asked for something the gateway does not do.
    NotImplemented,
    /// The client gave up before its answer came (it reset its HTTP/2
    /// stream). Nobody reads this answer: it is for the access log and
    /// the metrics, as nginx's 499.
    ClientGone,
}

/// nginx's "client closed request": no standard status says it.
const CLIENT_CLOSED_REQUEST: u16 = 499;

impl Refusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::Overloaded
            | Refusal::NoBackend
            | Refusal::QueueFull
            | Refusal::QueueTimeout => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Refusal::BadGateway => StatusCode::BAD_GATEWAY,
            Refusal::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            Refusal::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Refusal::BadRequest => StatusCode::BAD_REQUEST,
            Refusal::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Refusal::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Refusal::ClientGone => {
                StatusCode::from_u16(CLIENT_CLOSED_REQUEST).unwrap_or(StatusCode::BAD_REQUEST)
            }
        }
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Refusal::Overloaded => "overloaded",
            Refusal::NoBackend => "no_backend",
            Refusal::QueueFull => "queue_full",
            Refusal::QueueTimeout => "queue_timeout",
            Refusal::RateLimited => "rate_limited",
            Refusal::BadGateway => "bad_gateway",
            Refusal::UpstreamTimeout => "upstream_timeout",
            Refusal::PayloadTooLarge => "payload_too_large",
            Refusal::BadRequest => "bad_request",
            Refusal::HeadTooLarge => "head_too_large",
            Refusal::NotImplemented => "not_implemented",
            Refusal::ClientGone => "client_gone",
        }
    }

    /// Writes the whole answer: JSON body, `Retry-After` on 503 and 429,
    /// `Connection` as `after` says.
    pub(crate) fn write(
        self,
        out: &mut BytesMut,
        detail: &str,
        retry_after_secs: u64,
        request_id: Option<&[u8]>,
        after: AfterAnswer,
        extra: &[u8],
    ) {
        let body = serde_json::json!({ "error": self.code(), "detail": detail }).to_string();
        let status = self.status();
        put_status_line(out, status, b"");
        put_field(out, b"content-type", b"application/json");
        put_number(out, b"content-length", body.len() as u64);
        if matches!(
            status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        ) {
            put_number(out, b"retry-after", retry_after_secs);
        }
        if let Some(id) = request_id {
            put_field(out, b"x-request-id", id);
        }
        out.put_slice(extra);
        after.put(out);
        out.put_slice(b"\r\n");
        out.put_slice(body.as_bytes());
    }
}
