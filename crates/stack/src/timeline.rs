//! Tells the monitor what the stack did — a part died (and how), came
//! back, or was hit by a chaos action — so it lands on the incident
//! timeline with the stack's own timestamp. Posting never blocks the
//! supervisor: events go through a bounded queue, and are dropped (and
//! logged) when the monitor is not there or falls behind.

use std::sync::OnceLock;
use std::time::Duration;

use flashguard_telemetry::EventKind;
use serde_json::{json, Value};
use tokio::sync::mpsc;

/// Events waiting to be posted at most.
const QUEUE: usize = 256;

#[derive(Debug)]
pub(crate) struct Timeline {
    monitor: OnceLock<String>,
    queue: mpsc::Sender<Value>,
}

impl Timeline {
    /// Must be called within a Tokio runtime (it starts the poster).
    pub(crate) fn start(token: String) -> std::sync::Arc<Timeline> {
        let (queue, mut events) = mpsc::channel::<Value>(QUEUE);
        let timeline = std::sync::Arc::new(Timeline {
            monitor: OnceLock::new(),
            queue,
        });
        let weak = std::sync::Arc::downgrade(&timeline);
        tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .unwrap_or_default();
            while let Some(event) = events.recv().await {
                let Some(url) = weak.upgrade().and_then(|t| t.monitor.get().cloned()) else {
                    tracing::debug!(?event, "no monitor yet; event not posted");
                    continue;
                };
                let posted = http
                    .post(format!("{url}/api/events"))
                    .bearer_auth(&token)
                    .json(&event)
                    .send()
                    .await;
                match posted {
                    Ok(response) if response.status().is_success() => {}
                    Ok(response) => {
                        tracing::warn!(status = %response.status(), "the monitor refused an event")
                    }
                    Err(err) => tracing::debug!(%err, "event not posted to the monitor"),
                }
            }
        });
        timeline
    }

    /// From now on, events go to this monitor.
    pub(crate) fn set_monitor(&self, url: &str) {
        let _ = self.monitor.set(url.trim_end_matches('/').to_string());
    }

    pub(crate) fn record(&self, kind: EventKind, part: &str, summary: String, data: Value) {
        let event = json!({
            "at_ms": flashguard_telemetry::unix_ms(),
            "source": "stack",
            "kind": kind,
            "subject": part,
            "summary": summary,
            "data": data,
        });
        if self.queue.try_send(event).is_err() {
            tracing::warn!(%kind, part, "timeline queue full; event dropped");
        }
    }
}
