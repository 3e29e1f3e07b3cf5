//! Why a try did not produce the client's answer, and the one place that
//! turns what happened into the two facts the retry loop decides on (as
//! pingora's errors carry them): whose fault it was, and whether another
//! backend may have the request.

use std::io;
use std::time::Duration;

use super::answer::Refusal;
use crate::backend::Lesson;

/// What happened to a try, before any judgement.
#[derive(Debug)]
pub(crate) enum Happened {
    /// The connection was refused (or failed at once): nothing reached the
    /// backend.
    NotConnected(String),
    /// No connection within the connect timeout: nothing reached the
    /// backend, which is dead, hung, or only busy (its accept queue full).
    ConnectTimedOut(Duration),
    /// The connection broke, or the answer was malformed, after the request
    /// (or part of it) was written: the backend may have it.
    Broke(io::Error),
    /// The backend's answer did not begin within the upstream timeout.
    NoAnswerInTime(Duration),
    /// The client's body could not be read, was cut off or is too large.
    ClientBody { too_large: bool, detail: String },
    /// The client gave up on the request before its answer came.
    Abandoned,
}

/// Whose fault a failed try was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// The client's request cannot be sent: no backend is to blame.
    Client,
    /// The gateway gave up by itself (no backend left to try).
    Gateway,
    /// The backend was never reached.
    BackendBeforeSend,
    /// The backend may have received the request.
    BackendAfterSend,
}

/// A failed try, judged.
#[derive(Debug)]
pub(crate) struct TryError {
    pub(crate) fault: Fault,
    /// No connection in time: the backend may only be busy (see `lesson`).
    pub(crate) connect_timed_out: bool,
    /// Whether another backend may be sent the request.
    pub(crate) retry: bool,
    /// What the client hears if no other try answers.
    pub(crate) refusal: Refusal,
    pub(crate) detail: String,
}

impl TryError {
    /// Judges what happened to a try on `backend`. `repeatable`: the request
    /// is idempotent (by method or `Idempotency-Key`) and its body is
    /// buffered, so sending it again cannot do anything twice.
    pub(crate) fn judge(happened: Happened, backend: &str, repeatable: bool) -> TryError {
        match happened {
            Happened::NotConnected(why) => TryError {
                fault: Fault::BackendBeforeSend,
                connect_timed_out: false,
                // Nothing was sent: any request may go elsewhere.
                retry: true,
                refusal: Refusal::NoBackend,
                detail: format!("{backend} could not be reached: {why}"),
            },
            Happened::ConnectTimedOut(timeout) => TryError {
                fault: Fault::BackendBeforeSend,
                connect_timed_out: true,
                retry: true,
                refusal: Refusal::NoBackend,
                detail: format!(
                    "{backend} took no connection within {} ms",
                    timeout.as_millis()
                ),
            },
            Happened::Broke(err) => TryError {
                fault: Fault::BackendAfterSend,
                connect_timed_out: false,
                retry: repeatable,
                refusal: Refusal::BadGateway,
                detail: format!("{backend} failed while answering: {err}"),
            },
            Happened::NoAnswerInTime(timeout) => TryError {
                fault: Fault::BackendAfterSend,
                connect_timed_out: false,
                retry: repeatable,
                refusal: Refusal::UpstreamTimeout,
                detail: format!("{backend} did not answer within {} ms", timeout.as_millis()),
            },
            Happened::ClientBody { too_large, detail } => TryError::client(
                if too_large {
                    Refusal::PayloadTooLarge
                } else {
                    Refusal::BadRequest
                },
                detail,
            ),
            Happened::Abandoned => TryError::client(
                Refusal::ClientGone,
                format!("the client reset the request while {backend} was answering"),
            ),
        }
    }

    /// The client's own request is at fault; no backend is tried.
    pub(crate) fn client(refusal: Refusal, detail: String) -> TryError {
        TryError {
            fault: Fault::Client,
            connect_timed_out: false,
            retry: false,
            refusal,
            detail,
        }
    }

    /// No backend is left to try.
    pub(crate) fn no_backend() -> TryError {
        TryError {
            fault: Fault::Gateway,
            connect_timed_out: false,
            retry: false,
            refusal: Refusal::NoBackend,
            detail: "no backend is available".to_string(),
        }
    }

    /// The backend's answer carries transfer codings that an HTTP/1.0
    /// client cannot be sent, and the gateway does not undo them.
    pub(crate) fn unrelayable(backend: &str) -> TryError {
        TryError {
            fault: Fault::Gateway,
            connect_timed_out: false,
            retry: false,
            refusal: Refusal::BadGateway,
            detail: format!(
                "{backend} answered with a transfer coding an HTTP/1.0 client cannot be sent"
            ),
        }
    }

    /// Every backend is at its limit and the request's wait in the queue
    /// ran out, or the queue is full: a deliberate answer, not an error.
    pub(crate) fn queue(refusal: Refusal, detail: String) -> TryError {
        TryError {
            fault: Fault::Gateway,
            connect_timed_out: false,
            retry: false,
            refusal,
            detail,
        }
    }

    /// What the failure shows of the backend, if it is to blame. A connect
    /// that timed out while the backend keeps answering on its other
    /// connections (it spoke within `hung_after`) shows it busy, not dead.
    pub(crate) fn lesson(&self, silent_for: Duration, hung_after: Duration) -> Option<Lesson> {
        match self.fault {
            Fault::BackendBeforeSend if self.connect_timed_out && silent_for < hung_after => {
                Some(Lesson::Busy)
            }
            Fault::BackendBeforeSend => Some(Lesson::Unreachable),
            Fault::BackendAfterSend => Some(Lesson::FailedAfterSend),
            Fault::Client | Fault::Gateway => None,
        }
    }

    /// The `reason` label of `gateway_retries_total` for a retry after it.
    pub(crate) fn retry_reason(&self) -> &'static str {
        match (self.fault, self.refusal) {
            (Fault::BackendBeforeSend, _) => "connect",
            (_, Refusal::UpstreamTimeout) => "timeout",
            _ => "reset",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unreached_backend_frees_any_request_for_another_try() {
        let refused = TryError::judge(Happened::NotConnected("refused".into()), "shop-1", false);
        assert_eq!(
            (refused.fault, refused.retry),
            (Fault::BackendBeforeSend, true)
        );
        assert_eq!(refused.refusal, Refusal::NoBackend);
        let (heard, silent) = (Duration::from_millis(100), Duration::from_secs(3));
        let hung_after = Duration::from_secs(2);
        assert_eq!(refused.lesson(heard, hung_after), Some(Lesson::Unreachable));
        let slow = TryError::judge(
            Happened::ConnectTimedOut(Duration::from_millis(250)),
            "shop-1",
            false,
        );
        assert!(slow.retry, "nothing was sent");
        assert_eq!(
            slow.lesson(heard, hung_after),
            Some(Lesson::Busy),
            "it answers on its other connections: busy"
        );
        assert_eq!(
            slow.lesson(silent, hung_after),
            Some(Lesson::Unreachable),
            "silent for longer than hung_after: hung"
        );
        for repeatable in [false, true] {
            let reset = TryError::judge(
                Happened::Broke(io::Error::from(io::ErrorKind::ConnectionReset)),
                "shop-1",
                repeatable,
            );
            assert_eq!(reset.fault, Fault::BackendAfterSend);
            assert_eq!(reset.retry, repeatable, "after send only if repeatable");
            assert_eq!(reset.retry_reason(), "reset");
            let late = TryError::judge(
                Happened::NoAnswerInTime(Duration::from_secs(5)),
                "shop-1",
                repeatable,
            );
            assert_eq!(
                (late.refusal, late.retry),
                (Refusal::UpstreamTimeout, repeatable)
            );
            assert_eq!(late.retry_reason(), "timeout");
        }
        let body = Happened::ClientBody {
            too_large: true,
            detail: "big".into(),
        };
        let client = TryError::judge(body, "shop-1", true);
        assert_eq!(
            (client.fault, client.retry, client.refusal),
            (Fault::Client, false, Refusal::PayloadTooLarge)
        );
        assert_eq!(
            client.lesson(Duration::ZERO, Duration::ZERO),
            None,
            "a client's fault teaches nothing"
        );
    }
}
