//! A number of permits a reload changes while they are held: how many
//! customer connections may be open at once (`limits.max_connections`, a
//! permit taken before a connection is accepted) and how many requests may
//! be in the gateway at once (`limits.max_concurrent_requests`, one taken
//! when a request arrives, refused with 503 `overloaded` when none is
//! free). So an operator can raise either during a sale without a restart,
//! or lower it: a raise gives its permits at once; a lowering takes back
//! those free now, and the rest as they are given back (until then none is
//! given out), without cutting a connection or a request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub(crate) struct ResizablePermits {
    permits: Arc<Semaphore>,
    most: AtomicUsize,
    /// Permits a lowering still has to take back.
    owed: Arc<AtomicUsize>,
}

impl ResizablePermits {
    pub(crate) fn new(most: usize) -> ResizablePermits {
        ResizablePermits {
            permits: Arc::new(Semaphore::new(most)),
            most: AtomicUsize::new(most),
            owed: Arc::default(),
        }
    }

    /// A permit, once one is free.
    pub(crate) async fn admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).acquire_owned().await.ok()
    }

    /// A permit if one is free now.
    pub(crate) fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.permits).try_acquire_owned().ok()
    }

    /// Permits held now; while a lowering is taking permits back, an
    /// upper bound (0 once every one has been given back).
    pub(crate) fn open(&self) -> usize {
        (self.most.load(Ordering::Relaxed) + self.owed.load(Ordering::Relaxed))
            .saturating_sub(self.permits.available_permits())
    }

    /// Makes `most` the number. Permits the semaphore still owes a lowering
    /// are taken by a task as they are given back, ahead of those waiting
    /// for one (tokio's semaphore is first come, first served).
    pub(crate) fn resize(&self, most: usize) {
        let before = self.most.swap(most, Ordering::Relaxed);
        if most > before {
            self.permits.add_permits(most - before);
            return;
        }
        let owed = before - most;
        let owed = owed - self.permits.forget_permits(owed);
        if owed > 0 {
            self.owed.fetch_add(owed, Ordering::Relaxed);
            let (permits, still) = (Arc::clone(&self.permits), Arc::clone(&self.owed));
            tokio::spawn(async move {
                if let Ok(taken) = permits.acquire_many_owned(owed as u32).await {
                    taken.forget();
                }
                still.fetch_sub(owed, Ordering::Relaxed);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_raise_admits_at_once_and_a_lowering_waits_for_connections_to_close() {
        let cap = ResizablePermits::new(2);
        let (a, b) = (cap.admit().await.unwrap(), cap.admit().await.unwrap());
        assert_eq!(cap.permits.available_permits(), 0);
        cap.resize(3);
        let c = cap.admit().await.unwrap();
        assert_eq!(cap.open(), 3);
        // Down to one with three open: none is cut, none is admitted until
        // two have closed.
        cap.resize(1);
        tokio::task::yield_now().await;
        drop(a);
        tokio::task::yield_now().await;
        assert_eq!(cap.permits.available_permits(), 0, "taken back");
        drop(b);
        tokio::task::yield_now().await;
        assert_eq!(cap.permits.available_permits(), 0, "taken back");
        assert_eq!(cap.open(), 1);
        drop(c);
        tokio::task::yield_now().await;
        assert_eq!(cap.permits.available_permits(), 1);
        assert_eq!(cap.open(), 0);
        assert!(cap.admit().await.is_some());
    }

    #[tokio::test]
    async fn a_request_is_refused_at_once_when_none_is_free_until_a_raise() {
        let cap = ResizablePermits::new(1);
        let held = cap.try_admit().unwrap();
        assert!(
            cap.try_admit().is_none(),
            "none free: refused, not waited for"
        );
        cap.resize(2);
        let second = cap.try_admit().unwrap();
        // Lowered below what is held: refused until both are given back
        // and the owed permit is taken.
        cap.resize(1);
        drop(held);
        tokio::task::yield_now().await;
        assert!(cap.try_admit().is_none());
        drop(second);
        tokio::task::yield_now().await;
        assert!(cap.try_admit().is_some());
    }
}
