//! On call: who is paged when an incident opens, and what happens when
//! nobody answers. One page per incident, not per alert: the route of its
//! first alert picks the escalation policy, later alerts join it.
//!
//! `config` is `[oncall]` in monitor.toml; `schedule` says who is on call
//! when; `escalation` is one incident's state machine (no clock of its
//! own); `channels` delivers pages; `link` signs the one-click
//! acknowledgement links. This module drives them: one task owns every
//! escalation, woken by the incidents (opened, resolved), by people
//! (acknowledgements), by the channels (a page that could not be
//! delivered) and by the next escalation falling due. Everything it does
//! goes on the incident's timeline.

pub mod channels;
pub mod config;
pub mod escalation;
pub mod link;
pub mod schedule;
mod task;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::incidents::Incidents;
use channels::{Channels, PageCounts};
use config::OnCall;
use escalation::Via;
use link::Links;
use task::Task;

/// Commands waiting for the on-call task, at most.
const COMMANDS: usize = 1024;

/// The clock escalations run on: unix ms that follow tokio's clock, so a
/// test that pauses tokio's time controls the escalations'.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_ms: i64,
    base: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            base_ms: flashguard_telemetry::unix_ms(),
            base: Instant::now(),
        }
    }

    pub fn now_ms(&self) -> i64 {
        self.base_ms + self.base.elapsed().as_millis() as i64
    }

    pub(crate) fn instant(&self, at_ms: i64) -> Instant {
        self.base + Duration::from_millis((at_ms - self.base_ms).max(0) as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// Why an acknowledgement was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("incident {0} has no escalation in progress (unknown, resolved, or opened before the monitor started)")]
    NotPaging(i64),
    #[error("incident {0} is resolved")]
    Resolved(i64),
    #[error("the on-call task has stopped")]
    Stopped,
}

/// An acknowledgement taken.
#[derive(Debug, Clone, Serialize)]
pub struct Acknowledged {
    pub incident: i64,
    pub by: String,
    pub via: Via,
    pub until_ms: i64,
}

/// An escalation as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct EscalationView {
    pub incident: i64,
    pub title: String,
    pub policy: String,
    pub acknowledged: Option<escalation::Ack>,
    pub next_due_ms: Option<i64>,
}

pub(crate) enum Command {
    Opened {
        incident: i64,
        title: String,
        labels: BTreeMap<String, String>,
    },
    Resolved {
        incident: i64,
        by: Option<String>,
    },
    Ack {
        incident: i64,
        by: String,
        via: Via,
        reply: oneshot::Sender<Result<Acknowledged, AckError>>,
    },
    List {
        reply: oneshot::Sender<Vec<EscalationView>>,
    },
}

/// What the rest of the monitor holds: it tells the on-call task what
/// happened and asks it for acknowledgements.
#[derive(Debug, Clone)]
pub struct OnCallHandle {
    commands: mpsc::Sender<Command>,
    pub links: Arc<Links>,
    pub config: Arc<OnCall>,
    pub clock: Clock,
}

impl OnCallHandle {
    /// Starts the on-call task (and the channels', and the heartbeat).
    pub fn start(
        config: OnCall,
        incidents: Arc<Incidents>,
        counts: PageCounts,
        clock: Clock,
    ) -> OnCallHandle {
        let config = Arc::new(config);
        let links = Arc::new(Links::new(config.link_key.clone()));
        let (commands, inbox) = mpsc::channel(COMMANDS);
        let (reports, deliveries) = mpsc::channel(COMMANDS);
        let channels = Channels::start(config.smtp.clone(), reports, counts);
        if let Some(heartbeat) = config.heartbeat.clone() {
            tokio::spawn(beat(heartbeat));
        }
        let task = Task::new(
            Arc::clone(&config),
            Arc::clone(&links),
            incidents,
            channels,
            clock,
        );
        tokio::spawn(task.run(inbox, deliveries));
        OnCallHandle {
            commands,
            links,
            config,
            clock,
        }
    }

    /// An incident opened with this first alert's labels.
    pub fn opened(&self, incident: i64, title: String, labels: BTreeMap<String, String>) {
        self.tell(Command::Opened {
            incident,
            title,
            labels,
        });
    }

    /// An incident resolved (by a person, or by its alerts going quiet).
    pub fn resolved(&self, incident: i64, by: Option<String>) {
        self.tell(Command::Resolved { incident, by });
    }

    fn tell(&self, command: Command) {
        if self.commands.try_send(command).is_err() {
            tracing::error!("the on-call task is behind or stopped: a change was not told");
        }
    }

    pub async fn acknowledge(
        &self,
        incident: i64,
        by: &str,
        via: Via,
    ) -> Result<Acknowledged, AckError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Ack {
            incident,
            by: by.to_string(),
            via,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| AckError::Stopped)?;
        answer.await.map_err(|_| AckError::Stopped)?
    }

    pub async fn escalations(&self) -> Vec<EscalationView> {
        let (reply, answer) = oneshot::channel();
        if self.commands.send(Command::List { reply }).await.is_err() {
            return Vec::new();
        }
        answer.await.unwrap_or_default()
    }

    /// Who each schedule has on call now.
    pub fn on_call_now(&self) -> BTreeMap<String, Option<String>> {
        let now = self.clock.now_ms();
        self.config
            .schedules
            .iter()
            .map(|(name, s)| (name.clone(), s.on_call(now).map(str::to_string)))
            .collect()
    }
}

/// Posts to the heartbeat URL every interval, so that something outside
/// the monitor notices when it stops (a dead man's switch).
async fn beat(heartbeat: config::Heartbeat) {
    let http = reqwest::Client::builder()
        .timeout(heartbeat.every.min(Duration::from_secs(10)))
        .build()
        .unwrap_or_default();
    let mut tick = tokio::time::interval(heartbeat.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let body = serde_json::json!({
            "source": "flashguard-monitor",
            "status": "alive",
            "at_ms": flashguard_telemetry::unix_ms(),
        });
        if let Err(err) = http.post(&heartbeat.url).json(&body).send().await {
            tracing::warn!(url = %heartbeat.url, error = %err, "heartbeat not delivered");
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
