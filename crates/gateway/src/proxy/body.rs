//! Request bodies: small ones are read whole so a retry can send them
//! again; large or chunked ones stream through once.

use bytes::{Bytes, BytesMut};

use tokio::time::Instant;

use super::answer::Refusal;
use super::failure::TryError;
use super::upstream::TryBody;
use super::Alarm;
use crate::config::Settings;
use crate::http1::body::State;
use crate::http1::request::RequestHead;
use crate::http1::{Framing, Stream, Wire};

pub(crate) enum RequestBody {
    /// `announced`: the client sent a `Content-Length`.
    Buffered { bytes: Bytes, announced: bool },
    /// Read from the client by the first try; the length is `None` when
    /// the client sends it chunked.
    Streaming { length: Option<u64>, spent: bool },
}

impl RequestBody {
    /// What to do with the body `request` announces: refused when its
    /// declared length is over the limit, read now when it fits the retry
    /// buffer, streamed otherwise. A client waiting for `100 Continue` gets
    /// it once its body is wanted.
    pub(crate) async fn read<C: Stream>(
        client: &mut Wire<C>,
        request: &RequestHead,
        settings: &Settings,
        alarm: &mut Alarm,
    ) -> Result<RequestBody, TryError> {
        let too_large = || {
            TryError::client(
                Refusal::PayloadTooLarge,
                format!("the body is larger than {} bytes", settings.max_body_bytes),
            )
        };
        let unread = |detail: String| TryError::client(Refusal::BadRequest, detail);
        let framing = request.framing;
        let wanted = match framing {
            Framing::Empty | Framing::UntilClose => false,
            Framing::Length(length) => length <= settings.max_body_bytes as u64,
            Framing::Chunked => true,
        };
        const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
        if wanted && request.expects_continue && client.write_all(CONTINUE).await.is_err() {
            return Err(unread("the client went away".to_string()));
        }
        match framing {
            Framing::Empty | Framing::UntilClose => Ok(RequestBody::Buffered {
                bytes: Bytes::new(),
                announced: false,
            }),
            Framing::Length(length) if length > settings.max_body_bytes as u64 => Err(too_large()),
            Framing::Length(length) if length <= settings.buffer_bytes as u64 => {
                // A client that announces a body and then stalls must not
                // hold a request slot forever.
                let deadline = Instant::now() + settings.upstream_timeout;
                let read = tokio::select! {
                    biased;
                    read = read_whole(client, length) => Ok(read),
                    () = alarm.until(deadline) => Err(()),
                };
                match read {
                    Ok(Ok(bytes)) => Ok(RequestBody::Buffered {
                        bytes,
                        announced: true,
                    }),
                    Ok(Err(err)) => {
                        Err(unread(format!("the request body could not be read: {err}")))
                    }
                    Err(_) => Err(unread(
                        "the request body did not arrive in time".to_string(),
                    )),
                }
            }
            Framing::Length(length) => Ok(RequestBody::Streaming {
                length: Some(length),
                spent: false,
            }),
            Framing::Chunked => Ok(RequestBody::Streaming {
                length: None,
                spent: false,
            }),
        }
    }

    /// The whole body, when it was read before the first try.
    pub(crate) fn buffered(&self) -> Option<&[u8]> {
        match self {
            RequestBody::Buffered { bytes, .. } => Some(bytes),
            _ => None,
        }
    }

    /// The whole body, kept, when it was read before the first try.
    pub(crate) fn into_buffered(self) -> Option<Bytes> {
        match self {
            RequestBody::Buffered { bytes, .. } => Some(bytes),
            RequestBody::Streaming { .. } => None,
        }
    }

    pub(crate) fn is_buffered(&self) -> bool {
        matches!(self, RequestBody::Buffered { .. })
    }

    /// The body for the next try; `None` when it was streamed to an
    /// earlier one and cannot be sent again.
    pub(crate) fn for_try(&mut self, framing: Framing, limit: u64) -> Option<TryBody> {
        match self {
            RequestBody::Buffered { bytes, announced } => Some(TryBody::Buffered {
                bytes: bytes.clone(),
                announced: *announced,
            }),
            RequestBody::Streaming { spent: true, .. } => None,
            RequestBody::Streaming { length, spent } => {
                *spent = true;
                Some(TryBody::Streaming {
                    state: State::of(framing),
                    length: *length,
                    limit,
                })
            }
        }
    }

    /// A try that never reached its backend did not touch a streamed
    /// body: another backend can have it.
    pub(crate) fn untouched(&mut self) {
        if let RequestBody::Streaming { spent, .. } = self {
            *spent = false;
        }
    }
}

async fn read_whole<C: Stream>(client: &mut Wire<C>, length: u64) -> std::io::Result<Bytes> {
    let length = length as usize;
    if client.buffer.len() >= length {
        return Ok(client.buffer.split_to(length).freeze());
    }
    let mut state = State::Length(length as u64);
    let mut whole = BytesMut::with_capacity(length);
    while let Some(piece) = client.body_piece(&mut state).await? {
        whole.extend_from_slice(&piece);
    }
    Ok(whole.freeze())
}
