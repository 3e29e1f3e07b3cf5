//! Read-mostly state shared by the serving threads (settings, the backend
//! list) without contention: each thread keeps its own copy and refreshes it
//! when the version changes. Reading it costs one atomic load of a cache
//! line nobody writes, instead of a lock and a shared reference count that
//! both threads would bounce between their caches on every request.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Copies kept per thread before the oldest are dropped.
const COPIES_PER_THREAD: usize = 32;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

type Copy = (u64, u64, Arc<dyn Any + Send + Sync>);

thread_local! {
    static COPIES: RefCell<Vec<Copy>> = const { RefCell::new(Vec::new()) };
}

#[derive(Debug)]
pub(crate) struct Published<T> {
    id: u64,
    version: AtomicU64,
    value: RwLock<Arc<T>>,
}

impl<T: Clone + Send + Sync + 'static> Published<T> {
    pub(crate) fn new(value: T) -> Self {
        Published {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            version: AtomicU64::new(0),
            value: RwLock::new(Arc::new(value)),
        }
    }

    /// Changes the value; every thread sees it on its next `get`.
    pub(crate) fn update(&self, change: impl FnOnce(&T) -> T) {
        let mut value = self.value.write().unwrap_or_else(|p| p.into_inner());
        *value = Arc::new(change(&value));
        self.version.fetch_add(1, Ordering::Release);
    }

    /// This thread's copy of the current value.
    pub(crate) fn get(&self) -> Arc<T> {
        let version = self.version.load(Ordering::Acquire);
        COPIES.with(|copies| {
            let mut copies = copies.borrow_mut();
            if let Some((_, seen, copy)) = copies.iter().find(|(id, _, _)| *id == self.id) {
                if *seen == version {
                    if let Ok(copy) = Arc::clone(copy).downcast::<T>() {
                        return copy;
                    }
                }
            }
            let shared = Arc::clone(&self.value.read().unwrap_or_else(|p| p.into_inner()));
            let own = Arc::new(T::clone(&shared));
            copies.retain(|(id, _, _)| *id != self.id);
            if copies.len() >= COPIES_PER_THREAD {
                copies.remove(0);
            }
            copies.push((
                self.id,
                version,
                Arc::clone(&own) as Arc<dyn Any + Send + Sync>,
            ));
            own
        })
    }
}

#[cfg(test)]
mod tests {
    use super::Published;

    #[test]
    fn every_thread_sees_an_update() {
        let shared = std::sync::Arc::new(Published::new(1u32));
        assert_eq!(*shared.get(), 1);
        shared.update(|v| v + 1);
        assert_eq!(*shared.get(), 2);
        let other = std::sync::Arc::clone(&shared);
        let seen = std::thread::spawn(move || {
            let first = *other.get();
            other.update(|v| v * 10);
            (first, *other.get())
        })
        .join()
        .unwrap();
        assert_eq!(seen, (2, 20));
        assert_eq!(*shared.get(), 20, "this thread's copy is refreshed");
    }
}
