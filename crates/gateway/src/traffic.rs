//! What the gateway sees of its traffic, in bounded memory, for telling a
//! flash crowd from an attack: requests per second, distinct clients (a
//! HyperLogLog estimate), the busiest clients (Space-Saving top-k), the mix
//! of paths and of answers. Each serving thread fills its own window; once
//! a second the windows are merged into a short history.

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::net::IpAddr;

use serde::Serialize;

/// Busiest clients tracked per window.
const TOP_K: usize = 32;
/// HyperLogLog registers (2^10): about 3 % error, 1 KiB.
const REGISTERS: usize = 1 << 10;
/// Seconds of history kept.
const HISTORY: usize = 60;

/// Where a request went, coarsely.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PathClass {
    Storefront,
    Product,
    Order,
    Other,
}

impl PathClass {
    pub(crate) fn of(path: &str) -> PathClass {
        match path {
            "/" => PathClass::Storefront,
            p if p.starts_with("/products/") || p.starts_with("/api/products") => {
                PathClass::Product
            }
            p if p.starts_with("/api/orders") || p.starts_with("/orders/") => PathClass::Order,
            _ => PathClass::Other,
        }
    }
}

/// One second (or a merge of several threads' seconds).
#[derive(Debug, Clone)]
pub(crate) struct Window {
    requests: u64,
    paths: [u64; 4],
    statuses: [u64; 3],
    registers: Box<[u8; REGISTERS]>,
    /// Client → (count, overestimate inherited on entry).
    top: HashMap<IpAddr, (u64, u64)>,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            requests: 0,
            paths: [0; 4],
            statuses: [0; 3],
            registers: Box::new([0; REGISTERS]),
            top: HashMap::with_capacity(TOP_K + 1),
        }
    }
}

fn hash(ip: &IpAddr) -> u64 {
    // A fixed key: estimates from different threads must agree.
    std::hash::BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
        .hash_one(ip)
}

impl Window {
    pub(crate) fn record(&mut self, client: IpAddr, path: PathClass, status: u16) {
        self.requests += 1;
        self.paths[path as usize] += 1;
        self.statuses[match status {
            ..=399 => 0,
            400..=499 => 1,
            _ => 2,
        }] += 1;
        let h = hash(&client);
        let register = (h as usize) & (REGISTERS - 1);
        let rank = ((h >> 10).leading_zeros() - 10 + 1) as u8;
        self.registers[register] = self.registers[register].max(rank);
        self.count(client, 1, 0);
    }

    /// Space-Saving: a full table replaces its smallest entry, inheriting
    /// its count (kept as the entry's possible overestimate), so heavy
    /// hitters are never missed and a count minus its error is a floor.
    fn count(&mut self, client: IpAddr, n: u64, error: u64) {
        if let Some(entry) = self.top.get_mut(&client) {
            entry.0 += n;
            entry.1 += error;
            return;
        }
        if self.top.len() < TOP_K {
            self.top.insert(client, (n, error));
            return;
        }
        if let Some((&smallest, &(min, _))) = self.top.iter().min_by_key(|(_, c)| c.0) {
            self.top.remove(&smallest);
            self.top.insert(client, (min + n, min + error));
        }
    }

    pub(crate) fn merge(&mut self, other: &Window) {
        self.requests += other.requests;
        for (a, b) in self.paths.iter_mut().zip(other.paths) {
            *a += b;
        }
        for (a, b) in self.statuses.iter_mut().zip(other.statuses) {
            *a += b;
        }
        for (a, b) in self.registers.iter_mut().zip(other.registers.iter()) {
            *a = (*a).max(*b);
        }
        for (client, (n, error)) in &other.top {
            self.count(*client, *n, *error);
        }
    }

    fn distinct(&self) -> f64 {
        let m = REGISTERS as f64;
        let sum: f64 = self
            .registers
            .iter()
            .map(|r| 2f64.powi(-i32::from(*r)))
            .sum();
        let estimate = 0.7213 / (1.0 + 1.079 / m) * m * m / sum;
        let zeros = self.registers.iter().filter(|r| **r == 0).count();
        if estimate <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            estimate
        }
    }
}

/// A summary of the last seconds, for `GET /admin/traffic`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TrafficSummary {
    pub(crate) seconds: usize,
    pub(crate) requests_per_s: f64,
    pub(crate) distinct_clients: f64,
    /// Share of requests from the 10 busiest clients.
    pub(crate) top10_share: f64,
    pub(crate) busiest: Vec<(String, u64)>,
    /// Shares of storefront, product, order and other (unknown) paths.
    pub(crate) paths: HashMap<&'static str, f64>,
    /// Shares of 2xx/3xx, 4xx, 5xx answers.
    pub(crate) answers: HashMap<&'static str, f64>,
}

/// The last seconds, merged from every thread.
#[derive(Debug, Default)]
pub(crate) struct History {
    seconds: VecDeque<Window>,
}

impl History {
    pub(crate) fn push(&mut self, second: Window) {
        if self.seconds.len() == HISTORY {
            self.seconds.pop_front();
        }
        self.seconds.push_back(second);
    }

    pub(crate) fn summary(&self, last: usize) -> TrafficSummary {
        let n = last.clamp(1, HISTORY).min(self.seconds.len().max(1));
        let mut all = Window::default();
        for window in self.seconds.iter().rev().take(n) {
            all.merge(window);
        }
        let total = all.requests.max(1) as f64;
        // Counts guaranteed (count minus its possible overestimate).
        let mut busiest: Vec<(IpAddr, u64)> = all
            .top
            .iter()
            .map(|(k, (count, error))| (*k, count.saturating_sub(*error)))
            .filter(|(_, floor)| *floor > 0)
            .collect();
        busiest.sort_by_key(|b| std::cmp::Reverse(b.1));
        let top10: u64 = busiest.iter().take(10).map(|b| b.1).sum();
        let share = |count: u64| count as f64 / total;
        TrafficSummary {
            seconds: n,
            requests_per_s: all.requests as f64 / n as f64,
            distinct_clients: if all.requests == 0 {
                0.0
            } else {
                all.distinct().round()
            },
            top10_share: share(top10.min(all.requests)),
            busiest: busiest
                .iter()
                .take(10)
                .map(|(ip, c)| (ip.to_string(), *c))
                .collect(),
            paths: ["storefront", "product", "order", "other"]
                .into_iter()
                .zip(all.paths.map(share))
                .collect(),
            answers: ["ok", "client_error", "server_error"]
                .into_iter()
                .zip(all.statuses.map(share))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    #[test]
    fn a_crowd_is_many_clients_on_shop_paths_an_attack_few_on_odd_paths() {
        let mut crowd = Window::default();
        for n in 0..5_000 {
            crowd.record(
                ip(n),
                if n % 2 == 0 {
                    PathClass::Product
                } else {
                    PathClass::Order
                },
                201,
            );
        }
        let mut attack = Window::default();
        for n in 0..5_000 {
            attack.record(ip(n % 5), PathClass::Other, 404);
        }
        let (mut a, mut b) = (History::default(), History::default());
        a.push(crowd);
        b.push(attack);
        let (crowd, attack) = (a.summary(10), b.summary(10));
        assert!(
            (crowd.distinct_clients - 5_000.0).abs() < 400.0,
            "{}",
            crowd.distinct_clients
        );
        assert!(crowd.top10_share < 0.05, "{}", crowd.top10_share);
        assert!(
            (attack.distinct_clients - 5.0).abs() < 1.0,
            "{}",
            attack.distinct_clients
        );
        assert!(attack.top10_share > 0.99);
        assert_eq!(attack.paths["other"], 1.0);
        assert_eq!(attack.busiest.len(), 5);
    }

    #[test]
    fn windows_from_threads_merge() {
        let (mut one, mut two) = (Window::default(), Window::default());
        for n in 0..1_000 {
            one.record(ip(n), PathClass::Storefront, 200);
            two.record(ip(n + 500), PathClass::Storefront, 500);
        }
        one.merge(&two);
        let mut history = History::default();
        history.push(one);
        let summary = history.summary(1);
        assert!(
            (summary.distinct_clients - 1_500.0).abs() < 150.0,
            "{}",
            summary.distinct_clients
        );
        assert_eq!(summary.answers["server_error"], 0.5);
        assert_eq!(summary.requests_per_s, 2_000.0);
    }
}
