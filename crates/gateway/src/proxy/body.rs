//! Request bodies: small ones are read whole so a retry can send them
//! again; large or chunked ones stream through once.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::HeaderMap;
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;

use super::answer::Refusal;
use super::UpstreamBody;
use crate::config::Settings;

pub(crate) enum RequestBody {
    Buffered(Bytes),
    /// Taken by the first try.
    Streaming(Option<Limited<Incoming>>),
}

impl RequestBody {
    /// Reads the body as the headers announce it. Must run before the
    /// hop-by-hop headers (among them `Transfer-Encoding`) are removed.
    pub(crate) async fn read(
        incoming: Incoming,
        headers: &HeaderMap,
        settings: &Settings,
    ) -> Result<RequestBody, (Refusal, String)> {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let chunked = headers.contains_key(TRANSFER_ENCODING);
        let too_large = || {
            (
                Refusal::PayloadTooLarge,
                format!("the body is larger than {} bytes", settings.max_body_bytes),
            )
        };
        match declared {
            Some(length) if length > settings.max_body_bytes as u64 => Err(too_large()),
            None if !chunked => Ok(RequestBody::Buffered(Bytes::new())),
            Some(length) if length <= settings.buffer_bytes as u64 => {
                let limited = Limited::new(incoming, settings.max_body_bytes);
                // A client that announces a body and then stalls must not
                // hold a request slot forever.
                match tokio::time::timeout(settings.upstream_timeout, limited.collect()).await {
                    Ok(Ok(collected)) => Ok(RequestBody::Buffered(collected.to_bytes())),
                    Ok(Err(err)) if err.is::<http_body_util::LengthLimitError>() => {
                        Err(too_large())
                    }
                    Ok(Err(err)) => Err((
                        Refusal::BadRequest,
                        format!("the request body could not be read: {err}"),
                    )),
                    Err(_) => Err((
                        Refusal::BadRequest,
                        "the request body did not arrive in time".to_string(),
                    )),
                }
            }
            _ => Ok(RequestBody::Streaming(Some(Limited::new(
                incoming,
                settings.max_body_bytes,
            )))),
        }
    }

    pub(crate) fn is_buffered(&self) -> bool {
        matches!(self, RequestBody::Buffered(_))
    }

    /// The body for the next try, or `None` once a streamed body is spent.
    pub(crate) fn for_try(&mut self) -> Option<UpstreamBody> {
        match self {
            RequestBody::Buffered(bytes) => Some(Either::Left(Full::new(bytes.clone()))),
            RequestBody::Streaming(body) => body.take().map(Either::Right),
        }
    }
}
