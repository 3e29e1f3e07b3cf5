//! The live dashboard: `GET /` serves one page (inline CSS and script, no
//! network beyond this server); `GET /api/stream` sends a snapshot of the
//! system every collection as a server-sent event, after the last five
//! minutes of snapshots so the charts start full.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures::stream::{self, Stream, StreamExt};
use serde::Serialize;
use tokio::sync::{broadcast, watch};

use crate::incidents::IncidentView;
use crate::rules::{per_second, quantiles, Alert, AlertState};
use crate::store::Store;
use crate::surge::Verdict;

/// Snapshots kept for a new viewer: five minutes at one a second.
const KEPT: usize = 300;

#[derive(Debug, Clone, Serialize)]
pub(crate) struct BackendState {
    name: String,
    pool: String,
    state: String,
    /// The state the gateway reported at the last scrape, when an outage
    /// since the previous snapshot is shown instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    scraped_state: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AlertBrief {
    rule: String,
    severity: String,
    state: AlertState,
    summary: String,
}

/// The gateways' waiting rooms, summed (a line split between gateways is
/// one line to the customer).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RoomPanel {
    /// Gateways holding customers in line now.
    gateways_holding: u32,
    waiting: f64,
    admitted_per_s: f64,
    /// The rate the rooms allow now, summed.
    admit_rate_per_s: f64,
    active_sessions: f64,
    longest_wait_s: f64,
    tickets_refused_per_s: f64,
}

/// Everything the page shows at one instant.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Snapshot {
    at_ms: i64,
    requests_per_s: f64,
    errors_per_s: f64,
    shed_per_s: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
    orders_per_s: f64,
    stock: BTreeMap<String, f64>,
    cpu_ratio: Option<f64>,
    memory_used_ratio: Option<f64>,
    backends: Vec<BackendState>,
    alerts: Vec<AlertBrief>,
    verdict: Option<Verdict>,
    incident: Option<IncidentView>,
    /// None when no gateway has a waiting room configured.
    room: Option<RoomPanel>,
    /// Notes need the admin token (the page asks for it once).
    notes_need_token: bool,
}

/// What a snapshot is made of, read-only: the monitor's tick gathers it.
pub(crate) struct View<'a> {
    pub(crate) now_ms: i64,
    pub(crate) store: &'a Store,
    pub(crate) alerts: &'a [Alert],
    pub(crate) verdict: Option<&'a Verdict>,
    pub(crate) incident: Option<IncidentView>,
    /// Backends a gateway took out since the last snapshot, and how.
    pub(crate) outages: BTreeMap<String, String>,
    pub(crate) notes_need_token: bool,
}

/// The recent snapshots and the channel new ones go out on.
#[derive(Debug)]
pub(crate) struct Feed {
    recent: Mutex<VecDeque<Arc<str>>>,
    live: broadcast::Sender<Arc<str>>,
    /// Backends the gateway took out since the last snapshot: a shop that
    /// dies and is back within a second still shows, for one snapshot.
    outages: Mutex<BTreeMap<String, String>>,
    /// Turns true when the monitor stops: open streams end.
    closed: watch::Sender<bool>,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            recent: Mutex::new(VecDeque::with_capacity(KEPT)),
            live: broadcast::channel(16).0,
            outages: Mutex::new(BTreeMap::new()),
            closed: watch::channel(false).0,
        }
    }
}

impl Feed {
    /// Ends open streams, so a graceful shutdown does not wait on them.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Completes once `close` is called.
    fn closing(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut closed = self.closed.subscribe();
        async move {
            let _ = closed.wait_for(|closed| *closed).await;
        }
    }

    /// A state change from a gateway's event log.
    pub(crate) fn backend_changed(&self, backend: &str, state: &str) {
        if matches!(state, "down" | "ejected" | "draining") {
            self.outages
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(backend.to_string(), state.to_string());
        }
    }

    pub(crate) fn take_outages(&self) -> BTreeMap<String, String> {
        std::mem::take(&mut *self.outages.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn publish(&self, snapshot: Snapshot) {
        let Ok(json) = serde_json::to_string(&snapshot) else {
            return;
        };
        let json: Arc<str> = Arc::from(json);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == KEPT {
            recent.pop_front();
        }
        recent.push_back(Arc::clone(&json));
        drop(recent);
        // No viewer is not an error.
        let _ = self.live.send(json);
    }
}

/// A counter family's per-second rate over the last `window_ms`, summed.
fn rate(
    store: &Store,
    metric: &str,
    matchers: &[(&str, &str)],
    now_ms: i64,
    window_ms: i64,
) -> f64 {
    let matchers: Vec<(String, String)> = matchers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    store
        .range(metric, &matchers, now_ms - window_ms, now_ms)
        .iter()
        .filter_map(|s| per_second(&s.points))
        .sum()
}

fn quantile_ms(store: &Store, q: f64, now_ms: i64) -> Option<f64> {
    let series = store.range(
        "gateway_request_duration_seconds_bucket",
        &[],
        now_ms - 5_000,
        now_ms,
    );
    let values = quantiles(&series, q);
    values.iter().map(|v| v.1 * 1000.0).reduce(f64::max)
}

fn room_panel(store: &Store, now_ms: i64, window_ms: i64) -> Option<RoomPanel> {
    let configured = store.fresh("gateway_room_configured", &[], now_ms);
    if !configured.iter().any(|v| v.1 >= 1.0) {
        return None;
    }
    let on = store.fresh("gateway_room_on", &[], now_ms);
    let sum = |metric: &str| -> f64 { store.fresh(metric, &[], now_ms).iter().map(|v| v.1).sum() };
    Some(RoomPanel {
        gateways_holding: on.iter().filter(|v| v.1 >= 1.0).count() as u32,
        waiting: sum("gateway_room_waiting"),
        admitted_per_s: rate(store, "gateway_room_admitted_total", &[], now_ms, window_ms),
        admit_rate_per_s: sum("gateway_room_admit_rate"),
        active_sessions: sum("gateway_room_active_sessions"),
        longest_wait_s: store
            .fresh("gateway_room_longest_wait_seconds", &[], now_ms)
            .iter()
            .map(|v| v.1)
            .fold(0.0, f64::max),
        tickets_refused_per_s: rate(
            store,
            "gateway_room_tickets_refused_total",
            &[],
            now_ms,
            window_ms,
        ),
    })
}

pub(crate) fn snapshot(view: &View<'_>) -> Snapshot {
    let (store, now_ms) = (view.store, view.now_ms);
    let alerts = view
        .alerts
        .iter()
        .map(|a| AlertBrief {
            severity: a.labels.get("severity").cloned().unwrap_or_default(),
            summary: a.annotations.get("summary").cloned().unwrap_or_default(),
            rule: a.rule.clone(),
            state: a.state,
        })
        .collect();
    const WINDOW: i64 = 5_000;
    let mut stock = BTreeMap::new();
    for (labels, value) in store.fresh("shop_stock_remaining", &[], now_ms) {
        if let Some(sku) = labels.get("sku") {
            // Shops share one store: any shop's figure is the stock.
            stock.insert(sku.clone(), value);
        }
    }
    let memory = store
        .fresh("host_memory_available_bytes", &[], now_ms)
        .first()
        .map(|v| v.1)
        .zip(
            store
                .fresh("host_memory_total_bytes", &[], now_ms)
                .first()
                .map(|v| v.1),
        )
        .filter(|(_, total)| *total > 0.0)
        .map(|(available, total)| 1.0 - available / total);
    let mut backends: Vec<BackendState> = store
        .fresh("gateway_backend_state", &[], now_ms)
        .into_iter()
        .filter(|(_, value)| *value >= 1.0)
        .map(|(labels, _)| BackendState {
            name: labels.get("backend").cloned().unwrap_or_default(),
            pool: labels.get("pool").cloned().unwrap_or_default(),
            state: labels.get("state").cloned().unwrap_or_default(),
            scraped_state: None,
        })
        .collect();
    backends.sort_by(|a, b| a.name.cmp(&b.name));
    for (name, state) in &view.outages {
        if let Some(backend) = backends
            .iter_mut()
            .find(|b| &b.name == name && b.state == "up")
        {
            backend.scraped_state = Some(std::mem::replace(&mut backend.state, state.clone()));
        }
    }
    Snapshot {
        at_ms: now_ms,
        requests_per_s: rate(store, "gateway_requests_total", &[], now_ms, WINDOW),
        errors_per_s: rate(
            store,
            "gateway_requests_total",
            &[("status", "5*")],
            now_ms,
            WINDOW,
        ),
        shed_per_s: rate(store, "gateway_shed_total", &[], now_ms, WINDOW)
            + rate(store, "shop_requests_shed_total", &[], now_ms, WINDOW),
        p50_ms: quantile_ms(store, 0.5, now_ms),
        p99_ms: quantile_ms(store, 0.99, now_ms),
        orders_per_s: rate(
            store,
            "shop_orders_total",
            &[("result", "created")],
            now_ms,
            WINDOW,
        ),
        stock,
        cpu_ratio: store
            .fresh("host_cpu_usage_ratio", &[], now_ms)
            .first()
            .map(|v| v.1),
        memory_used_ratio: memory,
        backends,
        alerts,
        verdict: view.verdict.cloned(),
        incident: view.incident.clone(),
        room: room_panel(store, now_ms, WINDOW),
        notes_need_token: view.notes_need_token,
    }
}

/// The page (at `/` and `/dashboard`) and its stream.
pub(crate) fn routes(feed: Arc<Feed>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/dashboard", get(page))
        .route("/api/stream", get(stream))
        .with_state(feed)
}

async fn page() -> Response {
    Html(include_str!("page.html")).into_response()
}

/// `GET /api/stream`: the recent snapshots, then each new one. A viewer
/// too slow to keep up skips snapshots rather than holding memory.
async fn stream(
    State(feed): State<Arc<Feed>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let recent: Vec<Arc<str>> = feed
        .recent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .cloned()
        .collect();
    let live = feed.live.subscribe();
    let updates = stream::unfold(live, |mut live| async move {
        loop {
            match live.recv().await {
                Ok(json) => return Some((json, live)),
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let stopping = feed.closing();
    let events = stream::iter(recent)
        .chain(updates)
        .map(|json| Ok(SseEvent::default().event("snapshot").data(&*json)))
        .take_until(stopping);
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SeriesKey;

    fn gateway(store: &mut Store, name: &str, metric: &str, points: &[(i64, f64)]) {
        let key = SeriesKey::new(metric, [("gateway".to_string(), name.to_string())]);
        for &(at, value) in points {
            store.push(key.clone(), at, value);
        }
    }

    #[test]
    fn the_room_panel_sums_the_gateways_and_is_absent_without_a_room() {
        let mut store = Store::new(60_000, 1_000);
        assert!(room_panel(&store, 10_000, 5_000).is_none());
        // Every gateway exports the room's metrics; without a room
        // configured the panel says so instead of showing zeros.
        gateway(&mut store, "a", "gateway_room_on", &[(10_000, 1.0)]);
        gateway(&mut store, "a", "gateway_room_configured", &[(10_000, 0.0)]);
        assert!(room_panel(&store, 10_000, 5_000).is_none());
        gateway(&mut store, "a", "gateway_room_configured", &[(10_000, 1.0)]);
        gateway(&mut store, "b", "gateway_room_on", &[(10_000, 0.0)]);
        gateway(&mut store, "a", "gateway_room_waiting", &[(10_000, 900.0)]);
        gateway(&mut store, "b", "gateway_room_waiting", &[(10_000, 100.0)]);
        gateway(
            &mut store,
            "a",
            "gateway_room_admit_rate",
            &[(10_000, 40.0)],
        );
        gateway(
            &mut store,
            "b",
            "gateway_room_admit_rate",
            &[(10_000, 60.0)],
        );
        gateway(
            &mut store,
            "a",
            "gateway_room_longest_wait_seconds",
            &[(10_000, 12.5)],
        );
        gateway(
            &mut store,
            "b",
            "gateway_room_longest_wait_seconds",
            &[(10_000, 3.0)],
        );
        // 40 admitted in the 4 s between two scrapes: 10 a second.
        gateway(
            &mut store,
            "a",
            "gateway_room_admitted_total",
            &[(6_000, 100.0), (10_000, 140.0)],
        );
        let panel = room_panel(&store, 10_000, 5_000).expect("a room is configured");
        assert_eq!(panel.gateways_holding, 1);
        assert_eq!(panel.waiting, 1000.0);
        assert_eq!(panel.admit_rate_per_s, 100.0);
        assert_eq!(panel.longest_wait_s, 12.5);
        assert!((panel.admitted_per_s - 10.0).abs() < 1e-9, "{panel:?}");
        assert_eq!(panel.tickets_refused_per_s, 0.0);
        // A gateway that stopped answering drops out of the sums.
        assert!(room_panel(&store, 20_000, 5_000).is_none());
    }
}
