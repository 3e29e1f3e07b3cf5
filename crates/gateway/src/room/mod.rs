//! The waiting room: when more customers come than the shops can serve,
//! they wait in line at the gateway instead of retrying into 503s.
//!
//! - A customer's place is a signed ticket (`flashguard_ticket`) they
//!   carry, as a cookie or a `Flashguard-Ticket` header; the gateway
//!   keeps no record per customer. The line (`line`) is counts per tenth
//!   of a second of arrival and a frontier, so a million customers in
//!   line cost the gateway a few hundred kilobytes.
//! - Every visitor to a guarded path gets a ticket, even while the room
//!   is off (pre-admitted), so turning it on never sends those already
//!   shopping to the back.
//! - Customers are let in at a rate that follows what the backends take
//!   (`adapt`), under the configured bound and the cap on active
//!   sessions.
//! - Tickets per client network are limited (`issuance`): dropping a
//!   cookie to start again gains nothing once the limit is reached.
//! - When the sale's items are sold out, everyone waiting is told at once.
//!
//! Several gateways with the same key read each other's tickets; each
//! admits `1/gateways` of the rate and of the sessions, and counts in its
//! own line a waiting ticket it had not counted (`Ticket::line`).

mod adapt;
pub(crate) mod again;
pub mod config;
mod issuance;
pub(crate) mod line;
mod metrics;
pub(crate) mod page;
mod stock;

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

use flashguard_ticket::{Invalid, Ticket};
use sha2::{Digest, Sha256};

pub use config::{Activation, RoomFile, RoomRules};
pub(crate) use metrics::RoomMetrics;
pub(crate) use stock::watch_stock;

use adapt::Adaptive;
use issuance::{client_network, Issuance};
use line::{Line, Order};

/// The cookie that carries a ticket.
pub(crate) const COOKIE: &str = "fg_ticket";
/// A ticket is signed again with a fresh "last seen" at most this often
/// for a customer who is in.
const RENEW_MS: u64 = 30_000;

/// Where the sale stands, as the shops' catalogue says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Sale {
    Unknown,
    Upcoming,
    Open,
    Ended,
    SoldOut,
}

impl Sale {
    fn code(self) -> u8 {
        self as u8
    }

    fn of(code: u8) -> Sale {
        [
            Sale::Unknown,
            Sale::Upcoming,
            Sale::Open,
            Sale::Ended,
            Sale::SoldOut,
        ]
        .get(usize::from(code))
        .copied()
        .unwrap_or(Sale::Unknown)
    }
}

/// What the room decided for a request to a guarded path.
#[derive(Debug)]
pub(crate) enum Gate {
    /// Through to the backends; with a ticket to hand back when it is
    /// new or renewed.
    Pass(Option<String>),
    /// Not yet: where the customer stands.
    Wait(Waiting),
    /// The sale is over — sold out or its window closed — while they
    /// waited (or before they came): `sale` says which, with the ticket.
    Over { ticket: String, sale: Sale },
    /// This client network has had its share of new tickets this minute.
    TooManyTickets,
}

/// A waiting customer's standing, as the page and the JSON show it.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Waiting {
    #[serde(skip)]
    pub(crate) ticket: String,
    /// 1 is next; `None` before a lottery's draw.
    pub(crate) position: Option<u64>,
    pub(crate) eta_s: u64,
    /// When to come back.
    pub(crate) retry_after_s: u64,
    pub(crate) sale: Sale,
    /// For lottery entrants before the opening.
    pub(crate) draw_at_ms: Option<u64>,
}

/// What the room reports to the gateway's event log (and so to the
/// monitor's timeline).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Notice {
    On(String),
    Off(String),
    Rate(String),
    SoldOut(String),
    SaleEnded(String),
}

/// The state behind the room's lock.
#[derive(Debug)]
struct Inner {
    line: Line,
    adaptive: Adaptive,
    /// `max_active`, which a reload changes (`retune`); `rules`' own is
    /// the value at start.
    max_active: u64,
    issuance: Issuance,
    /// For `activation = "full"`: since when the backends have been full,
    /// and since when calm.
    full_since_ms: Option<u64>,
    calm_since_ms: Option<u64>,
    abandoned_reported: u64,
    longest_wait_ms: u64,
    /// Customers who came in: turns taken and newcomers let straight in
    /// (what the adaptive rate checks it is in use against).
    entered: u64,
    /// Customers let in per second from the line, averaged over the last
    /// seconds: what the estimates of the wait are made from (the rate
    /// set is a bound; this is what the line actually moves at).
    moving: Moving,
    door: Door,
}

/// Customers whose turn has come go in at the rate, with a second's worth
/// at once at most. A turn comes when the frontier passes, but the
/// customer comes in when they come back, up to the advised interval
/// later: those told the same interval come back together (measured: 1,308
/// in one second against a rate of 178, after which the shops' queue ran
/// out its time for hundreds). The door spreads them out: one who finds
/// it busy keeps their turn and is told to come back in a second, without
/// taking a slot at a shop or a place in the gateway's queue meanwhile.
#[derive(Debug, Default)]
struct Door {
    tokens: f64,
    last_ms: u64,
}

impl Door {
    fn pass(&mut self, rate: f64, now_ms: u64) -> bool {
        let seconds = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = self.last_ms.max(now_ms);
        self.tokens = (self.tokens + rate * seconds).min(rate.max(1.0));
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

/// The line's measured speed.
#[derive(Debug, Default)]
struct Moving {
    per_s: f64,
    this_second: u64,
    second_start_ms: u64,
}

impl Moving {
    fn count(&mut self, let_in: u64, now_ms: u64) {
        self.this_second += let_in;
        if self.second_start_ms == 0 {
            self.second_start_ms = now_ms;
        }
        let elapsed = now_ms.saturating_sub(self.second_start_ms);
        if elapsed >= 1_000 {
            let last = self.this_second as f64 * 1_000.0 / elapsed as f64;
            // About the last five seconds.
            self.per_s = if self.per_s == 0.0 {
                last
            } else {
                self.per_s * 0.8 + last * 0.2
            };
            self.this_second = 0;
            self.second_start_ms = now_ms;
        }
    }
}

#[derive(Debug)]
pub(crate) struct Room {
    pub(crate) rules: RoomRules,
    /// This process's line: a waiting ticket that names another is
    /// counted here on its first visit.
    line_id: u32,
    on: AtomicBool,
    sale: AtomicU8,
    inner: Mutex<Inner>,
    metrics: RoomMetrics,
}

/// What the gateway sees of the backends, each beat.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pressure {
    /// Requests waiting in the gateway's queue for a backend.
    pub(crate) queued: usize,
    /// Requests the queue refused or timed out, ever (a counter).
    pub(crate) queue_refusals: u64,
    /// Requests on the backends that serve, and their concurrency limits
    /// added up: at the limit, the backends are as busy as their latency
    /// allows (the limits shrink as it rises), even before anything
    /// queues.
    pub(crate) in_flight: u64,
    pub(crate) limit: u64,
}

impl Pressure {
    /// Whether the backends are full this beat: requests queue, or nine
    /// tenths of every serving backend's limit is taken.
    pub(crate) fn full(&self) -> bool {
        self.queued > 0 || (self.limit > 0 && self.in_flight * 10 >= self.limit * 9)
    }
}

fn unix_ms() -> u64 {
    u64::try_from(flashguard_telemetry::unix_ms()).unwrap_or(0)
}

impl Room {
    pub(crate) fn new(rules: RoomRules, metrics: RoomMetrics) -> Room {
        let now = unix_ms();
        if !rules.keyed {
            tracing::warn!(
                "the waiting room has no key (waiting_room.key or FLASHGUARD_ROOM_KEY): \
                 a random one signs tickets, so places do not survive a restart"
            );
        }
        // The lottery's seed is the same on every gateway with the key (so
        // their draws agree), and reveals nothing of the key.
        let seed: [u8; 32] = {
            let mut hash = Sha256::new();
            hash.update(b"flashguard lottery seed");
            hash.update(&rules.keys[0].secret);
            hash.update(rules.room_id.to_be_bytes());
            hash.finalize().into()
        };
        let line = Line::new(rules.mode, rules.opens_ms.unwrap_or(0), seed, now);
        let adaptive = Adaptive::new(&rules);
        metrics.admit_rate.set(adaptive.rate());
        metrics
            .on
            .set(i64::from(rules.activation == Activation::Always));
        Room {
            line_id: fastrand::u32(..),
            on: AtomicBool::new(rules.activation == Activation::Always),
            sale: AtomicU8::new(Sale::Unknown.code()),
            inner: Mutex::new(Inner {
                line,
                adaptive,
                max_active: rules.max_active,
                issuance: Issuance::new(now),
                full_since_ms: None,
                calm_since_ms: None,
                abandoned_reported: 0,
                longest_wait_ms: 0,
                entered: 0,
                moving: Moving::default(),
                door: Door::default(),
            }),
            metrics,
            rules,
        }
    }

    /// What a reload changes while customers wait: the rate's bounds
    /// (`admit_per_s`, `min_admit_per_s`) and `max_active`, so an operator
    /// can let customers in faster once the shops have grown, or slower,
    /// without a restart (the line and every place in it stay). The rest
    /// of `[waiting_room]` is read only at start.
    pub(crate) fn retune(&self, rules: &RoomRules) {
        let mut inner = self.lock();
        inner.max_active = rules.max_active;
        inner.adaptive.set_bounds(rules);
        self.metrics.admit_rate.set(inner.adaptive.rate());
    }

    /// Customers in line now.
    pub(crate) fn waiting(&self) -> u64 {
        self.lock().line.waiting()
    }

    pub(crate) fn is_on(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    pub(crate) fn sale(&self) -> Sale {
        Sale::of(self.sale.load(Ordering::Relaxed))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides a request to a guarded path from `client` presenting
    /// `presented` (a ticket's text, if any).
    pub(crate) fn gate(&self, presented: Option<&str>, client: IpAddr) -> Gate {
        let now = unix_ms();
        let network = client_network(client);
        let ticket = presented.and_then(|text| self.check(text, network, now));
        let on = self.is_on();
        let sale = self.sale();
        let over = matches!(sale, Sale::SoldOut | Sale::Ended);
        match ticket {
            Some(mut ticket) if ticket.admitted_ms > 0 => {
                let renew = now.saturating_sub(ticket.seen_ms) >= RENEW_MS;
                Gate::Pass(renew.then(|| {
                    ticket.seen_ms = now;
                    self.seal(&ticket)
                }))
            }
            Some(ticket) if !on => self.let_in(ticket, now, now),
            Some(ticket) if over => self.tell_over(&ticket, sale),
            Some(ticket) => self.in_line(ticket, now),
            None => self.arrive(network, now, on, over.then_some(sale)),
        }
    }

    /// The ticket presented, if it is worth a place: genuine, of this
    /// event, from the client it was issued to, and not expired.
    fn check(&self, text: &str, network: u32, now: u64) -> Option<Ticket> {
        let refused = |reason| {
            self.metrics.refused(reason);
            None
        };
        let ticket = match Ticket::open(text, &self.rules.keys) {
            Ok(ticket) => ticket,
            Err(Invalid::Malformed) => return refused("malformed"),
            Err(Invalid::UnknownKey | Invalid::Forged) => return refused("forged"),
        };
        if ticket.room != self.rules.room_id {
            return refused("other_event");
        }
        if self.rules.bind_client && ticket.client != network {
            return refused("copied");
        }
        let lasts = if ticket.admitted_ms > 0 {
            self.rules.session
        } else {
            self.rules.keep_place
        };
        if now > ticket.seen_ms.saturating_add(lasts.as_millis() as u64) {
            return refused("expired");
        }
        Some(ticket)
    }

    fn seal(&self, ticket: &Ticket) -> String {
        ticket.seal(&self.rules.keys[0])
    }

    /// In: the ticket says so from `turn` on.
    fn let_in(&self, mut ticket: Ticket, turn: u64, now: u64) -> Gate {
        ticket.admitted_ms = turn.max(ticket.issued_ms);
        ticket.seen_ms = now;
        Gate::Pass(Some(self.seal(&ticket)))
    }

    /// A customer with a place comes back.
    fn in_line(&self, mut ticket: Ticket, now: u64) -> Gate {
        let mut inner = self.lock();
        if ticket.line != self.line_id {
            inner.line.join(ticket.issued_ms, ticket.presale);
            ticket.line = self.line_id;
        }
        let turn = inner
            .line
            .turn(ticket.issued_ms, ticket.presale, ticket.nonce);
        let rate = inner.adaptive.rate();
        if turn.is_some() && !inner.door.pass(rate, now) {
            self.metrics.door_busy.inc();
            let waiting = self.standing(&inner, &mut ticket, now);
            return Gate::Wait(waiting);
        }
        if let Some(turn) = turn {
            inner.line.came(ticket.issued_ms);
            inner.entered += 1;
            let waited_ms = turn.saturating_sub(ticket.issued_ms);
            inner.longest_wait_ms = inner.longest_wait_ms.max(waited_ms);
            drop(inner);
            self.metrics.admitted.inc();
            self.metrics.wait.observe(waited_ms as f64 / 1000.0);
            self.metrics.longest_wait.set(
                self.metrics
                    .longest_wait
                    .get()
                    .max(waited_ms as f64 / 1000.0),
            );
            if ticket.first_eta_s > 0 {
                let ratio = waited_ms as f64 / 1000.0 / f64::from(ticket.first_eta_s);
                self.metrics.eta_ratio.observe(ratio);
            }
            return self.let_in(ticket, turn, now);
        }
        let waiting = self.standing(&inner, &mut ticket, now);
        drop(inner);
        Gate::Wait(waiting)
    }

    /// Where a waiting ticket stands; the ticket is seen now, and keeps
    /// the first estimate it was shown.
    fn standing(&self, inner: &Inner, ticket: &mut Ticket, now: u64) -> Waiting {
        let line = &inner.line;
        // The speed the line has moved at lately; the rate set until it
        // has moved.
        let rate = match inner.moving.per_s {
            speed if speed > 0.0 => speed,
            _ => inner.adaptive.rate(),
        }
        .max(0.01);
        let before_draw = ticket.presale && now < line.opens_ms();
        let ahead = line
            .standing(ticket.issued_ms, ticket.presale, ticket.nonce)
            .ahead;
        // Those ahead who will not come back cost nothing.
        let until_draw_s = line.opens_ms().saturating_sub(now) / 1000;
        let eta_s = ((ahead + 1) as f64 * line.show_up() / rate).ceil() as u64
            + if ticket.presale { until_draw_s } else { 0 };
        if ticket.first_eta_s == 0 {
            ticket.first_eta_s = u32::try_from(eta_s.max(1)).unwrap_or(u32::MAX);
        }
        ticket.seen_ms = now;
        // Back often enough to be let in soon after the turn (and to hear
        // at once if the sale sells out), not so often that the line's
        // own answers crowd the gateway: a sixth of the wait, between 1
        // and 10 s.
        let retry_after_s = if before_draw {
            until_draw_s.clamp(1, 10)
        } else {
            (eta_s / 6).clamp(1, 10)
        };
        Waiting {
            ticket: self.seal(ticket),
            position: (!before_draw).then_some(ahead + 1),
            eta_s,
            retry_after_s,
            sale: self.sale(),
            draw_at_ms: before_draw.then_some(line.opens_ms()),
        }
    }

    /// The sale is over (`sale` says how): the customer is told so.
    fn tell_over(&self, ticket: &Ticket, sale: Sale) -> Gate {
        match sale {
            Sale::Ended => self.metrics.sale_ended_notices.inc(),
            _ => self.metrics.sold_out_notices.inc(),
        };
        Gate::Over {
            ticket: self.seal(ticket),
            sale,
        }
    }

    /// A first visit (or one whose ticket is worth nothing); `over` when
    /// the sale is.
    fn arrive(&self, network: u32, now: u64, on: bool, over: Option<Sale>) -> Gate {
        let mut inner = self.lock();
        let per_minute = self.rules.tickets_per_client_per_min;
        if !inner.issuance.allow(network, per_minute, now) {
            drop(inner);
            self.metrics.refused("issuance");
            // While the room is off nobody waits: through, without a ticket.
            return if on {
                Gate::TooManyTickets
            } else {
                Gate::Pass(None)
            };
        }
        self.metrics.issued.inc();
        let presale = on && inner.line.presale(now);
        let mut ticket = Ticket {
            room: self.rules.room_id,
            nonce: fastrand::u64(..),
            client: network,
            issued_ms: now,
            seen_ms: now,
            admitted_ms: 0,
            first_eta_s: 0,
            presale,
            line: self.line_id,
        };
        if !on {
            drop(inner);
            return self.let_in(ticket, now, now);
        }
        if let Some(sale) = over {
            drop(inner);
            return self.tell_over(&ticket, sale);
        }
        if inner.line.admit_now(now) {
            inner.entered += 1;
            drop(inner);
            return self.let_in(ticket, now, now);
        }
        inner.line.join(now, presale);
        let waiting = self.standing(&inner, &mut ticket, now);
        Gate::Wait(waiting)
    }

    /// The answer for a customer the room let in whose request found the
    /// shops full for as long as it may wait (`proxy::room::hold_back`):
    /// come back in `retry_after_s`, still let in.
    pub(crate) fn held_back(
        &self,
        shape: page::Shape,
        retry_after_s: u64,
        again: &again::Again,
    ) -> page::Answer {
        self.metrics.held_back.inc();
        page::held_back_answer(self.sale(), shape, retry_after_s.max(1), again)
    }

    /// What a holder of `presented` may read of their place without
    /// taking a step in line (`GET /waiting-room`).
    pub(crate) fn peek(&self, presented: Option<&str>, client: IpAddr) -> Option<Waiting> {
        let now = unix_ms();
        let mut ticket = self.check(presented?, client_network(client), now)?;
        if ticket.admitted_ms > 0 {
            return None;
        }
        let inner = self.lock();
        Some(self.standing(&inner, &mut ticket, now))
    }

    /// The beat (every 100 ms): whether the room is on, the rate, the
    /// admissions earned. Returns what changed.
    pub(crate) fn tick(&self, pressure: Pressure) -> Vec<Notice> {
        let now = unix_ms();
        let mut notices = Vec::new();
        let mut inner = self.lock();
        let wanted = self.wanted_on(&mut inner, pressure, now);
        if let Some((on, why)) = wanted {
            if on != self.is_on() {
                self.on.store(on, Ordering::Relaxed);
                self.metrics.on.set(i64::from(on));
                notices.push(if on {
                    Notice::On(why)
                } else {
                    Notice::Off(why)
                });
            }
        }
        let waiting = inner.line.waiting();
        let entered = inner.entered;
        if let Some(why) = inner.adaptive.beat(pressure, waiting, entered, now) {
            notices.push(Notice::Rate(why));
        }
        let rate = inner.adaptive.rate();
        let cap = inner.max_active / u64::from(self.rules.gateways);
        let session_ms = self.rules.session.as_millis() as u64;
        let let_in = inner.line.advance(now, rate, cap.max(1), session_ms);
        if inner.line.waiting() > 0 || let_in > 0 {
            inner.moving.count(let_in, now);
        }
        let abandoned = inner.line.abandoned;
        let new_abandoned = abandoned - inner.abandoned_reported;
        inner.abandoned_reported = abandoned;
        let (waiting, active) = (inner.line.waiting(), inner.line.active());
        drop(inner);
        self.metrics.abandoned.inc_by(new_abandoned);
        self.metrics
            .waiting
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.metrics
            .active
            .set(i64::try_from(active).unwrap_or(i64::MAX));
        self.metrics.admit_rate.set(rate);
        notices
    }

    /// Whether the room should be on now, and why; `None`: unchanged.
    fn wanted_on(&self, inner: &mut Inner, pressure: Pressure, now: u64) -> Option<(bool, String)> {
        match self.rules.activation {
            Activation::Off => Some((false, "off".into())),
            Activation::Always => Some((true, "always on".into())),
            Activation::Sale => {
                let opens = self.rules.opens_ms.unwrap_or(0);
                let from = opens.saturating_sub(self.rules.pre_queue.as_millis() as u64);
                let until = self.rules.closes_ms.unwrap_or(u64::MAX);
                let on = (from..until).contains(&now);
                Some((
                    on,
                    if on {
                        "the sale window began"
                    } else {
                        "outside the sale window"
                    }
                    .into(),
                ))
            }
            Activation::Full => {
                if pressure.full() {
                    inner.calm_since_ms = None;
                    let since = *inner.full_since_ms.get_or_insert(now);
                    let full_for = now - since;
                    (full_for >= self.rules.full_after.as_millis() as u64).then(|| {
                        (
                            true,
                            format!(
                                "the backends full for {full_for} ms ({} of their {} slots taken, {} requests queued)",
                                pressure.in_flight, pressure.limit, pressure.queued
                            ),
                        )
                    })
                } else {
                    inner.full_since_ms = None;
                    if inner.line.waiting() > 0 {
                        inner.calm_since_ms = None;
                        return None;
                    }
                    let since = *inner.calm_since_ms.get_or_insert(now);
                    let calm_for = now - since;
                    (calm_for >= self.rules.calm_after.as_millis() as u64).then(|| {
                        (
                            false,
                            format!(
                                "nobody in line and no request queued for {} s",
                                calm_for / 1000
                            ),
                        )
                    })
                }
            }
        }
    }

    /// The shops' catalogue says where the sale stands.
    pub(crate) fn set_sale(&self, sale: Sale) -> Option<Notice> {
        let before = Sale::of(self.sale.swap(sale.code(), Ordering::Relaxed));
        if sale == before {
            return None;
        }
        let waiting = || self.lock().line.waiting();
        match sale {
            Sale::SoldOut => Some(Notice::SoldOut(format!(
                "{} sold out: {} customers in line are told at once",
                self.rules.skus.join(", "),
                waiting()
            ))),
            // Sold out first: those in line were told then.
            Sale::Ended if before != Sale::SoldOut => Some(Notice::SaleEnded(format!(
                "the sale of {} ended: {} customers in line are told at once",
                self.rules.skus.join(", "),
                waiting()
            ))),
            _ => None,
        }
    }

    /// The room in public (`GET /waiting-room.json`): its state, and the
    /// lottery's commitment (before the draw) or seed (after).
    pub(crate) fn public(&self) -> serde_json::Value {
        let inner = self.lock();
        let line = &inner.line;
        let now = unix_ms();
        let draw = line.draw();
        let lottery = (self.rules.mode == Order::Lottery).then(|| {
            serde_json::json!({
                "opens_at_ms": line.opens_ms(),
                "commitment_sha256": draw.commitment,
                "seed": (now >= line.opens_ms()).then(|| draw.seed_hex()),
                "draw": "first 8 bytes of HMAC-SHA256(seed, ticket nonce as 8 big-endian bytes), big-endian; lowest first",
            })
        });
        serde_json::json!({
            "on": self.is_on(),
            "activation": self.rules.activation,
            "mode": self.rules.mode,
            "sale": self.sale(),
            "waiting": line.waiting(),
            // The line's memory is about 24 bytes a bucket.
            "line_buckets": line.buckets(),
            "active_sessions": line.active(),
            "admit_per_s": inner.adaptive.rate(),
            "gateways": self.rules.gateways,
            "lottery": lottery,
        })
    }

    /// Issues `count` tickets as `count` first visits from distinct
    /// networks would, through the same path (`POST /admin/room/rehearse`):
    /// to see what a crowd costs without a socket per customer.
    pub(crate) fn rehearse_arrivals(&self, count: u64) -> u64 {
        let mut issued = 0;
        for n in 0..count {
            // 2001:db8::/32, the documentation range: a /56 each.
            let network = 0x2001_0db8_u128 << 96 | u128::from(n) << 72;
            let ip = IpAddr::from(std::net::Ipv6Addr::from(network));
            if !matches!(self.gate(None, ip), Gate::TooManyTickets) {
                issued += 1;
            }
        }
        issued
    }
}

/// The ticket a request carries: the `Flashguard-Ticket` header, else the
/// `fg_ticket` cookie.
pub(crate) fn presented<'a>(
    header: Option<&'a [u8]>,
    cookies: impl Iterator<Item = &'a [u8]>,
) -> Option<&'a str> {
    if let Some(value) = header {
        return std::str::from_utf8(value).ok().map(str::trim);
    }
    for cookie_header in cookies {
        let Ok(text) = std::str::from_utf8(cookie_header) else {
            continue;
        };
        for pair in text.split(';') {
            if let Some((name, value)) = pair.trim().split_once('=') {
                if name == COOKIE {
                    return Some(value.trim_matches('"'));
                }
            }
        }
    }
    None
}
