//! The waiting room on the request path: before a request to a guarded
//! path may take a slot on a backend, the room decides whether its
//! customer's turn has come. The room's own pages (`/waiting-room`, one's
//! place; `/waiting-room.json`, the room in public with the lottery's
//! commitment or seed) never queue.

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use http::StatusCode;

use super::answer::Refusal;
use super::body::RequestBody;
use super::client::ClientConn;
use super::forward::Reply;
use super::Live;
use crate::http1::request::RequestHead;
use crate::http1::{Framing, Known, Stream};
use crate::room::again::Again;
use crate::room::page::{self, Answer, Shape};
use crate::room::{self, Gate, Room};

/// What the room says of a request.
pub(super) enum Step {
    /// A guarded path: the customer's turn has come. On to the backends,
    /// handing this ticket back with the answer.
    Pass(Option<String>),
    /// A path the room does not guard: on to the backends.
    Unguarded,
    /// The room answers by itself.
    Answer(RoomAnswer),
}

/// What the room answers by itself.
pub(super) enum RoomAnswer {
    /// Made already.
    Ready(Answer),
    /// The customer is held back (`gate` said not to pass): the answer is
    /// made once the request's body is read (`made`), since a browser's
    /// form goes on the page to be sent again.
    Held(Gate, Shape),
}

impl RoomAnswer {
    /// The answer, for `request` with `body` when it was read whole.
    pub(super) fn made(self, request: &RequestHead, body: Option<&[u8]>) -> Answer {
        match self {
            RoomAnswer::Ready(answer) => answer,
            RoomAnswer::Held(gate, shape) => {
                page::answer(gate, shape, &again(request, body)).expect("not a pass")
            }
        }
    }
}

pub(super) fn step(room: &Room, request: &RequestHead, client: IpAddr) -> Step {
    let path = request.path();
    let presented = room::presented(
        request.head.get(Known::Ticket),
        request.head.values(Known::Cookie),
    );
    let shape = Shape::of(path, request.head.get(Known::Accept));
    match path {
        "/waiting-room" | "/waiting-room.json" => {
            let yours = room.peek(presented, client);
            let (shape, body) = if path.ends_with(".json") {
                let mut public = room.public();
                public["you"] = serde_json::to_value(&yours).unwrap_or_default();
                (Shape::Json, public.to_string())
            } else {
                (Shape::Html, page::status_page(yours.as_ref(), room.is_on()))
            };
            return Step::Answer(RoomAnswer::Ready(Answer {
                status: StatusCode::OK,
                shape,
                body,
                ticket: None,
                retry_after_s: None,
                media: None,
            }));
        }
        _ if !room.rules.guards(path) => return Step::Unguarded,
        _ => {}
    }
    match room.gate(presented, client) {
        Gate::Pass(ticket) => Step::Pass(ticket),
        held => Step::Answer(RoomAnswer::Held(held, shape)),
    }
}

/// A customer the room let in whose request found every shop full for as
/// long as a request may wait (or the queue full) is held back by the
/// room — its page, or 429 `waiting`, to come back in `retry_after_s`,
/// still let in — rather than given the queue's 503: the room exists so
/// that customers wait in line instead of retrying into errors, and one
/// already in keeps their turn (their ticket is not touched, so they pass
/// straight through when they return). Coming back is as safe as the
/// gateway's own retries: the request reached no shop, or only one whose
/// failure the gateway itself retries past (an idempotent request, or an
/// order with its `Idempotency-Key`). Other replies, and every reply while
/// the room is off, go out as they are. `body`: the request's, when it was
/// read whole (a browser's form goes on the page, `Again`).
pub(super) fn hold_back(
    room: &Room,
    reply: Reply,
    (request, body): (&RequestHead, Option<&[u8]>),
    retry_after_s: u64,
) -> Reply {
    match reply {
        Reply::Gateway(Refusal::QueueTimeout | Refusal::QueueFull, _) if room.is_on() => {
            let shape = Shape::of(request.path(), request.head.get(Known::Accept));
            Reply::Room(room.held_back(shape, retry_after_s, &again(request, body)))
        }
        reply => reply,
    }
}

fn again(request: &RequestHead, body: Option<&[u8]>) -> Again {
    Again::of(
        &request.method,
        request.target(),
        request.head.get_named(b"content-type"),
        body,
    )
}

/// The header lines that hand `ticket` back, for the answer of a request
/// the room let through.
pub(super) fn hand_back(room: &Room, ticket: &str) -> BytesMut {
    let mut lines = BytesMut::with_capacity(256);
    page::put_ticket(&mut lines, ticket, room.rules.keep_s());
    lines
}

/// Reads the body of a request the room answers, so the connection can
/// carry the next one: whether it could (not a body too large to buffer,
/// nor one the client waits for `100 Continue` to send), and the body when
/// it was read whole.
pub(super) async fn read_body<S: Stream>(
    conn: &mut ClientConn<S>,
    request: &RequestHead,
    live: &Live,
) -> (bool, Option<Bytes>) {
    if request.framing == Framing::Empty {
        return (true, None);
    }
    if request.expects_continue {
        return (false, None);
    }
    match RequestBody::read(&mut conn.wire, request, &live.settings, &mut conn.alarm).await {
        Ok(body) => (body.is_buffered(), body.into_buffered()),
        Err(_) => (false, None),
    }
}
