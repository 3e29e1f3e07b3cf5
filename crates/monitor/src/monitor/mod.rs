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
    pub(crate) pages: crate::oncall::channels::PageCounts,
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
    /// Targets added through the API (`POST /api/targets`): the shops an
    /// autoscaler starts, scraped from the next tick on.
    added_targets: Mutex<Vec<crate::config::Target>>,
    /// One shop's measured capacity, for the postmortem.
    pub(crate) capacity_plan: Option<crate::config::CapacityPlan>,
    /// Who is paged, and acknowledgements (`[oncall]`); None without it.
    pub(crate) oncall: Option<crate::oncall::OnCallHandle>,
    /// Component states a person set for the status page (they win over
    /// the alerts' and are the only ones with `auto_publish = false`).
    pub(crate) status_set: Mutex<crate::status_page::SetByPeople>,
    /// Wakes the status push at once (a public update, a state set).
    pub(crate) status_changed: tokio::sync::Notify,
    /// `[status]`: the alerts' word, maintenance, auto_publish.
    pub(crate) status_settings: crate::status_page::StatusSettings,
}

/// Targets the API may add, at most.
pub(crate) const MOST_ADDED_TARGETS: usize = 256;

/// Why a target was not added.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TargetRefusal {
    Exists,
    TooMany,
}

impl Monitor {
    pub(crate) fn new(
        store: Store,
        incidents: Arc<Incidents>,
        admin_token: Option<String>,
        capacity_plan: Option<crate::config::CapacityPlan>,
        oncall: Option<crate::oncall::OnCallHandle>,
    ) -> Monitor {
        Monitor {
            store: Mutex::new(store),
            latest: Mutex::new(Arc::new(Latest::default())),
            incidents,
            feed: Arc::new(Feed::default()),
            admin_token,
            metrics: MonitorMetrics::default(),
            added_targets: Mutex::new(Vec::new()),
            capacity_plan,
            oncall,
            status_set: Mutex::default(),
            status_changed: tokio::sync::Notify::new(),
            status_settings: crate::status_page::StatusSettings::default(),
        }
    }

    /// The targets added through the API.
    pub(crate) fn added_targets(&self) -> Vec<crate::config::Target> {
        self.added_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Adds a target unless its name is taken (by one scraped at the last
    /// tick, or one added since) or the API has added its most.
    pub(crate) fn add_target(&self, target: crate::config::Target) -> Result<(), TargetRefusal> {
        let scraped = self.latest();
        let mut added = self.added_targets.lock().unwrap_or_else(|p| p.into_inner());
        let taken = scraped.targets.iter().any(|t| t.name == target.name)
            || added.iter().any(|t| t.name == target.name);
        if taken {
            return Err(TargetRefusal::Exists);
        }
        if added.len() >= MOST_ADDED_TARGETS {
            return Err(TargetRefusal::TooMany);
        }
        added.push(target);
        Ok(())
    }

    /// Removes an added target; false when there was none of that name.
    pub(crate) fn remove_target(&self, name: &str) -> bool {
        let mut added = self.added_targets.lock().unwrap_or_else(|p| p.into_inner());
        let before = added.len();
        added.retain(|t| t.name != name);
        added.len() < before
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
