//! The collection loop: every interval, each target's `/metrics` (with
//! `up` and `scrape_duration_seconds` recorded per target) and the host.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use flashguard_telemetry::EventKind;
use serde::Serialize;

use crate::incidents::{Event, Incidents};
use crate::notify::{Kind, News, NotificationCounts, Notifier};
use crate::rules::{Alert, AlertState, Evaluator, Transition};
use crate::store::{SeriesKey, Store};
use crate::surge::{SurgeDetector, Verdict};
use crate::{dashboard, exposition, host, Config, Target};

/// A target's last scrape, for `GET /api/targets`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct TargetStatus {
    pub(crate) name: String,
    pub(crate) url: String,
    pub(crate) up: bool,
    /// Why it is down, when it is.
    pub(crate) reason: Option<String>,
    pub(crate) last_scrape_ms: i64,
    pub(crate) duration_ms: f64,
    pub(crate) samples: usize,
}

#[derive(Debug)]
pub struct Monitor {
    targets: Vec<Target>,
    store: Mutex<Store>,
    status: Mutex<BTreeMap<String, TargetStatus>>,
    evaluator: Mutex<Evaluator>,
    surge: Mutex<SurgeDetector>,
    pub(crate) incidents: Arc<Incidents>,
    pub(crate) feed: dashboard::Feed,
    pub(crate) admin_token: Option<String>,
    stop: tokio::sync::watch::Sender<bool>,
    notifier: Notifier,
    resend_interval_ms: i64,
    last_resend_ms: Mutex<i64>,
    pub(crate) notifications: NotificationCounts,
    pub(crate) evaluations: prometheus_client::metrics::counter::Counter,
    http: reqwest::Client,
    pub(crate) scrapes: prometheus_client::metrics::family::Family<
        Vec<(String, String)>,
        prometheus_client::metrics::counter::Counter,
    >,
}

/// Events outside every incident are kept a week.
const EVENT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
const PRUNE_EVERY_MS: i64 = 3600 * 1000;

pub(crate) use flashguard_telemetry::unix_ms as now_ms;

impl Monitor {
    /// Must be called within a Tokio runtime (it starts the notifiers).
    pub fn new(config: &Config, incidents: Arc<Incidents>) -> Monitor {
        let notifications = NotificationCounts::default();
        Monitor {
            targets: config.targets.clone(),
            store: Mutex::new(Store::new(
                config.retention.as_millis() as i64,
                config.max_series,
            )),
            status: Mutex::new(BTreeMap::new()),
            evaluator: Mutex::new(Evaluator::new(config.rules.clone())),
            surge: Mutex::new(SurgeDetector::new(config.surge.clone())),
            incidents,
            feed: dashboard::Feed::default(),
            admin_token: config.admin_token.clone(),
            stop: tokio::sync::watch::channel(false).0,
            notifier: Notifier::start(&config.receivers, notifications.clone()),
            resend_interval_ms: config.resend_interval.as_millis() as i64,
            last_resend_ms: Mutex::new(0),
            notifications,
            http: reqwest::Client::builder()
                .timeout(config.interval.mul_f64(0.8).max(Duration::from_millis(100)))
                .build()
                .unwrap_or_default(),
            scrapes: Default::default(),
            evaluations: Default::default(),
        }
    }

    /// Ends open streams so a graceful shutdown does not wait on them.
    pub(crate) fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Completes once `stop` is called.
    pub(crate) fn stopping(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut stop = self.stop.subscribe();
        async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn statuses(&self) -> Vec<TargetStatus> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// The rules' alerts and the surge verdict's.
    pub(crate) fn alerts(&self) -> Vec<Alert> {
        let mut alerts = self
            .evaluator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .alerts();
        alerts.extend(self.surge().alert());
        alerts
    }

    fn surge(&self) -> MutexGuard<'_, SurgeDetector> {
        self.surge.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn verdict(&self) -> Option<Verdict> {
        self.surge().verdict().cloned()
    }

    /// Evaluates the rules and the surge verdict on what was just
    /// collected; the log is the first notification channel. Returns the
    /// transitions, for the incidents, and a new verdict if one was reached.
    fn evaluate(&self, now_ms: i64) -> (Vec<Transition>, Option<Verdict>) {
        self.evaluations.inc();
        let (mut transitions, verdict) = {
            let store = self.store();
            let transitions = self
                .evaluator
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .evaluate(&store, now_ms);
            let (surge, verdict) = self.surge().observe(&store, now_ms);
            (
                transitions.into_iter().chain(surge).collect::<Vec<_>>(),
                verdict,
            )
        };
        transitions.sort_by_key(|t| match t {
            Transition::Firing(a) => a.firing_since_ms.unwrap_or(now_ms),
            Transition::Resolved(_, at) => *at,
        });
        let mut news = Vec::new();
        for transition in transitions.iter().cloned() {
            match transition {
                Transition::Firing(alert) => {
                    tracing::warn!(
                        alert = %alert.rule,
                        labels = ?alert.labels,
                        value = alert.value,
                        annotations = ?alert.annotations,
                        "alert firing"
                    );
                    news.push(News {
                        alert,
                        resolved_ms: None,
                    });
                }
                Transition::Resolved(alert, at) => {
                    tracing::info!(alert = %alert.rule, labels = ?alert.labels, "alert resolved");
                    news.push(News {
                        alert,
                        resolved_ms: Some(at),
                    });
                }
            }
        }
        self.notifier.send(news, None);
        // Alertmanager forgets alerts not re-sent: repeat the firing ones.
        let mut last = self
            .last_resend_ms
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if now_ms - *last >= self.resend_interval_ms {
            *last = now_ms;
            let firing = self
                .alerts()
                .into_iter()
                .filter(|a| a.state == AlertState::Firing)
                .map(|alert| News {
                    alert,
                    resolved_ms: None,
                })
                .collect();
            self.notifier.send(firing, Some(Kind::Alertmanager));
        }
        (transitions, verdict)
    }

    /// Puts alert changes and a new surge verdict on the incident timeline.
    async fn record(&self, transitions: &[Transition], verdict: Option<Verdict>, now_ms: i64) {
        if let Some(verdict) = verdict {
            tracing::warn!(verdict = verdict.kind.as_str(), figures = ?verdict.figures, "surge verdict");
            let event = Event::new(
                verdict.decided_ms,
                "monitor",
                EventKind::SurgeVerdict,
                crate::surge::RULE,
                verdict.sentence(),
                serde_json::to_value(&verdict).unwrap_or_default(),
            );
            if let Err(err) = self.incidents.record(event).await {
                tracing::error!(%err, "recording the surge verdict");
            }
        }
        if let Err(err) = self.incidents.observe(transitions, now_ms).await {
            tracing::error!(%err, "updating incidents");
        }
    }

    /// Records the host's CPU, load and memory; returns the CPU times for
    /// the next sample's usage.
    fn sample_host(&self, cpu_before: Option<(u64, u64)>, at: i64) -> Option<(u64, u64)> {
        let cpu_now = host::cpu_times();
        let mut store = self.store();
        if let (Some(before), Some(now)) = (cpu_before, cpu_now) {
            store.push(
                SeriesKey::new("host_cpu_usage_ratio", []),
                at,
                host::cpu_usage(before, now),
            );
        }
        if let Some(load) = host::load_per_core() {
            store.push(SeriesKey::new("host_load1_per_core", []), at, load);
        }
        if let Some((available, total)) = host::memory() {
            store.push(
                SeriesKey::new("host_memory_available_bytes", []),
                at,
                available,
            );
            store.push(SeriesKey::new("host_memory_total_bytes", []), at, total);
        }
        store.prune(at);
        cpu_now
    }

    pub async fn scrape_forever(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cpu_before = host::cpu_times();
        // Samples are stamped with the tick's scheduled time, not the time
        // the task woke: consecutive ticks are then exactly one interval
        // apart, and a `for` of one interval is met on the next tick instead
        // of missing it by a millisecond of wake-up jitter.
        let origin = (tokio::time::Instant::now(), now_ms());
        let mut last_prune = 0;
        loop {
            let due = tick.tick().await;
            let at = origin.1 + due.saturating_duration_since(origin.0).as_millis() as i64;
            let scrapes: Vec<_> = self.targets.iter().map(|t| self.scrape(t, at)).collect();
            futures::future::join_all(scrapes).await;
            cpu_before = self.sample_host(cpu_before, at);
            let (transitions, verdict) = self.evaluate(at);
            self.record(&transitions, verdict, at).await;
            let snapshot = dashboard::snapshot(&self, at).await;
            self.feed.publish(snapshot);
            if at - last_prune >= PRUNE_EVERY_MS {
                last_prune = at;
                match self.incidents.prune(at - EVENT_RETENTION_MS).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(events = n, "forgot old events no incident needs"),
                    Err(err) => tracing::error!(%err, "pruning events"),
                }
            }
        }
    }

    async fn scrape(&self, target: &Target, at: i64) {
        let started = Instant::now();
        let url = format!("{}/metrics", target.url.trim_end_matches('/'));
        let result = match self.http.get(&url).send().await {
            Ok(response) if response.status().is_success() => match response.text().await {
                Ok(text) => exposition::parse(&text, &target.name),
                Err(err) => Err(format!("reading the body: {err}")),
            },
            Ok(response) => Err(format!("answered {}", response.status())),
            Err(err) => Err(format!("unreachable: {err}")),
        };
        let duration = started.elapsed();
        let labels = [("target".to_string(), target.name.clone())];
        let (up, reason, count) = match result {
            Ok(samples) => {
                let count = samples.len();
                let mut store = self.store();
                for (key, value) in samples {
                    store.push(key, at, value);
                }
                (true, None, count)
            }
            Err(reason) => (false, Some(reason), 0),
        };
        {
            let mut store = self.store();
            store.push(
                SeriesKey::new("up", labels.clone()),
                at,
                if up { 1.0 } else { 0.0 },
            );
            store.push(
                SeriesKey::new("scrape_duration_seconds", labels.clone()),
                at,
                duration.as_secs_f64(),
            );
        }
        let result_label = if up { "ok" } else { "failed" };
        self.scrapes
            .get_or_create(&vec![
                ("target".into(), target.name.clone()),
                ("result".into(), result_label.into()),
            ])
            .inc();
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                target.name.clone(),
                TargetStatus {
                    name: target.name.clone(),
                    url: target.url.clone(),
                    up,
                    reason,
                    last_scrape_ms: at,
                    duration_ms: duration.as_secs_f64() * 1000.0,
                    samples: count,
                },
            );
    }
}
