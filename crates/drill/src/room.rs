//! What the drill learns of a waiting room in front of the shops: how
//! each customer's visit ended, and the stamps their tickets carry (read,
//! not verified: the gateway's own clock, so the judgement does not
//! depend on the drill's, which runs late on a loaded machine). The
//! oracle's room invariants are computed here, as pure functions.

use flashguard_ticket::{draw, Ticket};
use serde::Serialize;

use crate::customer::Ending;

/// A ticket's stamps, for an admitted customer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) issued_ms: u64,
    pub(crate) admitted_ms: u64,
    pub(crate) presale: bool,
    pub(crate) nonce: u64,
    pub(crate) first_eta_s: u32,
}

impl From<Ticket> for Stamp {
    fn from(t: Ticket) -> Stamp {
        Stamp {
            issued_ms: t.issued_ms,
            admitted_ms: t.admitted_ms,
            presale: t.presale,
            nonce: t.nonce,
            first_eta_s: t.first_eta_s,
        }
    }
}

/// The room's side of the books.
#[derive(Debug, Default)]
pub(crate) struct RoomBooks {
    /// Admitted customers' stamps.
    pub(crate) stamps: Vec<Stamp>,
    /// Customers shown a place in line at least once.
    pub(crate) waited: u64,
    pub(crate) gave_up_waiting: u64,
    pub(crate) told_sold_out: u64,
    pub(crate) told_sale_ended: u64,
    /// Visits that ended on errors: never properly answered.
    pub(crate) unanswered: u64,
    /// Orders accepted while the customer's ticket said they were in line.
    pub(crate) bypassed_orders: u64,
    /// Requests of customers already let in that the room held back (every
    /// shop stayed full): answered, and the customer came back.
    pub(crate) held_back: u64,
}

impl RoomBooks {
    pub(crate) fn ended(&mut self, ending: Ending, waited: bool, ticket: Option<Ticket>) {
        self.waited += u64::from(waited);
        match ending {
            Ending::GaveUpWaiting => self.gave_up_waiting += 1,
            Ending::SoldOut => self.told_sold_out += 1,
            Ending::SaleEnded => self.told_sale_ended += 1,
            Ending::GaveUp => self.unanswered += 1,
            Ending::Ordered | Ending::Refused => {}
        }
        if let Some(ticket) = ticket.filter(|t| t.admitted_ms > 0) {
            self.stamps.push(ticket.into());
        }
    }

    pub(crate) fn absorb(&mut self, other: RoomBooks) {
        self.stamps.extend(other.stamps);
        self.waited += other.waited;
        self.gave_up_waiting += other.gave_up_waiting;
        self.told_sold_out += other.told_sold_out;
        self.told_sale_ended += other.told_sale_ended;
        self.unanswered += other.unanswered;
        self.bypassed_orders += other.bypassed_orders;
        self.held_back += other.held_back;
    }
}

/// How far apart two arrivals must be for a later one let in first to
/// count as an overtake: a second (the line itself is exact to a tenth).
const OVERTAKE_MS: u64 = 1_000;

/// Customers let in after someone who arrived more than a second later
/// (first in, first out), plus lottery entrants let in after someone with
/// a higher draw under the published `seed` (every entrant counts when no
/// seed was published).
pub(crate) fn fairness_overtakes(stamps: &[Stamp], seed: Option<&[u8]>) -> u64 {
    let mut fifo: Vec<(u64, u64)> = stamps
        .iter()
        .filter(|s| !s.presale)
        .map(|s| (s.issued_ms, s.admitted_ms))
        .collect();
    fifo.sort_unstable();
    let overtaken = |order: &[(u64, u64)], later: &dyn Fn(usize) -> usize| {
        // The earliest turn among everyone from each position on.
        let mut earliest_after = vec![u64::MAX; order.len() + 1];
        for at in (0..order.len()).rev() {
            earliest_after[at] = earliest_after[at + 1].min(order[at].1);
        }
        (0..order.len())
            .filter(|&at| earliest_after[later(at)] < order[at].1)
            .count() as u64
    };
    let fifo_overtakes = overtaken(&fifo, &|at| {
        fifo.partition_point(|(issued, _)| *issued <= fifo[at].0 + OVERTAKE_MS)
    });
    let presale: Vec<&Stamp> = stamps.iter().filter(|s| s.presale).collect();
    let lottery_overtakes = match seed {
        None => presale.len() as u64,
        Some(seed) => {
            let mut drawn: Vec<(u64, u64)> = presale
                .iter()
                .map(|s| (draw(seed, s.nonce), s.admitted_ms))
                .collect();
            drawn.sort_unstable();
            overtaken(&drawn, &|at| at + 1)
        }
    };
    fifo_overtakes + lottery_overtakes
}

/// The room's figures in the report (`waiting_room` in report.json).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WaitingRoomReport {
    /// Customers shown a place in line at least once.
    pub customers_waited: u64,
    /// Those who gave up after their patience while shown a place.
    pub gave_up_waiting: u64,
    /// Those told the sale sold out.
    pub told_sold_out: u64,
    /// Those told the sale's window had closed.
    pub told_sale_ended: u64,
    /// Requests of customers already let in that the room held back, every
    /// shop full for as long as a request may wait ("come back", still in)
    /// — the gateway's queue's 503 is what they would have got without it.
    pub held_back: u64,
    /// From arrival to turn, for customers let in after waiting.
    pub wait_s: Spread,
    /// Actual wait ÷ the first estimate shown.
    pub eta_ratio: Spread,
}

/// Quantiles of a sample (0 when empty).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Spread {
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Spread {
        if values.is_empty() {
            return Spread::default();
        }
        values.sort_by(f64::total_cmp);
        let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
        Spread {
            p50: at(0.5),
            p90: at(0.9),
            max: at(1.0),
        }
    }
}

impl RoomBooks {
    pub(crate) fn report(&self) -> WaitingRoomReport {
        // Waited: their turn came after their arrival.
        let waited: Vec<&Stamp> = self
            .stamps
            .iter()
            .filter(|s| s.admitted_ms > s.issued_ms && s.first_eta_s > 0)
            .collect();
        let seconds = |s: &&Stamp| (s.admitted_ms - s.issued_ms) as f64 / 1000.0;
        WaitingRoomReport {
            customers_waited: self.waited,
            gave_up_waiting: self.gave_up_waiting,
            told_sold_out: self.told_sold_out,
            told_sale_ended: self.told_sale_ended,
            held_back: self.held_back,
            wait_s: Spread::of(waited.iter().map(seconds).collect()),
            eta_ratio: Spread::of(
                waited
                    .iter()
                    .map(|s| seconds(s) / f64::from(s.first_eta_s))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fifo(issued_ms: u64, admitted_ms: u64) -> Stamp {
        Stamp {
            issued_ms,
            admitted_ms,
            presale: false,
            nonce: 0,
            first_eta_s: 10,
        }
    }

    #[test]
    fn a_fair_line_has_no_overtakes_and_an_unfair_one_is_counted() {
        let fair = [
            fifo(0, 5_000),
            fifo(500, 5_000),
            fifo(2_000, 6_000),
            fifo(9_000, 9_000),
        ];
        assert_eq!(fairness_overtakes(&fair, None), 0);
        // Arrived at 3 s, let in before the one who came at 1 s: one
        // overtake. Within a second of each other: none.
        let unfair = [fifo(1_000, 8_000), fifo(3_000, 7_000), fifo(2_500, 8_100)];
        assert_eq!(fairness_overtakes(&unfair, None), 1);
    }

    #[test]
    fn a_lottery_is_fair_when_the_published_seed_reproduces_its_order() {
        let seed = [3u8; 32];
        let mut entrants: Vec<Stamp> = (1..=20u64)
            .map(|nonce| Stamp {
                issued_ms: 100,
                admitted_ms: 0,
                presale: true,
                nonce,
                first_eta_s: 30,
            })
            .collect();
        entrants.sort_by_key(|s| draw(&seed, s.nonce));
        for (n, s) in entrants.iter_mut().enumerate() {
            s.admitted_ms = 10_000 + n as u64 / 5 * 100;
        }
        assert_eq!(fairness_overtakes(&entrants, Some(&seed)), 0);
        // Another seed does not reproduce it; no seed at all proves nothing.
        assert!(fairness_overtakes(&entrants, Some(&[4u8; 32])) > 0);
        assert_eq!(fairness_overtakes(&entrants, None), 20);
    }

    #[test]
    fn waits_and_estimates_are_summarised() {
        let books = RoomBooks {
            stamps: vec![fifo(0, 10_000), fifo(0, 20_000), fifo(5_000, 5_000)],
            waited: 2,
            ..RoomBooks::default()
        };
        let report = books.report();
        assert_eq!(report.customers_waited, 2);
        assert_eq!(report.wait_s.max, 20.0);
        assert_eq!(report.eta_ratio.p90, 2.0);
    }
}
