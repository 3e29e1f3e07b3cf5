//! Notifications: webhooks get the Alertmanager webhook payload (version
//! 4), Alertmanagers get `POST /api/v2/alerts`. Each receiver has its own
//! bounded queue and task, with retries and back-off, so a slow or dead
//! receiver never stalls evaluation or the other receivers; when a queue is
//! full the oldest news is dropped and counted.

use std::collections::BTreeMap;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::rules::Alert;
use flashguard_telemetry::rfc3339;

/// Messages waiting per receiver before new ones are dropped.
const QUEUE: usize = 256;
/// Tries per message, with back-off from 100 ms doubling.
const TRIES: u32 = 6;

/// What happened to an alert, to be told.
#[derive(Debug, Clone)]
pub(crate) struct News {
    pub(crate) alert: Alert,
    /// Set when resolved, unix ms.
    pub(crate) resolved_ms: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Webhook,
    Alertmanager,
}

/// Where notifications go.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub kind: Kind,
    pub url: String,
}

pub(crate) type NotificationCounts = Family<Vec<(String, String)>, Counter>;

#[derive(Debug)]
pub(crate) struct Notifier {
    queues: Vec<(Receiver, mpsc::Sender<Vec<News>>)>,
    counts: NotificationCounts,
}

impl Notifier {
    pub(crate) fn start(receivers: &[Receiver], counts: NotificationCounts) -> Notifier {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let queues = receivers
            .iter()
            .map(|receiver| {
                let (tx, rx) = mpsc::channel(QUEUE);
                tokio::spawn(deliver(receiver.clone(), rx, http.clone(), counts.clone()));
                (receiver.clone(), tx)
            })
            .collect();
        Notifier { queues, counts }
    }

    /// Hands news to every receiver of `kind` (all if `None`) without waiting.
    pub(crate) fn send(&self, news: Vec<News>, kind: Option<Kind>) {
        if news.is_empty() {
            return;
        }
        for (receiver, queue) in &self.queues {
            if kind.is_some_and(|k| k != receiver.kind) {
                continue;
            }
            if queue.try_send(news.clone()).is_err() {
                count(&self.counts, &receiver.url, "dropped");
            }
        }
    }
}

fn count(counts: &NotificationCounts, receiver: &str, result: &str) {
    counts
        .get_or_create(&vec![
            ("receiver".into(), receiver.into()),
            ("result".into(), result.into()),
        ])
        .inc();
}

async fn deliver(
    receiver: Receiver,
    mut queue: mpsc::Receiver<Vec<News>>,
    http: reqwest::Client,
    counts: NotificationCounts,
) {
    while let Some(news) = queue.recv().await {
        let (url, body) = match receiver.kind {
            Kind::Webhook => (receiver.url.clone(), webhook_payload(&news)),
            Kind::Alertmanager => (
                format!("{}/api/v2/alerts", receiver.url.trim_end_matches('/')),
                Value::Array(news.iter().map(alertmanager_alert).collect()),
            ),
        };
        let mut delay = Duration::from_millis(100);
        let mut delivered = false;
        for _ in 0..TRIES {
            match http.post(&url).json(&body).send().await {
                Ok(response) if response.status().is_success() => {
                    delivered = true;
                    break;
                }
                Ok(response) => {
                    tracing::warn!(receiver = %url, status = %response.status(), "notification refused; retrying")
                }
                Err(err) => {
                    tracing::warn!(receiver = %url, error = %err, "notification failed; retrying")
                }
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        count(
            &counts,
            &receiver.url,
            if delivered { "sent" } else { "failed" },
        );
    }
}

/// An alert as Alertmanager's v2 API takes it.
fn alertmanager_alert(news: &News) -> Value {
    let a = &news.alert;
    let mut alert = json!({
        "labels": a.labels,
        "annotations": a.annotations,
        "startsAt": rfc3339(a.firing_since_ms.unwrap_or(a.active_since_ms)),
        "generatorURL": "http://flashguard-monitor/api/alerts",
    });
    if let Some(resolved) = news.resolved_ms {
        alert["endsAt"] = json!(rfc3339(resolved));
    }
    alert
}

/// Alertmanager's webhook payload, version 4.
fn webhook_payload(news: &[News]) -> Value {
    let alerts: Vec<Value> = news
        .iter()
        .map(|n| {
            let mut alert = alertmanager_alert(n);
            alert["status"] = json!(if n.resolved_ms.is_some() {
                "resolved"
            } else {
                "firing"
            });
            alert["endsAt"] = alert
                .get("endsAt")
                .cloned()
                .unwrap_or(json!("0001-01-01T00:00:00Z"));
            alert["fingerprint"] = json!(fingerprint(&n.alert.labels));
            alert
        })
        .collect();
    let status = if news.iter().any(|n| n.resolved_ms.is_none()) {
        "firing"
    } else {
        "resolved"
    };
    let common = |pick: &dyn Fn(&Alert) -> &BTreeMap<String, String>| -> BTreeMap<String, String> {
        let first = news
            .first()
            .map(|n| pick(&n.alert).clone())
            .unwrap_or_default();
        first
            .into_iter()
            .filter(|(k, v)| news.iter().all(|n| pick(&n.alert).get(k) == Some(v)))
            .collect()
    };
    json!({
        "version": "4",
        "groupKey": "{}:{}",
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "flashguard",
        "groupLabels": {},
        "commonLabels": common(&|a| &a.labels),
        "commonAnnotations": common(&|a| &a.annotations),
        "externalURL": "http://flashguard-monitor",
        "alerts": alerts,
    })
}

/// A stable id of an alert's label set (FNV-1a, hex).
fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for byte in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}
