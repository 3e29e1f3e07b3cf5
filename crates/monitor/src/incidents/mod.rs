//! Incidents: the first firing alert opens one; its timeline is every event
//! recorded from a little before it opened until it resolved; it resolves
//! once every alert has resolved and stayed so for a quiet period. Kept in
//! SQLite, so an open incident survives a restart of the monitor.

mod db;
mod event;
pub(crate) mod postmortem;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use flashguard_telemetry::EventKind;
use serde::Serialize;
use serde_json::json;

pub use db::{IncidentDbError, IncidentRow};
pub use event::Event;

use crate::rules::{Alert, Transition};
use db::Db;

/// An incident as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct IncidentView {
    pub id: i64,
    pub title: String,
    /// `open` or `resolved`.
    pub status: &'static str,
    pub opened_ms: i64,
    pub resolved_ms: Option<i64>,
    pub duration_s: f64,
    /// Oldest first; empty in lists.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<Event>,
}

/// An incident opened or resolved by `observe`.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// With its first alert's labels.
    Opened {
        id: i64,
        title: String,
        labels: std::collections::BTreeMap<String, String>,
    },
    Resolved {
        id: i64,
    },
}

#[derive(Debug)]
struct OpenIncident {
    id: i64,
    firing: BTreeSet<String>,
    /// Since when no alert has fired.
    quiet_since_ms: Option<i64>,
}

#[derive(Debug)]
pub struct Incidents {
    db: Db,
    open: tokio::sync::Mutex<Option<OpenIncident>>,
    quiet_ms: i64,
    lookback_ms: i64,
}

fn alert_key(alert: &Alert) -> String {
    format!("{:?}", alert.labels)
}

fn alert_summary(alert: &Alert) -> String {
    match alert.annotations.get("summary") {
        Some(summary) => format!("{}: {summary}", alert.rule),
        None => alert.rule.clone(),
    }
}

impl Incidents {
    /// Opens (or creates) the incident file. An incident left open by a
    /// previous run stays open; it resolves after the quiet period unless
    /// its alerts fire again.
    pub async fn open(
        path: &Path,
        quiet: Duration,
        lookback: Duration,
        now_ms: i64,
    ) -> Result<Incidents, IncidentDbError> {
        let db = Db::open(path).await?;
        let open = db.open_one().await?.map(|row| OpenIncident {
            id: row.id,
            firing: BTreeSet::new(),
            quiet_since_ms: Some(now_ms),
        });
        Ok(Incidents {
            db,
            open: tokio::sync::Mutex::new(open),
            quiet_ms: quiet.as_millis() as i64,
            lookback_ms: lookback.as_millis() as i64,
        })
    }

    /// Records an event on the timeline.
    pub async fn record(&self, mut event: Event) -> Result<Event, IncidentDbError> {
        event.id = self.db.insert_event(&event, None).await?;
        Ok(event)
    }

    /// Records an event on an incident's timeline (kept as long as it is).
    pub async fn record_on(
        &self,
        incident: i64,
        mut event: Event,
    ) -> Result<Event, IncidentDbError> {
        event.id = self.db.insert_event(&event, Some(incident)).await?;
        Ok(event)
    }

    /// Opens, extends and resolves incidents from alert transitions; call
    /// after every evaluation, with or without transitions. Returns what
    /// opened and resolved (on call pages and stops on them).
    pub async fn observe(
        &self,
        transitions: &[Transition],
        now_ms: i64,
    ) -> Result<Vec<Change>, IncidentDbError> {
        let mut changes = Vec::new();
        let mut open = self.open.lock().await;
        for transition in transitions {
            match transition {
                Transition::Firing(alert) => {
                    let at = alert.firing_since_ms.unwrap_or(now_ms);
                    if open.is_none() {
                        let title = alert_summary(alert);
                        let id = self.db.open_incident(&title, at).await?;
                        let event = Event::new(
                            at,
                            "monitor",
                            EventKind::IncidentOpened,
                            &alert.rule,
                            format!("incident {id} opened by {}", alert.rule),
                            json!({ "incident": id }),
                        );
                        self.db.insert_event(&event, Some(id)).await?;
                        tracing::warn!(incident = id, %title, "incident opened");
                        changes.push(Change::Opened {
                            id,
                            title: title.clone(),
                            labels: alert.labels.clone(),
                        });
                        *open = Some(OpenIncident {
                            id,
                            firing: BTreeSet::new(),
                            quiet_since_ms: None,
                        });
                    }
                    let event = Event::new(
                        at,
                        "monitor",
                        EventKind::AlertFiring,
                        &alert.rule,
                        alert_summary(alert),
                        json!({ "labels": alert.labels, "annotations": alert.annotations, "value": alert.value }),
                    );
                    self.db.insert_event(&event, None).await?;
                    if let Some(incident) = open.as_mut() {
                        incident.firing.insert(alert_key(alert));
                        incident.quiet_since_ms = None;
                    }
                }
                Transition::Resolved(alert, at) => {
                    let event = Event::new(
                        *at,
                        "monitor",
                        EventKind::AlertResolved,
                        &alert.rule,
                        format!("resolved: {}", alert_summary(alert)),
                        json!({ "labels": alert.labels, "fired_ms": alert.firing_since_ms }),
                    );
                    self.db.insert_event(&event, None).await?;
                    if let Some(incident) = open.as_mut() {
                        incident.firing.remove(&alert_key(alert));
                        if incident.firing.is_empty() {
                            incident.quiet_since_ms = Some(*at);
                        }
                    }
                }
            }
        }
        let quiet_enough = open.as_ref().and_then(|incident| {
            let since = incident.quiet_since_ms?;
            (incident.firing.is_empty() && now_ms - since >= self.quiet_ms)
                .then_some((incident.id, since))
        });
        if let Some((id, since)) = quiet_enough {
            self.db.resolve_incident(id, since).await?;
            let event = Event::new(
                now_ms,
                "monitor",
                EventKind::IncidentResolved,
                "",
                format!(
                    "incident {id} resolved: no alert firing for {} s",
                    self.quiet_ms / 1000
                ),
                json!({ "incident": id, "resolved_ms": since }),
            );
            self.db.insert_event(&event, Some(id)).await?;
            tracing::info!(incident = id, "incident resolved");
            *open = None;
            changes.push(Change::Resolved { id });
        }
        Ok(changes)
    }

    /// A person resolves an incident. Returns false when there is no such
    /// incident or it is resolved already. Its alerts firing again open a
    /// new one.
    pub async fn resolve_by(
        &self,
        id: i64,
        by: &str,
        now_ms: i64,
    ) -> Result<bool, IncidentDbError> {
        let mut open = self.open.lock().await;
        match self.db.incident(id).await? {
            Some(row) if row.resolved_ms.is_none() => {}
            _ => return Ok(false),
        }
        self.db.resolve_incident(id, now_ms).await?;
        let event = Event::new(
            now_ms,
            "person",
            EventKind::IncidentResolved,
            by,
            format!("incident {id} resolved by {by}"),
            json!({ "incident": id, "resolved_ms": now_ms, "by": by }),
        );
        self.db.insert_event(&event, Some(id)).await?;
        if open.as_ref().is_some_and(|o| o.id == id) {
            *open = None;
        }
        Ok(true)
    }

    /// Adds a person's note to an incident; `None` if there is no such
    /// incident.
    pub async fn note(
        &self,
        id: i64,
        author: &str,
        text: &str,
        now_ms: i64,
    ) -> Result<Option<Event>, IncidentDbError> {
        if self.db.incident(id).await?.is_none() {
            return Ok(None);
        }
        let mut event = Event::new(now_ms, "person", EventKind::Note, author, text, json!({}));
        event.id = self.db.insert_event(&event, Some(id)).await?;
        Ok(Some(event))
    }

    pub async fn list(&self, now_ms: i64) -> Result<Vec<IncidentView>, IncidentDbError> {
        let rows = self.db.incidents(100).await?;
        Ok(rows
            .into_iter()
            .map(|row| view(row, now_ms, Vec::new()))
            .collect())
    }

    pub async fn get(&self, id: i64, now_ms: i64) -> Result<Option<IncidentView>, IncidentDbError> {
        match self.db.incident(id).await? {
            Some(row) => Ok(Some(self.with_timeline(row, now_ms, None).await?)),
            None => Ok(None),
        }
    }

    /// The open incident, or else the newest one, with the last `shown`
    /// events of its timeline.
    pub async fn latest(
        &self,
        now_ms: i64,
        shown: u32,
    ) -> Result<Option<IncidentView>, IncidentDbError> {
        match self.db.incidents(1).await?.pop() {
            Some(row) => Ok(Some(self.with_timeline(row, now_ms, Some(shown)).await?)),
            None => Ok(None),
        }
    }

    async fn with_timeline(
        &self,
        row: IncidentRow,
        now_ms: i64,
        newest: Option<u32>,
    ) -> Result<IncidentView, IncidentDbError> {
        // A resolved incident's timeline ends with the record of its
        // resolution, written a quiet period after its last alert.
        let to_ms = match row.resolved_ms {
            Some(resolved) => resolved + self.quiet_ms + 5_000,
            None => now_ms,
        };
        let timeline = self
            .db
            .timeline(row.id, row.opened_ms - self.lookback_ms, to_ms, newest)
            .await?;
        Ok(view(row, now_ms, timeline))
    }

    /// The drill's reports recorded between the times, which may cover an
    /// incident.
    pub(crate) async fn reports_after(
        &self,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Event>, IncidentDbError> {
        self.db
            .events_of_kind(EventKind::DrillReport, from_ms, to_ms)
            .await
    }

    /// Every event of a kind between the times, oldest first.
    pub(crate) async fn events_of(
        &self,
        kind: EventKind,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<Event>, IncidentDbError> {
        self.db.events_of_kind(kind, from_ms, to_ms).await
    }

    pub(crate) async fn last_event_ms(&self, source: &str) -> Result<i64, IncidentDbError> {
        self.db.last_event_ms(source).await
    }

    pub(crate) async fn prune(&self, before_ms: i64) -> Result<u64, IncidentDbError> {
        self.db.prune(before_ms).await
    }
}

fn view(row: IncidentRow, now_ms: i64, timeline: Vec<Event>) -> IncidentView {
    IncidentView {
        id: row.id,
        title: row.title,
        status: if row.resolved_ms.is_some() {
            "resolved"
        } else {
            "open"
        },
        opened_ms: row.opened_ms,
        resolved_ms: row.resolved_ms,
        duration_s: (row.resolved_ms.unwrap_or(now_ms) - row.opened_ms) as f64 / 1000.0,
        timeline,
    }
}
