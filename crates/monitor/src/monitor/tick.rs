//! One tick of the monitor, every interval, in order: collect (every
//! target's `/metrics` and the host) → evaluate (rules and the surge
//! verdict) → notify → record (incidents) → publish (what the API and the
//! dashboard read) → prune. The pipeline owns what only it changes — the
//! evaluator, the surge detector, the notifier — so none of it is behind a
//! lock.

use std::sync::Arc;
use std::time::Duration;

use flashguard_telemetry::{unix_ms, EventKind};

use super::{Latest, Monitor};
use crate::config::{Config, Target};
use crate::dashboard::{self, View};
use crate::host;
use crate::incidents::{Change, Event};
use crate::notify::{Kind, News, Notifier};
use crate::rules::{Alert, AlertState, Evaluator, Transition};
use crate::scrape::{scrape, TargetStatus};
use crate::store::SeriesKey;
use crate::surge::{SurgeDetector, Verdict};

/// Events outside every incident are kept a week.
const EVENT_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
const PRUNE_EVERY_MS: i64 = 3600 * 1000;
/// Timeline events sent with the dashboard's incident.
const TIMELINE_SHOWN: u32 = 40;

pub(crate) struct Pipeline {
    monitor: Arc<Monitor>,
    targets: Vec<Target>,
    http: reqwest::Client,
    evaluator: Evaluator,
    surge: SurgeDetector,
    notifier: Notifier,
    /// Firing alerts are sent to Alertmanagers again this often: it
    /// forgets alerts that are not.
    resend_interval_ms: i64,
    last_resend_ms: i64,
    last_prune_ms: i64,
    /// The host's CPU times at the last tick, for its usage since.
    cpu_before: Option<(u64, u64)>,
}

impl Pipeline {
    /// Must be called within a Tokio runtime (it starts the notifiers).
    pub(crate) fn new(monitor: Arc<Monitor>, config: &Config) -> Pipeline {
        Pipeline {
            notifier: Notifier::start(&config.receivers, monitor.metrics.notifications.clone()),
            monitor,
            targets: config.targets.clone(),
            http: reqwest::Client::builder()
                .timeout(config.interval.mul_f64(0.8).max(Duration::from_millis(100)))
                .build()
                .unwrap_or_default(),
            evaluator: Evaluator::new(config.rules.clone()),
            surge: SurgeDetector::new(config.surge.clone()),
            resend_interval_ms: config.resend_interval.as_millis() as i64,
            last_resend_ms: 0,
            last_prune_ms: 0,
            cpu_before: host::cpu_times(),
        }
    }

    pub(crate) async fn run(mut self, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Samples are stamped with the tick's scheduled time, not the time
        // the task woke: consecutive ticks are then exactly one interval
        // apart, and a `for` of one interval is met on the next tick instead
        // of missing it by a millisecond of wake-up jitter.
        let origin = (tokio::time::Instant::now(), unix_ms());
        loop {
            let due = tick.tick().await;
            let at = origin.1 + due.saturating_duration_since(origin.0).as_millis() as i64;
            self.tick(at).await;
        }
    }

    async fn tick(&mut self, at: i64) {
        let targets = self.collect(at).await;
        let (transitions, verdict) = self.evaluate(at);
        self.notify(&transitions, at);
        self.record(&transitions, verdict, at).await;
        self.publish(targets, at).await;
        self.prune(at).await;
    }

    /// Scrapes every target at once and samples the host, into the history.
    async fn collect(&mut self, at: i64) -> Vec<TargetStatus> {
        let mut targets = self.targets.clone();
        targets.extend(self.monitor.added_targets());
        let scrapes =
            futures::future::join_all(targets.iter().map(|t| scrape(&self.http, t))).await;
        let cpu_now = host::cpu_times();
        let mut store = self.monitor.store();
        let mut statuses = Vec::with_capacity(scrapes.len());
        for (target, scraped) in targets.iter().zip(scrapes) {
            let status = scraped.status(target, at);
            let labels = [("target".to_string(), target.name.clone())];
            let up = if status.up { 1.0 } else { 0.0 };
            store.push(SeriesKey::new("up", labels.clone()), at, up);
            store.push(
                SeriesKey::new("scrape_duration_seconds", labels),
                at,
                scraped.duration.as_secs_f64(),
            );
            for (key, value) in scraped.samples.into_iter().flatten() {
                store.push(key, at, value);
            }
            let result = if status.up { "ok" } else { "failed" };
            self.monitor
                .metrics
                .scrapes
                .get_or_create(&vec![
                    ("target".into(), target.name.clone()),
                    ("result".into(), result.into()),
                ])
                .inc();
            statuses.push(status);
        }
        if let (Some(before), Some(now)) = (self.cpu_before, cpu_now) {
            let usage = host::cpu_usage(before, now);
            store.push(SeriesKey::new("host_cpu_usage_ratio", []), at, usage);
        }
        self.cpu_before = cpu_now;
        if let Some(load) = host::load_per_core() {
            store.push(SeriesKey::new("host_load1_per_core", []), at, load);
        }
        if let Some((available, total)) = host::memory() {
            let memory = |name| SeriesKey::new(name, []);
            store.push(memory("host_memory_available_bytes"), at, available);
            store.push(memory("host_memory_total_bytes"), at, total);
        }
        store.prune(at);
        statuses.sort_by(|a, b| a.name.cmp(&b.name));
        statuses
    }

    /// The rules and the surge verdict on what was just collected: the
    /// alerts that changed, in the order they did, and a new verdict if
    /// one was reached.
    fn evaluate(&mut self, at: i64) -> (Vec<Transition>, Option<Verdict>) {
        self.monitor.metrics.evaluations.inc();
        let store = self.monitor.store();
        let mut transitions = self.evaluator.evaluate(&store, at);
        let (surge, verdict) = self.surge.observe(&store, at);
        transitions.extend(surge);
        transitions.sort_by_key(|t| match t {
            Transition::Firing(a) => a.firing_since_ms.unwrap_or(at),
            Transition::Resolved(_, at) => *at,
        });
        (transitions, verdict)
    }

    fn alerts(&self) -> Vec<Alert> {
        let mut alerts = self.evaluator.alerts();
        alerts.extend(self.surge.alert());
        alerts
    }

    /// Tells the log (the first channel) and every receiver what changed;
    /// re-sends firing alerts to Alertmanagers, which forget alerts that
    /// are not re-sent.
    fn notify(&mut self, transitions: &[Transition], at: i64) {
        let mut news = Vec::with_capacity(transitions.len());
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
                Transition::Resolved(alert, resolved) => {
                    tracing::info!(alert = %alert.rule, labels = ?alert.labels, "alert resolved");
                    news.push(News {
                        alert,
                        resolved_ms: Some(resolved),
                    });
                }
            }
        }
        self.notifier.send(news, None);
        if at - self.last_resend_ms >= self.resend_interval_ms {
            self.last_resend_ms = at;
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
    }

    /// Puts alert changes and a new surge verdict on the incident timeline.
    async fn record(&self, transitions: &[Transition], verdict: Option<Verdict>, at: i64) {
        let incidents = &self.monitor.incidents;
        if let Some(verdict) = verdict {
            let kind = verdict.kind.as_str();
            tracing::warn!(verdict = kind, figures = ?verdict.figures, "surge verdict");
            let event = Event::new(
                verdict.decided_ms,
                "monitor",
                EventKind::SurgeVerdict,
                crate::surge::RULE,
                verdict.sentence(),
                serde_json::to_value(&verdict).unwrap_or_default(),
            );
            if let Err(err) = incidents.record(event).await {
                tracing::error!(%err, "recording the surge verdict");
            }
        }
        let changes = match incidents.observe(transitions, at).await {
            Ok(changes) => changes,
            Err(err) => {
                tracing::error!(%err, "updating incidents");
                Vec::new()
            }
        };
        if let Some(oncall) = &self.monitor.oncall {
            for change in changes {
                match change {
                    Change::Opened { id, title, labels } => oncall.opened(id, title, labels),
                    Change::Resolved { id } => oncall.resolved(id, None),
                }
            }
        }
    }

    /// What the API reads, and the dashboard's next snapshot.
    async fn publish(&self, targets: Vec<TargetStatus>, at: i64) {
        let latest = Latest {
            targets,
            alerts: self.alerts(),
            verdict: self.surge.verdict().cloned(),
        };
        let incident = match self.monitor.incidents.latest(at, TIMELINE_SHOWN).await {
            Ok(incident) => incident,
            Err(err) => {
                tracing::error!(%err, "reading the latest incident");
                None
            }
        };
        let feed = &self.monitor.feed;
        let snapshot = dashboard::snapshot(&View {
            now_ms: at,
            store: &self.monitor.store(),
            alerts: &latest.alerts,
            verdict: latest.verdict.as_ref(),
            incident,
            outages: feed.take_outages(),
            notes_need_token: self.monitor.admin_token.is_some(),
        });
        feed.publish(snapshot);
        self.monitor.publish(latest);
    }

    async fn prune(&mut self, at: i64) {
        if at - self.last_prune_ms < PRUNE_EVERY_MS {
            return;
        }
        self.last_prune_ms = at;
        match self.monitor.incidents.prune(at - EVENT_RETENTION_MS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(events = n, "forgot old events no incident needs"),
            Err(err) => tracing::error!(%err, "pruning events"),
        }
    }
}
