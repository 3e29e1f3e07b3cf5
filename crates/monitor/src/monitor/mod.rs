//! The running monitor: what the API and the dashboard read — the history,
//! what the last tick found, the incidents — and the pipeline that fills
//! it every interval (`tick`). The tick is the only writer; readers get
//! consistent copies and never wait on a scrape.

mod tick;

use std::sync::{Arc, Mutex, MutexGuard};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use crate::dashboard::Feed;
use crate::incidents::Incidents;
use crate::notify::NotificationCounts;
use crate::rules::Alert;
use crate::scrape::TargetStatus;
use crate::store::Store;
use crate::surge::Verdict;
pub(crate) use tick::Pipeline;

/// What the last tick found, replaced whole after every tick.
#[derive(Debug, Default)]
pub(crate) struct Latest {
    pub(crate) targets: Vec<TargetStatus>,
    /// The rules' alerts and the surge verdict's, pending and firing.
    pub(crate) alerts: Vec<Alert>,
    pub(crate) verdict: Option<Verdict>,
}

/// The monitor's own metrics.
#[derive(Debug, Default)]
pub(crate) struct MonitorMetrics {
    pub(crate) scrapes: Family<Vec<(String, String)>, Counter>,
    pub(crate) evaluations: Counter,
    pub(crate) notifications: NotificationCounts,
}

#[derive(Debug)]
pub(crate) struct Monitor {
    /// The history: written by the tick, read by queries and rules.
    store: Mutex<Store>,
    latest: Mutex<Arc<Latest>>,
    pub(crate) incidents: Arc<Incidents>,
    /// The dashboard's snapshots.
    pub(crate) feed: Arc<Feed>,
    /// Required of writes to the incident API when set.
    pub(crate) admin_token: Option<String>,
    pub(crate) metrics: MonitorMetrics,
}

impl Monitor {
    pub(crate) fn new(
        store: Store,
        incidents: Arc<Incidents>,
        admin_token: Option<String>,
    ) -> Monitor {
        Monitor {
            store: Mutex::new(store),
            latest: Mutex::new(Arc::new(Latest::default())),
            incidents,
            feed: Arc::new(Feed::default()),
            admin_token,
            metrics: MonitorMetrics::default(),
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn latest(&self) -> Arc<Latest> {
        Arc::clone(&self.latest.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn publish(&self, latest: Latest) {
        *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(latest);
    }

    /// Ends open streams so a graceful shutdown does not wait on them.
    pub(crate) fn stop(&self) {
        self.feed.close();
    }
}
