//! Is this shop ready to take orders? Two facts decide: whether the store
//! answered its last probe, and whether the shop is draining for shutdown.

use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Debug, Default)]
pub struct Health {
    /// The store answered the last probe (and its schema is migrated).
    store_up: AtomicBool,
    /// SIGTERM arrived: finish what is in flight, take nothing new.
    draining: AtomicBool,
}

impl Health {
    pub fn store_up(&self) -> bool {
        self.store_up.load(Ordering::Acquire)
    }

    pub fn set_store_up(&self, up: bool) {
        let was = self.store_up.swap(up, Ordering::AcqRel);
        if was != up {
            if up {
                tracing::info!(state = "up", "store reachable");
            } else {
                tracing::warn!(
                    state = "down",
                    "store unreachable; answering 503 until it is back"
                );
            }
        }
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// `None` when ready, else why not (the `/readyz` detail).
    pub fn not_ready_because(&self) -> Option<&'static str> {
        if self.draining() {
            Some("draining for shutdown")
        } else if !self.store_up() {
            Some("store unreachable")
        } else {
            None
        }
    }
}
