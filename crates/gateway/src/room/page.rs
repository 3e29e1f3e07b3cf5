//! What the room answers, to browsers and to API clients.
//!
//! Status codes: a browser in line gets `200` with a page that refreshes
//! itself (a `<meta http-equiv="refresh">`, no JavaScript needed), as
//! Cloudflare's room does: the page is the answer the customer is meant
//! to see, and some browsers, extensions and intermediaries replace the
//! body of an error status with their own. It carries `Cache-Control:
//! no-store` so no cache keeps a place in line. An API client
//! (`Accept: application/json`, or any `/api/` path) gets `429` with
//! `Retry-After` and the same facts as JSON: a program must be able to
//! tell "not served yet, come back then" from success without parsing a
//! page, and 429 says it is the client's turn that has not come, not that
//! the server failed (it counts in nobody's error rate). Sold out is `409
//! sold_out`, the shop's own answer when stock runs out, so a client
//! handles both alike.

use bytes::{BufMut, BytesMut};
use http::StatusCode;

use super::again::Again;
use super::{Gate, Sale, Waiting, COOKIE};
use crate::html::NO_ICON;
use crate::http1::{put_field, put_number, put_status_line, AfterAnswer};

/// How the answer is shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Html,
    Json,
}

impl Shape {
    /// JSON for API paths and clients that ask for it.
    pub(crate) fn of(path: &str, accept: Option<&[u8]>) -> Shape {
        let asks_json = accept.is_some_and(|accept| {
            let accept = String::from_utf8_lossy(accept).to_ascii_lowercase();
            accept.contains("application/json") && !accept.contains("text/html")
        });
        if asks_json || path.starts_with("/api/") {
            Shape::Json
        } else {
            Shape::Html
        }
    }
}

/// The headers that hand a ticket to its holder: a cookie for browsers,
/// a header for API clients. `max_age_s`: how long the place is kept.
pub(crate) fn put_ticket(out: &mut BytesMut, ticket: &str, max_age_s: u64) {
    out.put_slice(b"set-cookie: ");
    out.put_slice(COOKIE.as_bytes());
    out.put_u8(b'=');
    out.put_slice(ticket.as_bytes());
    out.put_slice(b"; Path=/; Max-Age=");
    out.put_slice(itoa::Buffer::new().format(max_age_s).as_bytes());
    out.put_slice(b"; HttpOnly; SameSite=Lax\r\n");
    put_field(out, b"flashguard-ticket", ticket.as_bytes());
}

/// One answer of the room's, whole.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) shape: Shape,
    pub(crate) body: String,
    pub(crate) ticket: Option<String>,
    pub(crate) retry_after_s: Option<u64>,
    /// A media type other than the shape's (the status page's feed).
    pub(crate) media: Option<&'static str>,
}

impl Answer {
    pub(crate) fn content_type(&self) -> &'static str {
        self.media.unwrap_or(match self.shape {
            Shape::Html => "text/html; charset=utf-8",
            Shape::Json => "application/json",
        })
    }

    pub(crate) fn write(
        &self,
        out: &mut BytesMut,
        keep_s: u64,
        request_id: &[u8],
        after: AfterAnswer,
        extra: &[u8],
    ) {
        put_status_line(out, self.status, b"");
        put_field(out, b"content-type", self.content_type().as_bytes());
        put_number(out, b"content-length", self.body.len() as u64);
        put_field(out, b"cache-control", b"no-store");
        if let Some(seconds) = self.retry_after_s {
            put_number(out, b"retry-after", seconds);
        }
        if let Some(ticket) = &self.ticket {
            put_ticket(out, ticket, keep_s);
        }
        put_field(out, b"x-request-id", request_id);
        after.put(out);
        out.put_slice(extra);
        out.put_slice(b"\r\n");
        out.put_slice(self.body.as_bytes());
    }
}

/// The answer for a request the room holds back (`gate` said not to pass);
/// a page brings its customer back as `again` says.
pub(crate) fn answer(gate: Gate, shape: Shape, again: &Again) -> Option<Answer> {
    Some(match gate {
        Gate::Pass(_) => return None,
        Gate::Wait(waiting) => waiting_answer(waiting, shape, again),
        Gate::Over { ticket, sale } => Answer {
            status: match shape {
                Shape::Html => StatusCode::OK,
                Shape::Json => StatusCode::CONFLICT,
            },
            shape,
            body: match (shape, sale) {
                (Shape::Html, Sale::Ended) => sale_ended_page(),
                (Shape::Html, _) => sold_out_page(),
                (Shape::Json, Sale::Ended) => serde_json::json!({
                    "error": "sale_ended",
                    "status": "sale_ended",
                    "detail": "the sale ended while you waited; nothing more can be ordered in it",
                })
                .to_string(),
                (Shape::Json, _) => serde_json::json!({
                    "error": "sold_out",
                    "status": "sold_out",
                    "detail": "the sale sold out while you waited; nothing is left to order",
                })
                .to_string(),
            },
            ticket: Some(ticket),
            retry_after_s: None,
            media: None,
        },
        Gate::TooManyTickets => Answer {
            status: StatusCode::TOO_MANY_REQUESTS,
            shape: Shape::Json,
            body: serde_json::json!({
                "error": "too_many_tickets",
                "detail": "your network has taken many places in line this minute; keep the ticket you have (cookie or Flashguard-Ticket header) and come back",
            })
            .to_string(),
            ticket: None,
            retry_after_s: Some(60),
            media: None,
        },
    })
}

/// A place in line: the page, or JSON.
pub(crate) fn waiting_answer(waiting: Waiting, shape: Shape, again: &Again) -> Answer {
    let (status, body) = match shape {
        Shape::Html => (StatusCode::OK, waiting_page(&waiting, again)),
        Shape::Json => (
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({
                "status": "waiting",
                "position": waiting.position,
                "eta_s": waiting.eta_s,
                "retry_after_s": waiting.retry_after_s,
                "sale": waiting.sale,
                "draw_at_ms": waiting.draw_at_ms,
            })
            .to_string(),
        ),
    };
    Answer {
        status,
        shape,
        body,
        retry_after_s: Some(waiting.retry_after_s),
        ticket: Some(waiting.ticket),
        media: None,
    }
}

/// For a customer already let in whose request found every shop full for
/// as long as a request may wait: the same shapes and status codes as a
/// place in line (a page that brings them back as `again` says, or 429
/// `waiting` with `Retry-After`), saying they are in and need not queue
/// again. No ticket: the one they hold already lets them through.
pub(crate) fn held_back_answer(
    sale: Sale,
    shape: Shape,
    retry_after_s: u64,
    again: &Again,
) -> Answer {
    let (status, body) = match shape {
        Shape::Html => (StatusCode::OK, held_back_page(sale, retry_after_s, again)),
        Shape::Json => (
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({
                "status": "waiting",
                "held_back": true,
                "detail": "you are in, but every shop stayed busy for as long as a request may wait here; come back after Retry-After",
                "retry_after_s": retry_after_s,
                "sale": sale,
            })
            .to_string(),
        ),
    };
    Answer {
        status,
        shape,
        body,
        ticket: None,
        retry_after_s: Some(retry_after_s),
        media: None,
    }
}

fn held_back_page(sale: Sale, refresh: u64, again: &Again) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{NO_ICON}{tag}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Almost there</title><style>{STYLE}</style></head>\
         <body><h1 id=\"held-back\">You are in — one moment</h1>{sale}\
         <p>Your turn has come, but the shop is busy with the customers just ahead of you. \
         You keep your turn and do not queue again.</p>{back}</body></html>",
        tag = again.refresh_tag(refresh),
        sale = sale_line(sale),
        back = again.markup(refresh, &format!("This page tries again in {refresh} s.")),
    )
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.6rem}.big{font-size:3rem;font-weight:700;margin:.2rem 0}.muted{color:#666;font-size:.9rem}";

fn duration(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min {} s", seconds / 60, seconds % 60),
        _ => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
    }
}

fn sale_line(sale: Sale) -> &'static str {
    match sale {
        Sale::Unknown => "",
        Sale::Upcoming => "<p>The sale has not opened yet.</p>",
        Sale::Open => "<p>The sale is open and items are left.</p>",
        Sale::Ended => "<p>The sale has ended.</p>",
        Sale::SoldOut => "<p>Everything is sold out.</p>",
    }
}

fn waiting_page(waiting: &Waiting, again: &Again) -> String {
    let standing = match (waiting.position, waiting.draw_at_ms) {
        (Some(position), _) => format!(
            "<p>Your place in line</p><p class=\"big\" id=\"position\">{position}</p>\
             <p>Estimated wait: <strong id=\"eta\">{}</strong></p>",
            duration(waiting.eta_s)
        ),
        (None, _) => format!(
            "<p>You are in the draw. When the sale opens, in <strong id=\"eta\">{}</strong>, \
             everyone who came before the opening gets a place drawn at random; \
             the draw can be checked at <a href=\"/waiting-room.json\">/waiting-room.json</a>.</p>",
            duration(waiting.eta_s)
        ),
    };
    let refresh = waiting.retry_after_s;
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{NO_ICON}{tag}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>You are in line</title><style>{STYLE}</style></head>\
         <body><h1>You are in line</h1>{standing}{sale}{back}\
         <p class=\"muted\">Customers are let in in the order they arrived, \
         as fast as the shop can serve them.</p></body></html>",
        tag = again.refresh_tag(refresh),
        sale = sale_line(waiting.sale),
        back = again.markup(
            refresh,
            &format!(
                "This page refreshes itself every {refresh} s and lets you in when your turn comes. \
                 Keep it open; if you leave, your place is kept for a few minutes. \
                 Refreshing does not lose or improve your place."
            )
        ),
    )
}

fn sale_ended_page() -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{NO_ICON}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>The sale has ended</title><style>{STYLE}</style></head>\
         <body><h1 id=\"sale-ended\">The sale has ended</h1>\
         <p>The sale closed at its advertised time while you were in line. We are sorry; \
         we told you as soon as it closed.</p></body></html>"
    )
}

fn sold_out_page() -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{NO_ICON}\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Sold out</title><style>{STYLE}</style></head>\
         <body><h1 id=\"sold-out\">Sold out</h1>\
         <p>Everything in this sale has been sold. We are sorry you waited for nothing more; \
         we told you as soon as the last item went.</p></body></html>"
    )
}

/// `GET /waiting-room`: one's own place, without a step in line.
pub(crate) fn status_page(waiting: Option<&Waiting>, on: bool) -> String {
    match waiting {
        Some(waiting) => waiting_page(waiting, &Again::Refresh),
        None => format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{NO_ICON}\
             <title>Waiting room</title><style>{STYLE}</style></head><body><h1>Waiting room</h1>\
             <p>{}</p></body></html>",
            if on {
                "The waiting room is on. You have no place in line yet, or you are already in: go to the shop."
            } else {
                "The waiting room is off: go straight to the shop."
            }
        ),
    }
}
