//! Delivering pages: email over SMTP (lettre; STARTTLS when the server
//! offers it, unless told otherwise), Slack-compatible incoming webhooks,
//! PagerDuty's Events API v2, and a plain JSON webhook. Each channel has
//! its own bounded queue and task with retries and back-off, as the alert
//! notifications have, so a dead mail server never holds up Slack; what
//! still fails after its retries is reported back, and the escalation
//! pages the next level at once.

use std::time::Duration;

use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::config::{Contact, Smtp, StartTls};
use flashguard_telemetry::rfc3339;

/// Pages waiting per channel before new ones are refused (and reported
/// as failed, so the escalation moves on).
const QUEUE: usize = 1024;
/// Tries per page, with back-off from 100 ms doubling: about 3 s in all
/// before a page counts as failed.
const TRIES: u32 = 5;

/// What a page says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Trigger,
    Acknowledged,
    Resolved,
}

/// One notice to one recipient.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    pub kind: NoticeKind,
    pub incident: i64,
    pub title: String,
    /// 1-based, of `levels`.
    pub level: usize,
    pub levels: usize,
    /// 0-based.
    pub round: u32,
    /// Why this page, in a sentence.
    pub why: String,
    pub recipient: String,
    /// The one-click acknowledgement (triggers only).
    pub ack_url: Option<String>,
    pub incident_url: String,
    /// `critical`, `error`, `warning` or `info` (PagerDuty's set).
    pub severity: String,
    pub at_ms: i64,
    /// The first alert's labels.
    pub labels: Value,
}

impl Notice {
    fn subject(&self) -> String {
        match self.kind {
            NoticeKind::Trigger => format!(
                "[flashguard] incident {}: {} (level {} of {})",
                self.incident, self.title, self.level, self.levels
            ),
            NoticeKind::Acknowledged => {
                format!(
                    "[flashguard] incident {} acknowledged: {}",
                    self.incident, self.title
                )
            }
            NoticeKind::Resolved => {
                format!(
                    "[flashguard] incident {} resolved: {}",
                    self.incident, self.title
                )
            }
        }
    }

    fn text(&self) -> String {
        let mut text = format!("{}\n\n{}\n", self.subject(), self.why);
        if let Some(ack) = &self.ack_url {
            text.push_str(&format!("\nAcknowledge (stops the escalation): {ack}\n"));
        }
        text.push_str(&format!("Incident: {}\n", self.incident_url));
        text
    }
}

/// A page sent, or given up on.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub notice: Notice,
    pub channel: &'static str,
    pub delivered: bool,
}

pub type PageCounts = Family<Vec<(String, String)>, Counter>;

#[derive(Debug, Clone)]
struct Job {
    notice: Notice,
    contact: Contact,
}

/// The channels' queues.
#[derive(Debug)]
pub struct Channels {
    queues: Vec<(&'static str, mpsc::Sender<Job>)>,
    reports: mpsc::Sender<Delivery>,
    counts: PageCounts,
}

impl Channels {
    /// Starts a task per channel; deliveries are reported on `reports`.
    pub fn start(
        smtp: Option<Smtp>,
        reports: mpsc::Sender<Delivery>,
        counts: PageCounts,
    ) -> Channels {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        let mailer = smtp.map(mailer);
        let queues = ["email", "slack", "pagerduty", "webhook"]
            .into_iter()
            .map(|channel| {
                let (tx, rx) = mpsc::channel(QUEUE);
                let sender = Sender {
                    http: http.clone(),
                    mailer: mailer.clone(),
                };
                tokio::spawn(deliver(
                    channel,
                    rx,
                    sender,
                    reports.clone(),
                    counts.clone(),
                ));
                (channel, tx)
            })
            .collect();
        Channels {
            queues,
            reports,
            counts,
        }
    }

    /// Queues a notice for a contact without waiting; a full queue counts
    /// as a failed delivery.
    pub fn send(&self, notice: Notice, contact: Contact) {
        let channel = contact.channel();
        let Some((_, queue)) = self.queues.iter().find(|(c, _)| *c == channel) else {
            return;
        };
        if let Err(err) = queue.try_send(Job { notice, contact }) {
            let job = match err {
                mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job) => {
                    job
                }
            };
            count(&self.counts, channel, "dropped");
            let _ = self.reports.try_send(Delivery {
                notice: job.notice,
                channel,
                delivered: false,
            });
        }
    }
}

fn count(counts: &PageCounts, channel: &str, result: &str) {
    counts
        .get_or_create(&vec![
            ("channel".into(), channel.into()),
            ("result".into(), result.into()),
        ])
        .inc();
}

type Mailer = (AsyncSmtpTransport<Tokio1Executor>, lettre::message::Mailbox);

fn mailer(smtp: Smtp) -> Result<Mailer, String> {
    let tls = match smtp.starttls {
        StartTls::Off => Tls::None,
        StartTls::Opportunistic => Tls::Opportunistic(
            TlsParameters::new(smtp.server.clone()).map_err(|err| err.to_string())?,
        ),
        StartTls::Required => {
            Tls::Required(TlsParameters::new(smtp.server.clone()).map_err(|err| err.to_string())?)
        }
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.server)
        .port(smtp.port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(10)));
    if let Some((user, password)) = smtp.credentials {
        builder = builder.credentials(Credentials::new(user, password));
    }
    let from = smtp.from.parse().map_err(|err| format!("{err}"))?;
    Ok((builder.build(), from))
}

#[derive(Clone)]
struct Sender {
    http: reqwest::Client,
    mailer: Option<Result<Mailer, String>>,
}

impl Sender {
    async fn send(&self, job: &Job) -> Result<(), String> {
        let notice = &job.notice;
        match &job.contact {
            Contact::Email(to) => {
                let (transport, from) = match &self.mailer {
                    Some(Ok(mailer)) => mailer,
                    Some(Err(err)) => return Err(err.clone()),
                    None => return Err("no [oncall.smtp]".into()),
                };
                let message = Message::builder()
                    .from(from.clone())
                    .to(to.parse().map_err(|err| format!("{err}"))?)
                    .subject(notice.subject())
                    .body(notice.text())
                    .map_err(|err| err.to_string())?;
                transport
                    .send(message)
                    .await
                    .map(drop)
                    .map_err(|err| err.to_string())
            }
            Contact::Slack(url) => self.post(url, &slack_payload(notice)).await,
            Contact::PagerDuty {
                routing_key,
                events_url,
            } => {
                self.post(events_url, &pagerduty_event(notice, routing_key))
                    .await
            }
            Contact::Webhook(url) => self.post(url, &json!(notice)).await,
        }
    }

    async fn post(&self, url: &str, body: &Value) -> Result<(), String> {
        match self.http.post(url).json(body).send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("answered {}", response.status())),
            Err(err) => Err(err.to_string()),
        }
    }
}

async fn deliver(
    channel: &'static str,
    mut queue: mpsc::Receiver<Job>,
    sender: Sender,
    reports: mpsc::Sender<Delivery>,
    counts: PageCounts,
) {
    while let Some(job) = queue.recv().await {
        let mut delay = Duration::from_millis(100);
        let mut delivered = false;
        for attempt in 1..=TRIES {
            match sender.send(&job).await {
                Ok(()) => {
                    delivered = true;
                    break;
                }
                Err(err) => tracing::warn!(
                    channel,
                    recipient = %job.notice.recipient,
                    incident = job.notice.incident,
                    attempt,
                    error = %err,
                    "page not delivered"
                ),
            }
            if attempt < TRIES {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
        count(&counts, channel, if delivered { "sent" } else { "failed" });
        let report = Delivery {
            notice: job.notice,
            channel,
            delivered,
        };
        if reports.send(report).await.is_err() {
            return;
        }
    }
}

/// A Slack-compatible incoming webhook's message: `text` for clients that
/// show only that (and for notifications), `blocks` for the rest.
pub fn slack_payload(notice: &Notice) -> Value {
    let mut blocks = vec![json!({
        "type": "section",
        "text": { "type": "mrkdwn", "text": format!("*{}*\n{}", notice.subject(), notice.why) },
    })];
    let mut buttons = Vec::new();
    if let Some(ack) = &notice.ack_url {
        buttons.push(json!({
            "type": "button",
            "text": { "type": "plain_text", "text": "Acknowledge" },
            "style": "primary",
            "url": ack,
        }));
    }
    buttons.push(json!({
        "type": "button",
        "text": { "type": "plain_text", "text": "Open the incident" },
        "url": notice.incident_url,
    }));
    blocks.push(json!({ "type": "actions", "elements": buttons }));
    json!({ "text": notice.subject(), "blocks": blocks })
}

/// A PagerDuty Events API v2 event: trigger, acknowledge or resolve, one
/// alert per incident (`dedup_key`).
pub fn pagerduty_event(notice: &Notice, routing_key: &str) -> Value {
    let dedup_key = format!("flashguard-incident-{}", notice.incident);
    match notice.kind {
        NoticeKind::Trigger => {
            let mut links =
                vec![json!({ "href": notice.incident_url, "text": "The incident in flashguard" })];
            if let Some(ack) = &notice.ack_url {
                links.push(json!({ "href": ack, "text": "Acknowledge in flashguard" }));
            }
            json!({
                "routing_key": routing_key,
                "event_action": "trigger",
                "dedup_key": dedup_key,
                "payload": {
                    "summary": truncate(&notice.subject(), 1024),
                    "source": "flashguard-monitor",
                    "severity": notice.severity,
                    "timestamp": rfc3339(notice.at_ms),
                    "component": notice.labels.get("target").cloned().unwrap_or(json!("flashguard")),
                    "custom_details": {
                        "why": notice.why,
                        "level": notice.level,
                        "levels": notice.levels,
                        "labels": notice.labels,
                    },
                },
                "links": links,
            })
        }
        NoticeKind::Acknowledged => json!({
            "routing_key": routing_key,
            "event_action": "acknowledge",
            "dedup_key": dedup_key,
        }),
        NoticeKind::Resolved => json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": dedup_key,
        }),
    }
}

fn truncate(text: &str, most: usize) -> String {
    text.chars().take(most).collect()
}

/// The severity PagerDuty takes, from an alert's `severity` label.
pub fn severity(label: Option<&str>) -> &'static str {
    match label {
        Some("critical" | "page") => "critical",
        Some("error") => "error",
        Some("warning" | "warn") => "warning",
        Some("info") => "info",
        _ => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            kind,
            incident: 4,
            title: "TargetDown: shop-1 is down".into(),
            level: 2,
            levels: 3,
            round: 0,
            why: "level 1 did not acknowledge within 300 s".into(),
            recipient: "ben".into(),
            ack_url: (kind == NoticeKind::Trigger).then(|| "https://m.example/oncall/ack/t".into()),
            incident_url: "https://m.example/api/incidents/4".into(),
            severity: "critical".into(),
            at_ms: 1_764_590_400_000,
            labels: json!({ "alertname": "TargetDown", "target": "shop-1" }),
        }
    }

    #[test]
    fn slack_gets_text_and_blocks_with_an_acknowledge_button() {
        let payload = slack_payload(&notice(NoticeKind::Trigger));
        assert!(payload["text"].as_str().unwrap().contains("incident 4"));
        let blocks = payload["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "section");
        assert_eq!(blocks[0]["text"]["type"], "mrkdwn");
        assert_eq!(blocks[1]["type"], "actions");
        let button = &blocks[1]["elements"][0];
        assert_eq!(button["type"], "button");
        assert_eq!(button["text"]["type"], "plain_text");
        assert_eq!(button["url"], "https://m.example/oncall/ack/t");
        // A resolution has no acknowledge button.
        let resolved = slack_payload(&notice(NoticeKind::Resolved));
        assert_eq!(
            resolved["blocks"][1]["elements"].as_array().unwrap().len(),
            1
        );
    }

    #[test]
    fn pagerduty_events_trigger_acknowledge_and_resolve_one_alert() {
        let trigger = pagerduty_event(&notice(NoticeKind::Trigger), "KEY");
        assert_eq!(trigger["event_action"], "trigger");
        assert_eq!(trigger["dedup_key"], "flashguard-incident-4");
        assert_eq!(trigger["payload"]["severity"], "critical");
        assert_eq!(trigger["payload"]["component"], "shop-1");
        assert_eq!(trigger["payload"]["timestamp"], "2025-12-01T12:00:00Z");
        assert_eq!(trigger["links"].as_array().unwrap().len(), 2);
        for kind in [NoticeKind::Acknowledged, NoticeKind::Resolved] {
            let event = pagerduty_event(&notice(kind), "KEY");
            assert_eq!(event["dedup_key"], "flashguard-incident-4");
            // Only the action and the key: PagerDuty refuses a payload here.
            assert_eq!(event.as_object().unwrap().len(), 3, "{event}");
        }
        assert_eq!(severity(Some("warning")), "warning");
        assert_eq!(severity(None), "error");
    }
}
