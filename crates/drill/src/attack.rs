//! Attack-like traffic, for rehearsing the surge verdict: a few clients
//! (synthetic addresses in X-Forwarded-For) each sending many requests to
//! random paths the shop does not have. Open loop like the customers;
//! counted apart from them, since no answer to an attacker is owed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use crate::scenario::Attack;

/// Attack requests in flight at most; beyond, ticks are counted as dropped.
const MAX_IN_FLIGHT: usize = 512;

const WORDS: [&str; 8] = [
    "wp-login.php",
    "admin",
    ".env",
    "xmlrpc.php",
    "phpmyadmin",
    "search",
    "cgi-bin",
    "api/v1/user",
];

/// What the attackers sent and got back.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AttackTally {
    pub sent: u64,
    /// Requests answered with any HTTP status.
    pub answered: u64,
    /// Of those, 4xx (unknown path, rate limited).
    pub client_errors: u64,
    pub network_errors: u64,
    pub dropped: u64,
}

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
    client_errors: AtomicU64,
    network_errors: AtomicU64,
    dropped: AtomicU64,
}

/// The address of attacker `k`: TEST-NET-2, never a real client.
fn attacker(k: u64) -> String {
    format!("198.51.100.{}", 1 + k % 254)
}

/// A path no shop has, different each time.
fn odd_path(n: u64) -> String {
    let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    format!(
        "/{}/{:x}",
        WORDS[(mixed >> 61) as usize],
        mixed & 0xffff_ffff
    )
}

/// Runs every attack of the scenario; returns what they sent.
pub(crate) async fn run(
    http: reqwest::Client,
    base: String,
    attacks: Vec<Attack>,
    start: Instant,
) -> AttackTally {
    let counts = Arc::new(Counts::default());
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for attack in attacks {
        let (http, base, counts, slots) = (
            http.clone(),
            base.clone(),
            Arc::clone(&counts),
            Arc::clone(&slots),
        );
        tasks.spawn(async move {
            let total = (attack.rate * attack.duration_s).floor() as u64;
            let begin = start + Duration::from_secs_f64(attack.start_s);
            let mut requests = tokio::task::JoinSet::new();
            for n in 0..total {
                let due = begin + Duration::from_secs_f64(n as f64 / attack.rate);
                tokio::time::sleep_until(due).await;
                while requests.try_join_next().is_some() {}
                let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                counts.sent.fetch_add(1, Ordering::Relaxed);
                let request = http
                    .get(format!("{base}{}", odd_path(n)))
                    .header("X-Forwarded-For", attacker(n % u64::from(attack.clients)))
                    .timeout(Duration::from_secs(2));
                let counts = Arc::clone(&counts);
                requests.spawn(async move {
                    match request.send().await {
                        Ok(response) => {
                            counts.answered.fetch_add(1, Ordering::Relaxed);
                            if response.status().is_client_error() {
                                counts.client_errors.fetch_add(1, Ordering::Relaxed);
                            }
                            let _ = response.bytes().await;
                        }
                        Err(_) => {
                            counts.network_errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(slot);
                });
            }
            while requests.join_next().await.is_some() {}
        });
    }
    while tasks.join_next().await.is_some() {}
    let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
    AttackTally {
        sent: read(&counts.sent),
        answered: read(&counts.answered),
        client_errors: read(&counts.client_errors),
        network_errors: read(&counts.network_errors),
        dropped: read(&counts.dropped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attackers_are_few_and_paths_are_odd_and_varied() {
        let paths: std::collections::HashSet<String> = (0..1000).map(odd_path).collect();
        assert!(paths.len() > 990, "paths repeat: {}", paths.len());
        assert!(paths
            .iter()
            .all(|p| !p.starts_with("/api/products") && !p.starts_with("/api/orders")));
        let addresses: std::collections::HashSet<String> =
            (0..1000).map(|n| attacker(n % 5)).collect();
        assert_eq!(addresses.len(), 5);
    }
}
