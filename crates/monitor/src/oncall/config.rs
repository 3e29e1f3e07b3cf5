//! `[oncall]` in monitor.toml as written, and the validated [`OnCall`]
//! it becomes: people and how to reach them, shared channels, schedules,
//! escalation policies and the routes from an incident's first alert to a
//! policy. A bad file is refused naming the field; so is a policy whose
//! levels reach nobody.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::schedule::{Override, Rotation, Schedule};
use crate::config::MonitorConfigError;

/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnCallFile {
    /// The monitor's address as people reach it (a phone on the internet,
    /// say): acknowledgement links in notifications point here. Default
    /// `http://127.0.0.1:8003`.
    pub public_url: String,
    /// Signs acknowledgement links (at least 16 characters). Default: a
    /// random key at each start, so links die with a restart.
    pub link_key: Option<String>,
    /// Links expire after this, in s. Default 86400 (a day).
    pub link_ttl_s: u64,
    /// An acknowledgement lapses after this, in s, and the level is paged
    /// again if the incident is still open. Default 1800 (PagerDuty's).
    pub ack_timeout_s: u64,
    pub smtp: Option<SmtpFile>,
    #[serde(rename = "person")]
    pub people: Vec<RecipientFile>,
    #[serde(rename = "channel")]
    pub channels: Vec<RecipientFile>,
    #[serde(rename = "schedule")]
    pub schedules: Vec<ScheduleFile>,
    #[serde(rename = "policy")]
    pub policies: Vec<PolicyFile>,
    #[serde(rename = "route")]
    pub routes: Vec<RouteFile>,
    pub heartbeat: Option<HeartbeatFile>,
}

impl Default for OnCallFile {
    fn default() -> Self {
        OnCallFile {
            public_url: "http://127.0.0.1:8003".into(),
            link_key: None,
            link_ttl_s: 86_400,
            ack_timeout_s: 1_800,
            smtp: None,
            people: Vec::new(),
            channels: Vec::new(),
            schedules: Vec::new(),
            policies: Vec::new(),
            routes: Vec::new(),
            heartbeat: None,
        }
    }
}

/// The mail server pages go through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub server: String,
    /// Default 25.
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// The sender, `Name <address>` or an address.
    pub from: String,
    /// `opportunistic` (STARTTLS when the server offers it; the default),
    /// `required`, or `off`.
    #[serde(default)]
    pub starttls: StartTls,
    pub username: Option<String>,
    pub password: Option<String>,
}

fn default_smtp_port() -> u16 {
    25
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartTls {
    #[default]
    Opportunistic,
    Required,
    Off,
}

/// How to reach someone (or a team's channel): any of these, each
/// notified.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContactsFile {
    pub email: Option<String>,
    /// A Slack-compatible incoming webhook URL.
    pub slack_webhook: Option<String>,
    /// A PagerDuty service's integration (routing) key.
    pub pagerduty_routing_key: Option<String>,
    /// Default PagerDuty's; set to send Events API v2 payloads elsewhere.
    pub pagerduty_events_url: Option<String>,
    /// The monitor's own JSON page payload, POSTed.
    pub webhook: Option<String>,
}

/// A person (`[[oncall.person]]`) or a team's channel
/// (`[[oncall.channel]]`): a name and how to reach it.
#[derive(Debug, Clone, Deserialize)]
pub struct RecipientFile {
    pub name: String,
    #[serde(flatten)]
    pub contacts: ContactsFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    pub name: String,
    /// An IANA time zone (`Europe/Paris`). Default `UTC`.
    #[serde(default = "default_zone")]
    pub time_zone: String,
    /// People in turn, by name.
    pub rotation: Vec<String>,
    /// When a shift hands over, local time `HH:MM`. Default `09:00`.
    #[serde(default = "default_handoff")]
    pub handoff: String,
    /// Days a shift lasts. Default 7.
    #[serde(default = "default_shift_days")]
    pub shift_days: u32,
    /// The local date (`YYYY-MM-DD`) of the first handoff, to the first
    /// of the rotation.
    pub start: String,
    #[serde(default, rename = "override")]
    pub overrides: Vec<OverrideFile>,
}

fn default_zone() -> String {
    "UTC".into()
}
fn default_handoff() -> String {
    "09:00".into()
}
fn default_shift_days() -> u32 {
    7
}

/// Someone else on call for a while (RFC 3339 times).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideFile {
    pub person: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub name: String,
    /// Times the whole policy runs again when its last level is not
    /// acknowledged. Default 0.
    #[serde(default)]
    pub repeat: u32,
    #[serde(rename = "level")]
    pub levels: Vec<LevelFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelFile {
    /// `person:NAME`, `schedule:NAME` (whoever is on call then) or
    /// `channel:NAME`.
    pub targets: Vec<String>,
    /// Without acknowledgement, the next level is paged this long after
    /// this one, in s. Default 300.
    #[serde(default = "default_delay")]
    pub delay_s: u64,
}

fn default_delay() -> u64 {
    300
}

/// An incident whose first alert has all of `match`'s labels goes to
/// `policy`; the first route that matches wins, and a route with no
/// `match` takes everything.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    #[serde(default, rename = "match")]
    pub labels: BTreeMap<String, String>,
    pub policy: String,
}

/// A dead man's switch: the monitor POSTs here every `every_s`, so that
/// something outside it notices when it stops.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatFile {
    pub url: String,
    /// Default 60.
    #[serde(default = "default_heartbeat")]
    pub every_s: u64,
}

fn default_heartbeat() -> u64 {
    60
}

/// One way to reach someone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Contact {
    Email(String),
    Slack(String),
    PagerDuty {
        routing_key: String,
        events_url: String,
    },
    Webhook(String),
}

impl Contact {
    /// The channel's name in events and metrics.
    pub fn channel(&self) -> &'static str {
        match self {
            Contact::Email(_) => "email",
            Contact::Slack(_) => "slack",
            Contact::PagerDuty { .. } => "pagerduty",
            Contact::Webhook(_) => "webhook",
        }
    }
}

/// Someone (or a channel) who can be paged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub name: String,
    pub contacts: Vec<Contact>,
}

/// Whom a level pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Person(String),
    /// Whoever the schedule has on call when the level is paged.
    Schedule(String),
    Channel(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub targets: Vec<Target>,
    pub delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub levels: Vec<Level>,
    pub repeat: u32,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub labels: BTreeMap<String, String>,
    pub policy: Arc<Policy>,
}

#[derive(Debug, Clone)]
pub struct Smtp {
    pub server: String,
    pub port: u16,
    pub from: String,
    pub starttls: StartTls,
    pub credentials: Option<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub url: String,
    pub every: Duration,
}

/// The validated on-call settings.
#[derive(Debug, Clone)]
pub struct OnCall {
    pub public_url: String,
    pub link_key: Vec<u8>,
    pub link_ttl: Duration,
    pub ack_timeout: Duration,
    pub smtp: Option<Smtp>,
    pub people: BTreeMap<String, Recipient>,
    pub channels: BTreeMap<String, Recipient>,
    pub schedules: BTreeMap<String, Schedule>,
    pub routes: Vec<Route>,
    pub heartbeat: Option<Heartbeat>,
}

impl OnCall {
    /// The policy for an incident whose first alert has these labels.
    pub fn route(&self, labels: &BTreeMap<String, String>) -> Option<Arc<Policy>> {
        self.routes
            .iter()
            .find(|route| route.labels.iter().all(|(k, v)| labels.get(k) == Some(v)))
            .map(|route| Arc::clone(&route.policy))
    }

    /// Whom a target means at `now_ms` (a schedule's on-call then); None
    /// when a schedule has nobody.
    pub fn resolve(&self, target: &Target, now_ms: i64) -> Option<&Recipient> {
        match target {
            Target::Person(name) => self.people.get(name),
            Target::Channel(name) => self.channels.get(name),
            Target::Schedule(name) => {
                let person = self.schedules.get(name)?.on_call(now_ms)?;
                self.people.get(person)
            }
        }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> MonitorConfigError {
    MonitorConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn http_url(field: String, url: &str) -> Result<(), MonitorConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(field, "must start with http:// or https://"))
    }
}

fn contacts(field: &str, file: &ContactsFile) -> Result<Vec<Contact>, MonitorConfigError> {
    let mut found = Vec::new();
    if let Some(email) = &file.email {
        if email.parse::<lettre::Address>().is_err() {
            return Err(invalid(format!("{field}.email"), "is not an email address"));
        }
        found.push(Contact::Email(email.clone()));
    }
    if let Some(url) = &file.slack_webhook {
        http_url(format!("{field}.slack_webhook"), url)?;
        found.push(Contact::Slack(url.clone()));
    }
    if let Some(key) = &file.pagerduty_routing_key {
        if key.trim().is_empty() {
            return Err(invalid(
                format!("{field}.pagerduty_routing_key"),
                "is empty",
            ));
        }
        let events_url = file
            .pagerduty_events_url
            .clone()
            .unwrap_or_else(|| PAGERDUTY_EVENTS_URL.into());
        http_url(format!("{field}.pagerduty_events_url"), &events_url)?;
        found.push(Contact::PagerDuty {
            routing_key: key.clone(),
            events_url,
        });
    } else if file.pagerduty_events_url.is_some() {
        return Err(invalid(
            format!("{field}.pagerduty_events_url"),
            "goes with pagerduty_routing_key",
        ));
    }
    if let Some(url) = &file.webhook {
        http_url(format!("{field}.webhook"), url)?;
        found.push(Contact::Webhook(url.clone()));
    }
    Ok(found)
}

impl OnCallFile {
    /// Whether anything is configured (an empty `[oncall]` pages nobody).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
            && self.people.is_empty()
            && self.channels.is_empty()
            && self.schedules.is_empty()
            && self.routes.is_empty()
            && self.smtp.is_none()
            && self.heartbeat.is_none()
    }

    pub fn validate(&self) -> Result<OnCall, MonitorConfigError> {
        http_url("oncall.public_url".into(), &self.public_url)?;
        let link_key = match &self.link_key {
            Some(key) if key.len() < 16 => {
                return Err(invalid("oncall.link_key", "must be at least 16 characters"))
            }
            Some(key) => key.as_bytes().to_vec(),
            // From the system's CSPRNG (uuid's v4 is getrandom's bytes).
            None => [uuid::Uuid::new_v4(), uuid::Uuid::new_v4()]
                .iter()
                .flat_map(|u| *u.as_bytes())
                .collect(),
        };
        if !(60..=30 * 86_400).contains(&self.link_ttl_s) {
            return Err(invalid("oncall.link_ttl_s", "must be 60 to 2592000"));
        }
        if !(1..=7 * 86_400).contains(&self.ack_timeout_s) {
            return Err(invalid("oncall.ack_timeout_s", "must be 1 to 604800"));
        }
        let smtp = match &self.smtp {
            None => None,
            Some(s) => {
                if s.server.trim().is_empty() {
                    return Err(invalid("oncall.smtp.server", "is empty"));
                }
                if s.from.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(invalid(
                        "oncall.smtp.from",
                        "is not a mailbox (`Name <address>` or an address)",
                    ));
                }
                let credentials = match (&s.username, &s.password) {
                    (Some(u), Some(p)) => Some((u.clone(), p.clone())),
                    (None, None) => None,
                    _ => {
                        return Err(invalid(
                            "oncall.smtp.username",
                            "username and password go together",
                        ))
                    }
                };
                Some(Smtp {
                    server: s.server.clone(),
                    port: s.port,
                    from: s.from.clone(),
                    starttls: s.starttls,
                    credentials,
                })
            }
        };
        let mail = smtp.is_some();
        // A person may have no contact yet (a schedule's newcomer); a
        // channel is nothing but its contacts.
        let people = recipients("oncall.person", &self.people, mail, false)?;
        let channels = recipients("oncall.channel", &self.channels, mail, true)?;
        let mut schedules = BTreeMap::new();
        for (i, s) in self.schedules.iter().enumerate() {
            let field = format!("oncall.schedule[{i}]");
            if s.name.trim().is_empty() || schedules.contains_key(&s.name) {
                return Err(invalid(format!("{field}.name"), "must be set and unique"));
            }
            for (j, name) in s.rotation.iter().enumerate() {
                if !people.contains_key(name) {
                    return Err(invalid(
                        format!("{field}.rotation[{j}]"),
                        format!("no person named {name:?}"),
                    ));
                }
            }
            let mut overrides = Vec::new();
            for (j, o) in s.overrides.iter().enumerate() {
                let at = format!("{field}.override[{j}]");
                if !people.contains_key(&o.person) {
                    return Err(invalid(
                        format!("{at}.person"),
                        format!("no person named {:?}", o.person),
                    ));
                }
                let from = instant(&format!("{at}.from"), &o.from)?;
                let to = instant(&format!("{at}.to"), &o.to)?;
                if to <= from {
                    return Err(invalid(format!("{at}.to"), "must be after from"));
                }
                overrides.push(Override {
                    person: o.person.clone(),
                    from_ms: from,
                    to_ms: to,
                });
            }
            let rotation = Rotation::new(
                s.rotation.clone(),
                &s.time_zone,
                &s.start,
                &s.handoff,
                s.shift_days,
            )
            .map_err(|(what, problem)| invalid(format!("{field}.{what}"), problem))?;
            schedules.insert(s.name.clone(), Schedule::new(rotation, overrides));
        }
        let mut policies: BTreeMap<String, Arc<Policy>> = BTreeMap::new();
        for (i, p) in self.policies.iter().enumerate() {
            let field = format!("oncall.policy[{i}]");
            if p.name.trim().is_empty() || policies.contains_key(&p.name) {
                return Err(invalid(format!("{field}.name"), "must be set and unique"));
            }
            if p.levels.is_empty() {
                return Err(invalid(format!("{field}.level"), "a policy needs a level"));
            }
            if p.repeat > 10 {
                return Err(invalid(format!("{field}.repeat"), "must be at most 10"));
            }
            let mut levels = Vec::new();
            for (j, l) in p.levels.iter().enumerate() {
                let at = format!("{field}.level[{j}]");
                if !(1..=86_400).contains(&l.delay_s) {
                    return Err(invalid(format!("{at}.delay_s"), "must be 1 to 86400"));
                }
                let mut targets = Vec::new();
                for (k, t) in l.targets.iter().enumerate() {
                    let target = target(t).ok_or_else(|| {
                        invalid(
                            format!("{at}.targets[{k}]"),
                            format!("{t:?}: expected person:NAME, schedule:NAME or channel:NAME"),
                        )
                    })?;
                    let known = match &target {
                        Target::Person(n) => people.contains_key(n),
                        Target::Schedule(n) => schedules.contains_key(n),
                        Target::Channel(n) => channels.contains_key(n),
                    };
                    if !known {
                        return Err(invalid(
                            format!("{at}.targets[{k}]"),
                            format!("{t:?} names nobody configured"),
                        ));
                    }
                    targets.push(target);
                }
                levels.push(Level {
                    targets,
                    delay: Duration::from_secs(l.delay_s),
                });
            }
            // A policy must be able to reach someone: a person or channel
            // with a contact, or a schedule with a rotation.
            let reachable = levels.iter().flat_map(|l| &l.targets).any(|t| match t {
                Target::Person(n) => people.get(n).is_some_and(|p| !p.contacts.is_empty()),
                Target::Channel(_) => true,
                Target::Schedule(n) => schedules[n]
                    .people()
                    .any(|name| people.get(name).is_some_and(|p| !p.contacts.is_empty())),
            });
            if !reachable {
                return Err(invalid(
                    field,
                    "reaches nobody: no target of any level has a contact",
                ));
            }
            policies.insert(
                p.name.clone(),
                Arc::new(Policy {
                    name: p.name.clone(),
                    levels,
                    repeat: p.repeat,
                }),
            );
        }
        let mut routes = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let policy = policies.get(&r.policy).ok_or_else(|| {
                invalid(
                    format!("oncall.route[{i}].policy"),
                    format!("no policy named {:?}", r.policy),
                )
            })?;
            routes.push(Route {
                labels: r.labels.clone(),
                policy: Arc::clone(policy),
            });
        }
        // Policies without a route: the first catches everything.
        if routes.is_empty() {
            if let Some(first) = self.policies.first() {
                routes.push(Route {
                    labels: BTreeMap::new(),
                    policy: Arc::clone(&policies[&first.name]),
                });
            }
        }
        let heartbeat = match &self.heartbeat {
            None => None,
            Some(h) => {
                http_url("oncall.heartbeat.url".into(), &h.url)?;
                if !(1..=86_400).contains(&h.every_s) {
                    return Err(invalid("oncall.heartbeat.every_s", "must be 1 to 86400"));
                }
                Some(Heartbeat {
                    url: h.url.clone(),
                    every: Duration::from_secs(h.every_s),
                })
            }
        };
        Ok(OnCall {
            public_url: self.public_url.trim_end_matches('/').to_string(),
            link_key,
            link_ttl: Duration::from_secs(self.link_ttl_s),
            ack_timeout: Duration::from_secs(self.ack_timeout_s),
            smtp,
            people,
            channels,
            schedules,
            routes,
            heartbeat,
        })
    }
}

/// People or channels by name, each checked.
fn recipients(
    list: &str,
    files: &[RecipientFile],
    mail: bool,
    need_contact: bool,
) -> Result<BTreeMap<String, Recipient>, MonitorConfigError> {
    let mut found = BTreeMap::new();
    for (i, r) in files.iter().enumerate() {
        let field = format!("{list}[{i}]");
        let contacts = contacts(&field, &r.contacts)?;
        if need_contact && contacts.is_empty() {
            return Err(invalid(field, "reaches nobody: give it a contact"));
        }
        if contacts.iter().any(|c| matches!(c, Contact::Email(_))) && !mail {
            return Err(invalid(format!("{field}.email"), "needs [oncall.smtp]"));
        }
        if r.name.trim().is_empty() || found.contains_key(&r.name) {
            return Err(invalid(format!("{field}.name"), "must be set and unique"));
        }
        found.insert(
            r.name.clone(),
            Recipient {
                name: r.name.clone(),
                contacts,
            },
        );
    }
    Ok(found)
}

fn target(text: &str) -> Option<Target> {
    let (kind, name) = text.split_once(':')?;
    let name = name.to_string();
    match kind {
        "person" => Some(Target::Person(name)),
        "schedule" => Some(Target::Schedule(name)),
        "channel" => Some(Target::Channel(name)),
        _ => None,
    }
}

/// An RFC 3339 time as unix ms.
fn instant(field: &str, text: &str) -> Result<i64, MonitorConfigError> {
    flashguard_telemetry::parse_rfc3339(text).map_err(|problem| invalid(field, problem))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
        public_url = "https://monitor.example.com/"
        link_key = "a key of sixteen or more"
        [smtp]
        server = "127.0.0.1"
        from = "flashguard <oncall@example.com>"
        [[person]]
        name = "ana"
        email = "ana@example.com"
        [[person]]
        name = "ben"
        slack_webhook = "https://hooks.example.com/ben"
        [[channel]]
        name = "ops"
        pagerduty_routing_key = "R0UT1NGKEY"
        [[schedule]]
        name = "primary"
        time_zone = "Europe/Paris"
        rotation = ["ana", "ben"]
        start = "2026-11-30"
        [[policy]]
        name = "default"
        repeat = 1
        [[policy.level]]
        targets = ["schedule:primary"]
        delay_s = 60
        [[policy.level]]
        targets = ["person:ben", "channel:ops"]
        [[route]]
        policy = "default"
        match = { severity = "critical" }
    "#;

    fn parse(text: &str) -> Result<OnCall, MonitorConfigError> {
        toml::from_str::<OnCallFile>(text)
            .map_err(|err| invalid("oncall", err.to_string()))?
            .validate()
    }

    #[test]
    fn a_whole_file_routes_an_alert_to_its_policy() {
        let oncall = parse(GOOD).unwrap();
        assert_eq!(oncall.public_url, "https://monitor.example.com");
        let critical = BTreeMap::from([("severity".to_string(), "critical".to_string())]);
        let policy = oncall.route(&critical).unwrap();
        assert_eq!(policy.levels.len(), 2);
        assert_eq!(policy.levels[0].delay, Duration::from_secs(60));
        assert_eq!(policy.levels[1].delay, Duration::from_secs(300));
        assert!(oncall.route(&BTreeMap::new()).is_none());
        assert_eq!(
            oncall.channels["ops"].contacts,
            vec![Contact::PagerDuty {
                routing_key: "R0UT1NGKEY".into(),
                events_url: PAGERDUTY_EVENTS_URL.into()
            }]
        );
    }

    #[test]
    fn bad_files_are_refused_naming_the_field() {
        let cases = [
            (
                GOOD.replace("schedule:primary", "schedule:nobody"),
                "oncall.policy[0].level[0].targets[0]",
            ),
            (
                GOOD.replace("\"person:ben\"", "\"team:ben\""),
                "oncall.policy[0].level[1].targets[0]",
            ),
            (
                GOOD.replace("delay_s = 60", "delay_s = 0"),
                "oncall.policy[0].level[0].delay_s",
            ),
            (
                GOOD.replace(
                    "rotation = [\"ana\", \"ben\"]",
                    "rotation = [\"ana\", \"zed\"]",
                ),
                "oncall.schedule[0].rotation[1]",
            ),
            (
                GOOD.replace("Europe/Paris", "Mars/Olympus"),
                "oncall.schedule[0].time_zone",
            ),
            (
                GOOD.replace("policy = \"default\"\n", "policy = \"other\"\n"),
                "oncall.route[0].policy",
            ),
            (
                GOOD.replace("ana@example.com", "not an address"),
                "oncall.person[0].email",
            ),
            (
                GOOD.replace("a key of sixteen or more", "short"),
                "oncall.link_key",
            ),
            (
                GOOD.replace("https://hooks.example.com/ben", "hooks"),
                "oncall.person[1].slack_webhook",
            ),
        ];
        for (text, field) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.starts_with(&format!("{field}:")), "{field}: {err}");
        }
        // Mail without a mail server.
        let no_smtp = GOOD.replace("[smtp]\n        server = \"127.0.0.1\"\n        from = \"flashguard <oncall@example.com>\"\n", "");
        assert!(parse(&no_smtp)
            .unwrap_err()
            .to_string()
            .starts_with("oncall.person[0].email:"));
    }

    #[test]
    fn a_policy_that_reaches_nobody_is_refused() {
        let text = r#"
            [[person]]
            name = "ana"
            [[policy]]
            name = "silent"
            [[policy.level]]
            targets = ["person:ana"]
        "#;
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with("oncall.policy[0]: reaches nobody"), "{err}");
    }
}
