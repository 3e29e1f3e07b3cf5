//! The line, without a record per customer: how many arrived in each tenth
//! of a second (a bucket), and a frontier — everyone who arrived before it
//! is admitted. The frontier moves forward a bucket at a time as admissions
//! are earned (a rate, bounded by the cap on active sessions), so customers
//! are let in in the order they arrived, at the granularity of a bucket.
//! A customer's place is their arrival stamp, signed into their ticket;
//! their position is the number of arrivals between the frontier and them.
//!
//! The lottery: customers who arrive before the sale opens are ordered by
//! a draw, `HMAC-SHA256(seed, nonce)`, instead of by arrival; a threshold
//! over the draws rises as admissions are earned. The seed is committed to
//! (its SHA-256 published) before the first ticket, and revealed once the
//! sale opens, so anyone can recompute the order. Arrivals after the
//! opening are admitted first in first out once every pre-sale customer
//! has been.
//!
//! Places nobody comes back for (abandoned) would stall a line that admits
//! by count (the weak spot of AWS's virtual waiting room). Here each
//! admitted bucket's show-up is counted as its customers come back, and
//! the share that did (averaged) discounts what later buckets cost.
//!
//! Pure: times come in as arguments, so the tests control the clock.

use std::collections::VecDeque;

use flashguard_ticket::{draw, hex};
use sha2::{Digest, Sha256};

/// The granularity of the line, in ms: customers who arrived within one
/// bucket are admitted together.
pub(crate) const BUCKET_MS: u64 = 100;
/// Buckets kept at most: a line an hour long at 100 ms. Beyond, buckets
/// are merged two by two (coarser, the memory bounded).
const MAX_BUCKETS: usize = 36_000;
/// How long after its admission a bucket's show-up is judged.
const SHOW_UP_GRACE_MS: u64 = 30_000;

/// The order the line keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// First in, first out, by arrival at the gateway.
    Fifo,
    /// Customers who arrive before the sale opens are placed by a draw
    /// when it opens; later ones first in, first out after them.
    Lottery,
}

/// Arrivals in one bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    start_ms: u64,
    end_ms: u64,
    count: u64,
}

/// A bucket let in, waiting to see how many of it come back.
#[derive(Debug, Clone, Copy)]
struct Admitted {
    at_ms: u64,
    start_ms: u64,
    end_ms: u64,
    expected: u64,
    came: u64,
}

/// The lottery's draw among pre-sale customers.
#[derive(Debug, Clone)]
pub(crate) struct Draw {
    seed: [u8; 32],
    /// SHA-256 of the seed, hex: published before the first ticket.
    pub(crate) commitment: String,
    /// Pre-sale customers.
    entrants: u64,
    /// Draws below this are admitted (out of 2^64).
    threshold: u64,
}

impl Draw {
    pub(crate) fn new(seed: [u8; 32]) -> Draw {
        let commitment = hex(&Sha256::digest(seed));
        Draw {
            seed,
            commitment,
            entrants: 0,
            threshold: 0,
        }
    }

    /// A ticket's draw: the first 8 bytes of HMAC-SHA256(seed, nonce).
    pub(crate) fn of(&self, nonce: u64) -> u64 {
        draw(&self.seed, nonce)
    }

    pub(crate) fn seed_hex(&self) -> String {
        hex(&self.seed)
    }

    fn done(&self) -> bool {
        self.threshold == u64::MAX
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Line {
    order: Order,
    /// Waiting arrivals, oldest first, each a bucket.
    buckets: VecDeque<Bucket>,
    /// Everyone who arrived before this (unix ms) is admitted.
    frontier_ms: u64,
    /// Admissions earned and not spent.
    tokens: f64,
    last_ms: u64,
    /// When the sale opens (lottery), unix ms.
    opens_ms: u64,
    draw: Draw,
    admitted: VecDeque<Admitted>,
    /// The share of admitted customers who came back (averaged).
    show_up: f64,
    /// Admissions per second over the session length, for the cap.
    sessions: VecDeque<(u64, u64)>,
    /// Places whose customers never came back, counted.
    pub(crate) abandoned: u64,
    /// When the frontier moved, and where to: a customer's turn is the
    /// moment the frontier passed their arrival (see `turn`).
    turns: VecDeque<(u64, u64)>,
    /// The same for the lottery's threshold.
    draws: VecDeque<(u64, u64)>,
}

/// Where a waiting ticket stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Standing {
    /// Customers ahead.
    pub(crate) ahead: u64,
}

impl Line {
    pub(crate) fn new(order: Order, opens_ms: u64, seed: [u8; 32], now_ms: u64) -> Line {
        Line {
            order,
            buckets: VecDeque::new(),
            frontier_ms: 0,
            tokens: 0.0,
            last_ms: now_ms,
            opens_ms,
            draw: Draw::new(seed),
            admitted: VecDeque::new(),
            show_up: 1.0,
            sessions: VecDeque::new(),
            abandoned: 0,
            turns: VecDeque::new(),
            draws: VecDeque::new(),
        }
    }

    pub(crate) fn draw(&self) -> &Draw {
        &self.draw
    }

    pub(crate) fn opens_ms(&self) -> u64 {
        self.opens_ms
    }

    /// Whether a ticket issued at `now_ms` is a lottery entrant.
    pub(crate) fn presale(&self, now_ms: u64) -> bool {
        self.order == Order::Lottery && now_ms < self.opens_ms
    }

    /// Someone joins the line: their ticket says they arrived at
    /// `issued_ms`. Usually the newest; a ticket this line has not
    /// counted (issued by another gateway, or before a restart) takes its
    /// place among the others. One arrived before the frontier is in
    /// already and counts for nothing.
    pub(crate) fn join(&mut self, issued_ms: u64, presale: bool) {
        if presale {
            if !self.draw.done() {
                self.draw.entrants += 1;
            }
            return;
        }
        if issued_ms < self.frontier_ms {
            return;
        }
        let start = issued_ms - issued_ms % BUCKET_MS;
        let fresh = Bucket {
            start_ms: start,
            end_ms: start + BUCKET_MS,
            count: 1,
        };
        match self.buckets.back_mut() {
            Some(last) if last.start_ms <= issued_ms && issued_ms < last.end_ms => last.count += 1,
            Some(last) if last.end_ms <= issued_ms => self.buckets.push_back(fresh),
            None => self.buckets.push_back(fresh),
            Some(_) => {
                // Among the others, by arrival.
                let at = self.buckets.partition_point(|b| b.end_ms <= issued_ms);
                match self.buckets.get_mut(at) {
                    Some(b) if b.start_ms <= issued_ms => b.count += 1,
                    _ => {
                        let end = self.buckets.get(at).map_or(u64::MAX, |b| b.start_ms);
                        let bucket = Bucket {
                            end_ms: fresh.end_ms.min(end),
                            ..fresh
                        };
                        self.buckets.insert(at, bucket);
                    }
                }
            }
        }
        if self.buckets.len() > MAX_BUCKETS {
            self.coarsen();
        }
    }

    /// Lets a newcomer in at once when nobody is waiting and an admission
    /// is earned: with the room on but the line empty, nobody waits for
    /// nothing.
    pub(crate) fn admit_now(&mut self, now_ms: u64) -> bool {
        if self.waiting() > 0 || self.tokens < 1.0 || self.presale(now_ms) {
            return false;
        }
        self.tokens -= 1.0;
        self.count_session(now_ms, 1);
        true
    }

    fn count_session(&mut self, now_ms: u64, admitted: u64) {
        let second = now_ms / 1000;
        match self.sessions.back_mut() {
            Some((s, n)) if *s == second => *n += admitted,
            _ => self.sessions.push_back((second, admitted)),
        }
    }

    /// When a ticket's holder's turn came: the moment the frontier (or
    /// the draw's threshold) passed them, whenever they came back. `None`
    /// while it has not.
    pub(crate) fn turn(&self, issued_ms: u64, presale: bool, nonce: u64) -> Option<u64> {
        if !self.admits(issued_ms, presale, nonce) {
            return None;
        }
        let (history, mark) = if presale {
            (&self.draws, self.draw.of(nonce))
        } else {
            (&self.turns, issued_ms)
        };
        let at = history.partition_point(|(_, reached)| *reached <= mark);
        // Older than the history kept: its oldest moment is a bound.
        Some(history.get(at).or(history.front()).map_or(0, |(at, _)| *at))
    }

    /// Buckets merged two by two: half the memory, twice the granularity.
    fn coarsen(&mut self) {
        let merged: VecDeque<Bucket> = self
            .buckets
            .make_contiguous()
            .chunks(2)
            .map(|pair| Bucket {
                start_ms: pair[0].start_ms,
                end_ms: pair[pair.len() - 1].end_ms,
                count: pair.iter().map(|b| b.count).sum(),
            })
            .collect();
        self.buckets = merged;
    }

    /// Earns admissions at `rate` per second since the last call, and lets
    /// in as many of the oldest (or drawn) as they pay for, keeping the
    /// active sessions under `cap` (admitted within `session_ms`). Returns
    /// how many it let in.
    pub(crate) fn advance(&mut self, now_ms: u64, rate: f64, cap: u64, session_ms: u64) -> u64 {
        let dt = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.last_ms = now_ms.max(self.last_ms);
        self.judge_show_up(now_ms);
        while self
            .sessions
            .front()
            .is_some_and(|(second, _)| second * 1000 + session_ms <= now_ms)
        {
            self.sessions.pop_front();
        }
        let active: u64 = self.sessions.iter().map(|(_, n)| n).sum();
        let room_left = cap.saturating_sub(active) as f64;
        // Tokens pile up to two seconds' worth at most, and not while
        // nobody can be let in (before the opening, an empty line): a
        // burst would then be let in at once.
        let open = now_ms >= self.opens_ms;
        let admissible = match self.order {
            Order::Fifo => self.waiting(),
            Order::Lottery if !open => 0,
            Order::Lottery => self.waiting(),
        };
        // With nobody waiting, a fifth of a second's worth is kept for
        // newcomers (`admit_now`), no more.
        let most = if admissible == 0 { 0.2 } else { 2.0 };
        self.tokens = (self.tokens + rate * dt)
            .min((rate * most).max(1.0))
            .min(room_left);
        let mut let_in = 0u64;
        // Pre-sale entrants first, by draw, once the sale is open.
        if self.order == Order::Lottery && now_ms >= self.opens_ms && !self.draw.done() {
            let left = self.lottery_left();
            if left == 0 {
                self.draw.threshold = u64::MAX;
            } else {
                let spend = self.tokens.min(left as f64);
                let share = spend / left as f64;
                let step = ((u64::MAX - self.draw.threshold) as f64 * share) as u64;
                self.draw.threshold = if spend >= left as f64 {
                    u64::MAX
                } else {
                    self.draw.threshold.saturating_add(step)
                };
                self.tokens -= spend;
                let_in += spend as u64;
                Self::remember(&mut self.draws, now_ms, self.draw.threshold);
            }
        }
        if self.order == Order::Fifo || self.draw.done() {
            let_in += self.let_in_buckets(now_ms);
        }
        if let_in > 0 {
            self.count_session(now_ms, let_in);
        }
        let_in
    }

    /// Moves the frontier over the oldest buckets as far as the tokens pay
    /// for; a bucket larger than they cover is let in in part (the
    /// frontier stops inside it, arrivals taken as spread evenly over its
    /// tenth of a second), so a burst never stalls the line.
    fn let_in_buckets(&mut self, now_ms: u64) -> u64 {
        let mut let_in = 0;
        while let Some(next) = self.buckets.front().copied() {
            let cost = next.count as f64 * self.show_up;
            if self.tokens < cost {
                // The arrivals the tokens pay for, then the frontier past
                // that share of the bucket. (Worked the other way round,
                // from the share to a whole millisecond to a count, it
                // rounded down twice: at one token, a bucket of 3, 6 or 7
                // came to 0 arrivals, and where the rate keeps no more
                // than one token, under half a customer a second, the
                // line stopped for good.)
                let span = next.end_ms - next.start_ms;
                let count = ((self.tokens / self.show_up) as u64).min(next.count - 1);
                let step_ms = (span * count / next.count).max(1);
                if count >= 1 {
                    self.tokens -= count as f64 * self.show_up;
                    self.frontier_ms = next.start_ms + step_ms;
                    Self::remember(&mut self.turns, now_ms, self.frontier_ms);
                    let front = self.buckets.front_mut().expect("looked at");
                    front.start_ms = self.frontier_ms;
                    front.count -= count;
                    self.admitted.push_back(Admitted {
                        at_ms: now_ms,
                        start_ms: next.start_ms,
                        end_ms: self.frontier_ms,
                        expected: count,
                        came: 0,
                    });
                    let_in += count;
                }
                break;
            }
            self.tokens -= cost;
            self.frontier_ms = next.end_ms;
            Self::remember(&mut self.turns, now_ms, next.end_ms);
            let_in += next.count;
            self.buckets.pop_front();
            self.admitted.push_back(Admitted {
                at_ms: now_ms,
                start_ms: next.start_ms,
                end_ms: next.end_ms,
                expected: next.count,
                came: 0,
            });
        }
        let_in
    }

    /// A move of the frontier or threshold, kept for `turn` (bounded: the
    /// oldest go first).
    fn remember(history: &mut VecDeque<(u64, u64)>, at_ms: u64, reached: u64) {
        match history.back_mut() {
            Some(last) if last.0 == at_ms => last.1 = reached,
            _ => history.push_back((at_ms, reached)),
        }
        if history.len() > MAX_BUCKETS {
            history.pop_front();
        }
    }

    /// Pre-sale entrants not yet drawn in (estimated from the threshold).
    fn lottery_left(&self) -> u64 {
        let share_left = 1.0 - self.draw.threshold as f64 / u64::MAX as f64;
        (self.draw.entrants as f64 * share_left).round() as u64
    }

    /// Whether a ticket's holder may come in now.
    pub(crate) fn admits(&self, issued_ms: u64, presale: bool, nonce: u64) -> bool {
        if presale {
            self.draw.of(nonce) < self.draw.threshold
        } else {
            issued_ms < self.frontier_ms
        }
    }

    /// A customer admitted by the line came back and went in: counted for
    /// their bucket's show-up.
    pub(crate) fn came(&mut self, issued_ms: u64) {
        if let Some(batch) = self
            .admitted
            .iter_mut()
            .find(|b| b.start_ms <= issued_ms && issued_ms < b.end_ms)
        {
            batch.came += 1;
        }
    }

    fn judge_show_up(&mut self, now_ms: u64) {
        while let Some(batch) = self.admitted.front().copied() {
            if batch.at_ms + SHOW_UP_GRACE_MS > now_ms {
                break;
            }
            self.admitted.pop_front();
            let came = batch.came.min(batch.expected);
            self.abandoned += batch.expected - came;
            let share = came as f64 / batch.expected.max(1) as f64;
            // Never below a tenth: a bucket of bots must not make the
            // next ones free.
            self.show_up = (self.show_up * 0.8 + share * 0.2).clamp(0.1, 1.0);
        }
    }

    /// Where a waiting ticket stands.
    pub(crate) fn standing(&self, issued_ms: u64, presale: bool, nonce: u64) -> Standing {
        if presale {
            let draw = self.draw.of(nonce);
            let above = draw.saturating_sub(self.draw.threshold) as f64;
            let span = (u64::MAX - self.draw.threshold).max(1) as f64;
            let ahead = (self.lottery_left() as f64 * above / span) as u64;
            return Standing { ahead };
        }
        // Those in earlier buckets: a bucket is let in whole (or its
        // earliest part first), and only arrivals can fill it, so a
        // position counted this way never goes up.
        let ahead = self
            .buckets
            .iter()
            .take_while(|b| b.end_ms <= issued_ms)
            .map(|b| b.count)
            .sum::<u64>()
            + if self.draw.done() || self.order == Order::Fifo {
                0
            } else {
                self.lottery_left()
            };
        Standing { ahead }
    }

    /// Customers waiting.
    pub(crate) fn waiting(&self) -> u64 {
        let lottery = if self.draw.done() || self.order == Order::Fifo {
            0
        } else {
            self.lottery_left()
        };
        self.buckets.iter().map(|b| b.count).sum::<u64>() + lottery
    }

    /// Sessions admitted within the session length.
    pub(crate) fn active(&self) -> u64 {
        self.sessions.iter().map(|(_, n)| n).sum()
    }

    /// The share of admitted customers who came back.
    pub(crate) fn show_up(&self) -> f64 {
        self.show_up
    }

    /// Buckets held: the line's memory is this times 24 bytes.
    pub(crate) fn buckets(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: u64 = 300_000;

    fn line(order: Order, opens_ms: u64) -> Line {
        Line::new(order, opens_ms, [7; 32], 0)
    }

    #[test]
    fn fifo_lets_in_at_the_rate_in_order_of_arrival() {
        let mut line = Line::new(Order::Fifo, 0, [7; 32], 1_000);
        // Ten customers, one every 200 ms.
        for n in 0..10u64 {
            line.join(1_000 + n * 200, false);
        }
        assert_eq!(line.waiting(), 10);
        // Two a second: after 1.5 s the first three are in, no one later.
        line.advance(1_000, 2.0, 1_000, SESSION);
        line.advance(2_500, 2.0, 1_000, SESSION);
        let admitted: Vec<bool> = (0..10u64)
            .map(|n| line.admits(1_000 + n * 200, false, n))
            .collect();
        assert_eq!(
            admitted,
            [true, true, true, false, false, false, false, false, false, false]
        );
        // Positions only go down, and are the arrivals ahead.
        assert_eq!(line.standing(1_000 + 9 * 200, false, 9).ahead, 6);
        line.advance(4_000, 2.0, 1_000, SESSION);
        assert_eq!(line.standing(1_000 + 9 * 200, false, 9).ahead, 3);
        line.advance(10_000, 2.0, 1_000, SESSION);
        assert!(line.admits(1_000 + 9 * 200, false, 9));
        assert_eq!(line.waiting(), 0);
    }

    #[test]
    fn the_cap_on_active_sessions_holds_the_line() {
        let mut line = line(Order::Fifo, 0);
        for n in 0..100u64 {
            line.join(n * 10, false);
        }
        line.advance(0, 100.0, 20, SESSION);
        line.advance(10_000, 100.0, 20, SESSION);
        assert!(line.active() <= 20, "{}", line.active());
        // Once the sessions end, more come in.
        line.advance(SESSION + 20_000, 100.0, 20, SESSION);
        line.advance(SESSION + 30_000, 100.0, 20, SESSION);
        assert!(line.waiting() < 80, "{}", line.waiting());
    }

    #[test]
    fn the_lottery_is_recomputable_from_the_revealed_seed() {
        let opens = 10_000;
        let mut line = line(Order::Lottery, opens);
        let nonces: Vec<u64> = (1..=50).map(|n| n * 7919).collect();
        for _ in &nonces {
            assert!(line.presale(5_000));
            line.join(5_000, true);
        }
        // Nobody is in before the opening.
        line.advance(9_999, 10.0, 1_000, SESSION);
        assert!(nonces.iter().all(|n| !line.admits(5_000, true, *n)));
        // A second after it: about ten, the ten lowest draws.
        line.advance(11_000, 10.0, 1_000, SESSION);
        let seed = line.draw().seed_hex();
        let seed: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&seed[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let mut by_draw = nonces.clone();
        by_draw.sort_by_key(|n| draw(&seed, *n));
        let admitted: Vec<bool> = by_draw
            .iter()
            .map(|n| line.admits(5_000, true, *n))
            .collect();
        let count = admitted.iter().filter(|a| **a).count();
        assert!((5..=15).contains(&count), "{count}");
        assert!(
            admitted.iter().take(count).all(|a| *a),
            "the lowest draws are the ones let in: {admitted:?}"
        );
        // The commitment published before is the seed's hash.
        let hash = hex(&Sha256::digest(&seed));
        assert_eq!(line.draw().commitment, hash);
        // After the draw, later arrivals are first in first out.
        line.join(12_000, false);
        for second in 12..=30 {
            line.advance(second * 1_000, 10.0, 1_000, SESSION);
        }
        assert!(nonces.iter().all(|n| line.admits(5_000, true, *n)));
        assert!(line.admits(12_000, false, 1));
    }

    #[test]
    fn abandoned_places_do_not_stall_the_line() {
        let mut line = line(Order::Fifo, 0);
        for n in 0..100u64 {
            line.join(n * 100, false);
        }
        line.advance(0, 10.0, 10_000, SESSION);
        line.advance(5_000, 10.0, 10_000, SESSION);
        // Nobody of those let in comes back; after the grace the show-up
        // share falls, and the next buckets cost less.
        line.advance(40_000, 0.0, 10_000, SESSION);
        assert!(line.show_up() < 1.0);
        assert!(line.abandoned > 0);
        let waiting = line.waiting();
        line.advance(41_000, 10.0, 10_000, SESSION);
        assert!(
            waiting - line.waiting() > 10,
            "more than the rate of ten let in: {waiting} -> {}",
            line.waiting()
        );
    }

    #[test]
    fn a_turn_is_when_the_frontier_passed_not_when_the_customer_came_back() {
        let mut line = line(Order::Fifo, 0);
        line.join(1_000, false);
        line.join(1_250, false);
        line.advance(1_000, 0.0, 1_000, SESSION);
        assert_eq!(line.turn(1_000, false, 1), None);
        // One a second: the first in at 2 s, the second at 3 s.
        line.advance(2_000, 1.0, 1_000, SESSION);
        line.advance(3_000, 1.0, 1_000, SESSION);
        line.advance(9_000, 1.0, 1_000, SESSION);
        assert_eq!(line.turn(1_000, false, 1), Some(2_000));
        assert_eq!(line.turn(1_250, false, 2), Some(3_000));
    }

    #[test]
    fn a_ticket_this_line_never_counted_takes_its_place_by_arrival() {
        let mut line = line(Order::Fifo, 0);
        line.join(1_000, false);
        line.join(3_000, false);
        // Issued by another gateway at 2 s: between the two.
        line.join(2_050, false);
        assert_eq!(line.standing(2_050, false, 1).ahead, 1);
        assert_eq!(line.standing(3_000, false, 2).ahead, 2);
        assert_eq!(line.waiting(), 3);
        // And one from before the frontier is in already.
        line.advance(1_000, 0.0, 1_000, SESSION);
        line.advance(2_000, 1.0, 1_000, SESSION);
        line.join(1_010, false);
        assert_eq!(line.waiting(), 2);
        assert!(line.admits(1_010, false, 3));
    }

    #[test]
    fn with_nobody_waiting_a_newcomer_goes_straight_in_within_the_rate() {
        let mut line = line(Order::Fifo, 0);
        line.advance(0, 10.0, 1_000, SESSION);
        line.advance(1_000, 10.0, 1_000, SESSION);
        // A fifth of a second's worth, no more: two at rate ten.
        assert!(line.admit_now(1_000));
        assert!(line.admit_now(1_000));
        assert!(!line.admit_now(1_000));
        assert_eq!(line.active(), 2);
        // Someone waiting goes first.
        line.join(1_000, false);
        line.advance(2_000, 10.0, 1_000, SESSION);
        line.join(2_000, false);
        assert!(!line.admit_now(2_000));
    }

    #[test]
    fn a_slow_line_lets_in_a_bucket_of_any_size_one_by_one() {
        // At 0.2 a second no more than one token is kept; three, six or
        // seven arrivals in one tenth of a second stopped the line.
        for arrivals in 2..=12u64 {
            let mut line = line(Order::Fifo, 0);
            for n in 0..arrivals {
                line.join(5_000 + n * 3, false);
            }
            let mut at = 5_000;
            while line.waiting() > 0 && at < 5_000 + (arrivals + 2) * 5_000 {
                at += 100;
                line.advance(at, 0.2, 1_000, SESSION);
            }
            assert_eq!(
                line.waiting(),
                0,
                "{arrivals} arrivals, after {} ms",
                at - 5_000
            );
            assert!(line.admits(5_000 + (arrivals - 1) * 3, false, arrivals));
        }
    }

    #[test]
    fn a_burst_larger_than_a_second_of_admissions_is_let_in_in_part() {
        let mut line = line(Order::Fifo, 0);
        // A thousand in one tenth of a second; ten a second let in.
        for n in 0..1_000u64 {
            line.join(5_000 + n / 10, false);
        }
        line.advance(5_000, 10.0, 100_000, SESSION);
        for second in 6..=15 {
            line.advance(second * 1_000, 10.0, 100_000, SESSION);
        }
        let waiting = line.waiting();
        assert!((880..=920).contains(&waiting), "{waiting}");
        // The earliest arrivals are the ones in.
        assert!(line.admits(5_000, false, 1));
        assert!(!line.admits(5_099, false, 2));
    }

    #[test]
    fn a_million_arrivals_cost_buckets_not_customers() {
        let mut line = line(Order::Fifo, 0);
        for n in 0..1_000_000u64 {
            // A million arrivals over 100 s.
            line.join(n / 10, false);
        }
        assert_eq!(line.waiting(), 1_000_000);
        assert!(line.buckets() <= 1_000, "{}", line.buckets());
    }
}
