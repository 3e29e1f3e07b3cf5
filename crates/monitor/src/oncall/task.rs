//! The on-call task: owns every escalation in progress, acts on their
//! steps (pages through the channels), and puts each page, escalation,
//! acknowledgement, re-page, failed delivery and resolution notice on the
//! incident's timeline.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use flashguard_telemetry::EventKind;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::channels::{self, Channels, Delivery, Notice, NoticeKind};
use super::config::{OnCall, Recipient, Target};
use super::escalation::{AckRefusal, Escalation, PageWhy, Step, Via};
use super::link::Links;
use super::{sleep_until, AckError, Acknowledged, Clock, Command, EscalationView};
use crate::incidents::{Event, Incidents};

/// An escalation and what its notices need of the incident.
struct Paging {
    escalation: Escalation,
    labels: BTreeMap<String, String>,
}

pub(super) struct Task {
    config: Arc<OnCall>,
    links: Arc<Links>,
    incidents: Arc<Incidents>,
    channels: Channels,
    clock: Clock,
    paging: HashMap<i64, Paging>,
}

impl Task {
    pub(super) fn new(
        config: Arc<OnCall>,
        links: Arc<Links>,
        incidents: Arc<Incidents>,
        channels: Channels,
        clock: Clock,
    ) -> Task {
        Task {
            config,
            links,
            incidents,
            channels,
            clock,
            paging: HashMap::new(),
        }
    }

    pub(super) async fn run(
        mut self,
        mut inbox: mpsc::Receiver<Command>,
        mut deliveries: mpsc::Receiver<Delivery>,
    ) {
        loop {
            let due = self
                .paging
                .values()
                .filter_map(|p| p.escalation.due_at_ms())
                .min();
            let wake = due.map(|at| self.clock.instant(at));
            tokio::select! {
                command = inbox.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => return,
                },
                Some(delivery) = deliveries.recv() => self.delivered(delivery).await,
                () = sleep_until(wake) => self.tick().await,
            }
        }
    }

    async fn handle(&mut self, command: Command) {
        let now = self.clock.now_ms();
        match command {
            Command::Opened {
                incident,
                title,
                labels,
            } => {
                let Some(policy) = self.config.route(&labels) else {
                    self.record(
                        incident,
                        "unrouted",
                        "no on-call route matches the incident's first alert: nobody paged".into(),
                        json!({ "labels": labels }),
                    )
                    .await;
                    return;
                };
                let (escalation, step) =
                    Escalation::open(incident, title, policy, self.config.ack_timeout, now);
                self.paging.insert(incident, Paging { escalation, labels });
                self.act(incident, step, now).await;
            }
            Command::Resolved { incident, by } => self.resolve(incident, by).await,
            Command::Ack {
                incident,
                by,
                via,
                reply,
            } => {
                let _ = reply.send(self.acknowledge(incident, &by, via, now).await);
            }
            Command::List { reply } => {
                let views = self
                    .paging
                    .values()
                    .map(|p| {
                        let e = &p.escalation;
                        EscalationView {
                            incident: e.incident,
                            title: e.title.clone(),
                            policy: e.policy().name.clone(),
                            acknowledged: e.acknowledged().cloned(),
                            next_due_ms: e.due_at_ms(),
                        }
                    })
                    .collect();
                let _ = reply.send(views);
            }
        }
    }

    /// Every escalation's due steps.
    async fn tick(&mut self) {
        let now = self.clock.now_ms();
        let due: Vec<(i64, Step)> = self
            .paging
            .iter_mut()
            .filter_map(|(id, p)| p.escalation.tick(now).map(|step| (*id, step)))
            .collect();
        for (incident, step) in due {
            self.act(incident, step, now).await;
        }
    }

    /// A page delivered or given up on: a failed trigger of the current
    /// level pages the next at once.
    async fn delivered(&mut self, delivery: Delivery) {
        let notice = &delivery.notice;
        if delivery.delivered || notice.kind != NoticeKind::Trigger {
            if !delivery.delivered {
                tracing::warn!(
                    incident = notice.incident,
                    channel = delivery.channel,
                    "a notice was not delivered"
                );
            }
            return;
        }
        let now = self.clock.now_ms();
        self.record(
            notice.incident,
            "delivery_failed",
            format!(
                "the page to {} by {} failed after its retries",
                notice.recipient, delivery.channel
            ),
            json!({ "recipient": notice.recipient, "channel": delivery.channel, "level": notice.level }),
        )
        .await;
        let Some(paging) = self.paging.get_mut(&notice.incident) else {
            return;
        };
        let next = paging.escalation.delivery_failed(
            notice.level - 1,
            notice.round,
            delivery.channel,
            now,
        );
        if let Some(step) = next {
            self.act(notice.incident, step, now).await;
        }
    }

    /// Carries out `step`, decided at `now`: its notices are stamped with
    /// that time, the one the escalation's next step was scheduled from,
    /// so a level that escalates after its delay is stamped at least the
    /// delay after the level before (a fresh reading here could be a
    /// millisecond later than the schedule's).
    async fn act(&mut self, incident: i64, step: Step, now: i64) {
        let (level, round, why) = match step {
            Step::Page { level, round, why } => (level, round, why),
            Step::Exhausted { rounds } => {
                self.record(
                    incident,
                    "exhausted",
                    format!("nobody acknowledged after {rounds} round(s) of the policy: escalation stopped"),
                    json!({ "rounds": rounds }),
                )
                .await;
                return;
            }
        };
        let Some(paging) = self.paging.get(&incident) else {
            return;
        };
        let escalation = &paging.escalation;
        let levels = escalation.policy().levels.len();
        let targets = escalation.policy().levels[level].targets.clone();
        let title = escalation.title.clone();
        let labels = paging.labels.clone();
        let mut paged: Vec<(String, Vec<&'static str>)> = Vec::new();
        let mut nobody: Vec<String> = Vec::new();
        for target in &targets {
            let Some(recipient) = self.config.resolve(target, now).cloned() else {
                nobody.push(describe(target));
                continue;
            };
            if recipient.contacts.is_empty() {
                nobody.push(recipient.name.clone());
                continue;
            }
            let notice = self.notice(
                NoticeKind::Trigger,
                incident,
                &title,
                &labels,
                (level, levels, round),
                sentence(&why, level, levels),
                &recipient,
                now,
            );
            for contact in &recipient.contacts {
                self.channels.send(notice.clone(), contact.clone());
            }
            paged.push((
                recipient.name.clone(),
                recipient.contacts.iter().map(|c| c.channel()).collect(),
            ));
        }
        let action = match &why {
            PageWhy::Opened => "page",
            PageWhy::AcknowledgementLapsed { .. } => "repage",
            PageWhy::NotAcknowledged { .. } | PageWhy::DeliveryFailed { .. } => "escalate",
        };
        let whom = if paged.is_empty() {
            "nobody reachable".to_string()
        } else {
            paged
                .iter()
                .map(|(name, via)| format!("{name} ({})", via.join(", ")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut summary = format!(
            "paged level {} of {levels}{}: {whom}; {}",
            level + 1,
            if round > 0 {
                format!(" (round {})", round + 1)
            } else {
                String::new()
            },
            sentence(&why, level, levels)
        );
        if !nobody.is_empty() {
            summary.push_str(&format!("; not reachable: {}", nobody.join(", ")));
        }
        self.record(
            incident,
            action,
            summary,
            json!({ "level": level + 1, "round": round + 1, "why": why, "paged": paged, "unreachable": nobody }),
        )
        .await;
        if let Some(paging) = self.paging.get_mut(&incident) {
            paging
                .escalation
                .record_paged(paged.iter().map(|(name, _)| name.clone()));
            // A level that reaches nobody is no better than one that did
            // not answer: the next, at once.
            if paged.is_empty() {
                let next = paging.escalation.delivery_failed(level, round, "none", now);
                if let Some(step) = next {
                    Box::pin(self.act(incident, step, now)).await;
                }
            }
        }
    }

    async fn acknowledge(
        &mut self,
        incident: i64,
        by: &str,
        via: Via,
        now: i64,
    ) -> Result<Acknowledged, AckError> {
        let paging = self
            .paging
            .get_mut(&incident)
            .ok_or(AckError::NotPaging(incident))?;
        let ack = paging
            .escalation
            .acknowledge(by, via, now)
            .map_err(|AckRefusal::Resolved| AckError::Resolved(incident))?
            .clone();
        let title = paging.escalation.title.clone();
        let labels = paging.labels.clone();
        let levels = paging.escalation.policy().levels.len();
        let paged = paging.escalation.paged();
        self.record(
            incident,
            "acknowledge",
            format!(
                "acknowledged by {by} ({}): escalation stops for {} min",
                via_name(via),
                self.config.ack_timeout.as_secs() / 60
            ),
            json!({ "by": by, "via": via, "until_ms": ack.until_ms }),
        )
        .await;
        // PagerDuty keeps its own incident: acknowledge it there too.
        for name in paged {
            if let Some(recipient) = self.recipient(&name) {
                let notice = self.notice(
                    NoticeKind::Acknowledged,
                    incident,
                    &title,
                    &labels,
                    (0, levels, 0),
                    format!("acknowledged by {by}"),
                    &recipient,
                    now,
                );
                for contact in recipient
                    .contacts
                    .iter()
                    .filter(|c| matches!(c, super::config::Contact::PagerDuty { .. }))
                {
                    self.channels.send(notice.clone(), contact.clone());
                }
            }
        }
        Ok(Acknowledged {
            incident,
            by: by.to_string(),
            via,
            until_ms: ack.until_ms,
        })
    }

    async fn resolve(&mut self, incident: i64, by: Option<String>) {
        let Some(mut paging) = self.paging.remove(&incident) else {
            return;
        };
        let now = self.clock.now_ms();
        let told = paging.escalation.resolve();
        let title = paging.escalation.title.clone();
        let levels = paging.escalation.policy().levels.len();
        let why = match &by {
            Some(by) => format!("resolved by {by}"),
            None => "resolved: its alerts stayed quiet".to_string(),
        };
        for name in &told {
            if let Some(recipient) = self.recipient(name) {
                let notice = self.notice(
                    NoticeKind::Resolved,
                    incident,
                    &title,
                    &paging.labels,
                    (0, levels, 0),
                    why.clone(),
                    &recipient,
                    now,
                );
                for contact in &recipient.contacts {
                    self.channels.send(notice.clone(), contact.clone());
                }
            }
        }
        if !told.is_empty() {
            self.record(
                incident,
                "resolution_notice",
                format!("{why}; told {}", told.join(", ")),
                json!({ "told": told, "by": by }),
            )
            .await;
        }
    }

    fn recipient(&self, name: &str) -> Option<Recipient> {
        self.config
            .people
            .get(name)
            .or_else(|| self.config.channels.get(name))
            .cloned()
    }

    #[allow(clippy::too_many_arguments)]
    fn notice(
        &self,
        kind: NoticeKind,
        incident: i64,
        title: &str,
        labels: &BTreeMap<String, String>,
        (level, levels, round): (usize, usize, u32),
        why: String,
        recipient: &Recipient,
        now: i64,
    ) -> Notice {
        let expires = now + self.config.link_ttl.as_millis() as i64;
        let ack_url = (kind == NoticeKind::Trigger).then(|| {
            format!(
                "{}/oncall/ack/{}",
                self.config.public_url,
                self.links.sign(incident, &recipient.name, expires)
            )
        });
        Notice {
            kind,
            incident,
            title: title.to_string(),
            level: level + 1,
            levels,
            round,
            why,
            recipient: recipient.name.clone(),
            ack_url,
            incident_url: format!("{}/api/incidents/{incident}", self.config.public_url),
            severity: channels::severity(labels.get("severity").map(String::as_str)).to_string(),
            at_ms: now,
            labels: json!(labels),
        }
    }

    async fn record(&self, incident: i64, action: &str, summary: String, mut data: Value) {
        data["action"] = json!(action);
        data["incident"] = json!(incident);
        let event = Event::new(
            self.clock.now_ms(),
            "oncall",
            EventKind::OnCall,
            action,
            summary,
            data,
        );
        if let Err(err) = self.incidents.record_on(incident, event).await {
            tracing::error!(%err, incident, "recording an on-call event");
        }
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Person(n) => n.clone(),
        Target::Channel(n) => format!("channel {n}"),
        Target::Schedule(n) => format!("schedule {n} (nobody on call)"),
    }
}

fn via_name(via: Via) -> &'static str {
    match via {
        Via::Api => "API",
        Via::Dashboard => "dashboard",
        Via::Link => "link",
        Via::Cli => "CLI",
    }
}

/// Why a level (0-based, of `levels`) is paged, in words.
fn sentence(why: &PageWhy, level: usize, levels: usize) -> String {
    // The level before, 1-based: the last one when the policy starts over.
    let before = if level == 0 { levels } else { level };
    match why {
        PageWhy::Opened => "the incident opened".to_string(),
        PageWhy::NotAcknowledged { after_s } => {
            format!("level {before} did not acknowledge within {after_s} s")
        }
        PageWhy::DeliveryFailed { channel } => {
            format!("a page of level {before} could not be delivered ({channel})")
        }
        PageWhy::AcknowledgementLapsed { by } => {
            format!("{by}'s acknowledgement lapsed with the incident still open")
        }
    }
}
