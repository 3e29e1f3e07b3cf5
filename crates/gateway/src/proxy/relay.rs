//! Copies a backend's answer to the client: the head as the client gets
//! it, then the body straight from the backend's socket, in as few writes
//! as the reads allow (a small answer goes out in one).

use std::io;

use bytes::{BufMut, BytesMut};
use http::uri::Authority;

use super::upstream::{Answer, UpstreamPool};
use crate::http1::body::{put_chunk, step, State, Step, LAST_CHUNK};
use crate::http1::response::{write_client_head, AnswerHead, ClientFraming};
use crate::http1::{Stream, Wire};

/// Written out once this much is gathered.
const FLUSH_AT: usize = 64 * 1024;

/// Returns whether the whole body went through (if not, the client's
/// connection must close: its copy is cut short). The backend's connection
/// goes back to `pool` when its answer was read to the end.
pub(crate) async fn relay<C: Stream>(
    client: &mut Wire<C>,
    answer: Answer,
    request_id: &[u8],
    (client_http11, close): (bool, bool),
    (pool, authority): (&UpstreamPool, &Authority),
    out: &mut BytesMut,
    extra: &[u8],
) -> io::Result<bool> {
    let Answer { head, mut wire } = answer;
    let framing = ClientFraming::for_response(&head, client_http11);
    let chunked = framing == ClientFraming::Chunked;
    out.clear();
    let answer_head = AnswerHead {
        response: &head,
        request_id,
        framing,
        extra,
    };
    if !client.stream.take_answer_head(&answer_head)? {
        write_client_head(out, &answer_head, close);
    }
    let mut state = State::of(head.framing);
    loop {
        match step(&mut state, &mut wire.buffer) {
            Ok(Step::Data(data)) if chunked => put_chunk(out, &data),
            Ok(Step::Data(data)) => out.put_slice(&data),
            Ok(Step::End) => break,
            Ok(Step::NeedMore) => {
                if !out.is_empty() {
                    client.write_all(out).await?;
                    out.clear();
                }
                match wire.read_more().await {
                    Ok(0) if state == State::UntilClose => state = State::Done,
                    Ok(0) | Err(_) => return Ok(false),
                    Ok(_) => {}
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "a backend's body was malformed; the client's copy is cut");
                client.write_all(out).await?;
                return Ok(false);
            }
        }
        if out.len() >= FLUSH_AT {
            client.write_all(out).await?;
            out.clear();
        }
    }
    if chunked {
        out.put_slice(LAST_CHUNK);
    }
    client.write_all(out).await?;
    if head.reusable && wire.buffer.is_empty() {
        pool.put_back(authority, wire);
    }
    Ok(framing != ClientFraming::Close)
}
