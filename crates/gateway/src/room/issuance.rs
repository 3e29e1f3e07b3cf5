//! One place per client: new tickets per client network per minute,
//! counted in a count-min sketch (four rows of 65,536 counters, for this
//! minute and the last, with conservative update: only the smallest
//! counters grow), so a bot that drops its cookie to start again cannot
//! flood the line, and the gateway keeps 1 MiB whatever the number of
//! clients. A sketch only over-counts (collisions add), so an honest
//! client is refused only when, in each of the four rows, the networks
//! sharing its counter together reach the limit: at a million new
//! networks a minute a counter holds about fifteen, under the default 60;
//! at three million, a few in a million honest networks are refused.

use std::net::IpAddr;

const ROWS: usize = 4;
const WIDTH: usize = 65_536;
const WINDOW_MS: u64 = 60_000;

#[derive(Debug)]
pub(crate) struct Issuance {
    /// This window's counts, and the last one's.
    current: Box<[[u16; WIDTH]; ROWS]>,
    previous: Box<[[u16; WIDTH]; ROWS]>,
    window_start_ms: u64,
    seeds: [u64; ROWS],
}

/// splitmix64: a fast, well-mixed hash of a number.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A client's network (/24 for IPv4, /56 for IPv6: what one household or
/// one small office holds), hashed: what a ticket is bound to and what
/// issuance is counted by.
pub(crate) fn client_network(ip: IpAddr) -> u32 {
    let network = match ip {
        IpAddr::V4(v4) => u64::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => (u128::from(v6) >> 72) as u64 | 1 << 63,
    };
    mix(network) as u32
}

impl Issuance {
    pub(crate) fn new(now_ms: u64) -> Issuance {
        let base = fastrand::u64(..);
        Issuance {
            current: Box::new([[0; WIDTH]; ROWS]),
            previous: Box::new([[0; WIDTH]; ROWS]),
            window_start_ms: now_ms,
            seeds: std::array::from_fn(|row| mix(base ^ row as u64)),
        }
    }

    fn slots(&self, client: u32) -> [usize; ROWS] {
        std::array::from_fn(|row| (mix(u64::from(client) ^ self.seeds[row]) as usize) % WIDTH)
    }

    fn roll(&mut self, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.window_start_ms);
        if elapsed < WINDOW_MS {
            return;
        }
        if elapsed < 2 * WINDOW_MS {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.window_start_ms += WINDOW_MS;
        } else {
            *self.previous = [[0; WIDTH]; ROWS];
            self.window_start_ms = now_ms;
        }
        *self.current = [[0; WIDTH]; ROWS];
    }

    /// Counts a new ticket for `client` if it is under `per_minute` over
    /// the sliding minute (this window, plus the last one's weighted by
    /// how much of it still falls in the minute); false when it is not.
    pub(crate) fn allow(&mut self, client: u32, per_minute: u32, now_ms: u64) -> bool {
        if per_minute == 0 {
            return true;
        }
        self.roll(now_ms);
        let slots = self.slots(client);
        let estimate = |table: &[[u16; WIDTH]; ROWS]| {
            slots
                .iter()
                .enumerate()
                .map(|(row, at)| table[row][*at])
                .min()
                .unwrap_or(0) as f64
        };
        let into_window = now_ms.saturating_sub(self.window_start_ms) as f64 / WINDOW_MS as f64;
        let seen = estimate(&self.current) + estimate(&self.previous) * (1.0 - into_window);
        if seen >= f64::from(per_minute) {
            return false;
        }
        // Conservative update: each counter rises only to what this
        // client's count becomes, which keeps collisions' excess small.
        let least = slots
            .iter()
            .enumerate()
            .map(|(row, at)| self.current[row][*at])
            .min()
            .unwrap_or(0)
            .saturating_add(1);
        for (row, at) in slots.iter().enumerate() {
            let counter = &mut self.current[row][*at];
            *counter = (*counter).max(least);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_share_per_minute_and_others_are_untouched() {
        let mut issuance = Issuance::new(0);
        let bot = client_network("203.0.113.9".parse().unwrap());
        let allowed = (0..100).filter(|_| issuance.allow(bot, 10, 1_000)).count();
        assert_eq!(allowed, 10);
        // Its neighbour in the same /24 shares its count; another network
        // does not.
        let neighbour = client_network("203.0.113.200".parse().unwrap());
        assert!(!issuance.allow(neighbour, 10, 1_000));
        let other = client_network("198.51.100.7".parse().unwrap());
        assert!(issuance.allow(other, 10, 1_000));
        // Two minutes on, the bot may start again.
        assert!(issuance.allow(bot, 10, 121_000));
    }

    #[test]
    fn many_honest_networks_are_not_refused_by_collisions() {
        let mut issuance = Issuance::new(0);
        // 100,000 networks in a minute, two tickets each, limit 60.
        let refused = (0..100_000u32)
            .flat_map(|n| std::iter::repeat_n(n, 2))
            .filter(|n| !issuance.allow(mix(u64::from(*n)) as u32, 60, 1_000))
            .count();
        assert_eq!(refused, 0);
    }
}
