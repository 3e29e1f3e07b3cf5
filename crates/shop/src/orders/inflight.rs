//! Which (customer, idempotency key) pairs this process is working on, so a
//! duplicate that arrives meanwhile hears 409 `request_in_progress` instead of
//! queueing behind the first. Correctness does not rest on this register —
//! the store decides every key inside the product's lock — it only gives the
//! client the answer the contract promises.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, Clone)]
pub struct InFlight {
    keys: Arc<Mutex<HashSet<(String, String)>>>,
}

/// Removes its key from the register when dropped, however the request ends
/// (answered, timed out, or its client gone).
#[derive(Debug)]
pub struct InFlightGuard {
    keys: Arc<Mutex<HashSet<(String, String)>>>,
    key: (String, String),
}

impl InFlight {
    /// Registers the key, or answers `None` if it is already being worked on.
    pub fn begin(&self, customer: &str, key: &str) -> Option<InFlightGuard> {
        let pair = (customer.to_string(), key.to_string());
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !keys.insert(pair.clone()) {
            return None;
        }
        Some(InFlightGuard {
            keys: Arc::clone(&self.keys),
            key: pair,
        })
    }

    pub fn len(&self) -> usize {
        self.keys.lock().map(|keys| keys.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        keys.remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::InFlight;

    #[test]
    fn a_key_is_busy_until_its_guard_drops() {
        let inflight = InFlight::default();
        let guard = inflight.begin("c", "k").expect("free");
        assert!(inflight.begin("c", "k").is_none());
        assert!(
            inflight.begin("other", "k").is_some(),
            "keys are per customer"
        );
        drop(guard);
        assert!(inflight.begin("c", "k").is_some());
        assert!(inflight.is_empty());
    }
}
