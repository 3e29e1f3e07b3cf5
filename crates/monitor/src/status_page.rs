//! What the public status page says, pushed to every gateway it follows
//! (`PUT /admin/status`) once a collection: component states from firing
//! alerts (which alert moves which component is `[[status.rule]]`, with
//! defaults), the incidents' public updates (written by the on-call through
//! `POST /api/incidents/{id}/updates`, kept on the timeline), and
//! scheduled maintenance. A status page is public, so automatic states can
//! be held for a person (`auto_publish = false`): then only the public
//! updates and maintenance are pushed, and the gateway's own view (every
//! backend down) still shows.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use flashguard_telemetry::EventKind;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::{GatewayAdmin, MonitorConfigError};
use crate::monitor::Monitor;
use crate::rules::AlertState;

/// Public updates are shown for a week after their last.
const SHOWN_MS: i64 = 7 * 24 * 3600 * 1000;

/// A component state, as the page spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Operational,
    UnderMaintenance,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

/// A public update's stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

const COMPONENTS: [&str; 4] = ["storefront", "checkout", "sale", "waiting_room"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusRule {
    /// The alert's name (its rule).
    pub alert: String,
    pub component: String,
    pub state: State,
    /// What customers read, default none.
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceFile {
    pub name: String,
    /// RFC 3339.
    pub from: String,
    pub to: String,
    pub components: Vec<String>,
}

/// `[status]` in monitor.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusFile {
    /// Push component states from alerts without a person confirming.
    /// Default true.
    pub auto_publish: bool,
    /// Which alert moves which component; default: `ErrorRatioHigh` and
    /// `LatencyP99High` make the storefront and checkout degraded,
    /// `RequestsShed` and `ShopShedding` the checkout.
    #[serde(rename = "rule")]
    pub rules: Option<Vec<StatusRule>>,
    #[serde(rename = "maintenance")]
    pub maintenance: Vec<MaintenanceFile>,
}

impl Default for StatusFile {
    fn default() -> Self {
        StatusFile {
            auto_publish: true,
            rules: None,
            maintenance: Vec::new(),
        }
    }
}

fn default_rules() -> Vec<StatusRule> {
    let degraded = |alert: &str, component: &str, why: &str| StatusRule {
        alert: alert.into(),
        component: component.into(),
        state: State::DegradedPerformance,
        description: Some(why.into()),
    };
    vec![
        degraded(
            "ErrorRatioHigh",
            "storefront",
            "Some pages fail to load; we are on it.",
        ),
        degraded(
            "ErrorRatioHigh",
            "checkout",
            "Some orders fail; please retry shortly.",
        ),
        degraded(
            "LatencyP99High",
            "storefront",
            "Pages are slower than usual.",
        ),
        degraded(
            "LatencyP99High",
            "checkout",
            "Orders take longer than usual.",
        ),
        degraded(
            "RequestsShed",
            "checkout",
            "Very high demand: some orders are asked to retry.",
        ),
        degraded(
            "ShopShedding",
            "checkout",
            "Very high demand: some orders are asked to retry.",
        ),
    ]
}

/// The validated settings.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    pub auto_publish: bool,
    pub rules: Vec<StatusRule>,
    /// (name, from ms, to ms, components)
    pub maintenance: Vec<(String, i64, i64, Vec<String>)>,
}

impl Default for StatusSettings {
    fn default() -> Self {
        StatusFile::default()
            .validate()
            .expect("the default status settings are valid")
    }
}

fn invalid(field: String, problem: impl Into<String>) -> MonitorConfigError {
    MonitorConfigError::Invalid {
        field,
        problem: problem.into(),
    }
}

impl StatusFile {
    pub fn validate(&self) -> Result<StatusSettings, MonitorConfigError> {
        let rules = self.rules.clone().unwrap_or_else(default_rules);
        for (i, r) in rules.iter().enumerate() {
            if !COMPONENTS.contains(&r.component.as_str()) {
                return Err(invalid(
                    format!("status.rule[{i}].component"),
                    format!("{:?} is not one of {COMPONENTS:?}", r.component),
                ));
            }
        }
        let mut maintenance = Vec::new();
        for (i, m) in self.maintenance.iter().enumerate() {
            let at = |field: &str, text: &str| {
                flashguard_telemetry::parse_rfc3339(text)
                    .map_err(|problem| invalid(format!("status.maintenance[{i}].{field}"), problem))
            };
            let (from, to) = (at("from", &m.from)?, at("to", &m.to)?);
            if to <= from {
                return Err(invalid(
                    format!("status.maintenance[{i}].to"),
                    "must be after from",
                ));
            }
            if let Some(bad) = m
                .components
                .iter()
                .find(|c| !COMPONENTS.contains(&c.as_str()))
            {
                return Err(invalid(
                    format!("status.maintenance[{i}].components"),
                    format!("{bad:?} is not one of {COMPONENTS:?}"),
                ));
            }
            maintenance.push((m.name.clone(), from, to, m.components.clone()));
        }
        Ok(StatusSettings {
            auto_publish: self.auto_publish,
            rules,
            maintenance,
        })
    }
}

/// Component states set by people, by component: they win over the
/// alerts' word.
pub(crate) type SetByPeople = BTreeMap<String, (State, Option<String>)>;

/// The components firing alerts move, worst state first wins.
fn components(settings: &StatusSettings, firing: &[String]) -> Vec<Value> {
    let mut worst: BTreeMap<&str, (State, Option<String>)> = BTreeMap::new();
    for rule in &settings.rules {
        if !firing.contains(&rule.alert) {
            continue;
        }
        let entry = worst
            .entry(rule.component.as_str())
            .or_insert((State::Operational, None));
        if rule.state > entry.0 {
            *entry = (rule.state, rule.description.clone());
        }
    }
    worst
        .into_iter()
        .map(|(name, (status, description))| json!({ "name": name, "status": status, "description": description }))
        .collect()
}

/// The incidents' public updates, grouped, newest update first.
async fn incidents(monitor: &Monitor, now_ms: i64) -> Vec<Value> {
    let updates = monitor
        .incidents
        .events_of(EventKind::PublicUpdate, now_ms - SHOWN_MS, now_ms)
        .await
        .unwrap_or_default();
    let mut by_incident: BTreeMap<i64, (String, Vec<Value>)> = BTreeMap::new();
    for update in updates {
        let Some(id) = update.data["incident"].as_i64() else {
            continue;
        };
        let entry = by_incident
            .entry(id)
            .or_insert_with(|| ("Service disruption".to_string(), Vec::new()));
        if let Some(title) = update.data["title"].as_str() {
            entry.0 = title.to_string();
        }
        entry.1.insert(
            0,
            json!({ "status": update.data["status"], "body": update.data["body"], "at_ms": update.at_ms }),
        );
    }
    by_incident
        .into_iter()
        .map(|(id, (name, updates))| json!({ "id": id, "name": name, "updates": updates }))
        .collect()
}

/// What the alerts alone would make the components (what a person
/// confirms when `auto_publish` is off).
pub(crate) fn proposed(monitor: &Monitor, settings: &StatusSettings) -> Vec<Value> {
    let firing: Vec<String> = monitor
        .latest()
        .alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .map(|a| a.rule.clone())
        .collect();
    components(settings, &firing)
}

pub(crate) fn is_component(name: &str) -> bool {
    COMPONENTS.contains(&name)
}

/// What the page should say now.
pub(crate) async fn published(monitor: &Monitor, settings: &StatusSettings, now_ms: i64) -> Value {
    let proposed = proposed(monitor, settings);
    let set = monitor
        .status_set
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let mut shown: Vec<Value> = if settings.auto_publish {
        proposed
            .into_iter()
            .filter(|c| !set.contains_key(c["name"].as_str().unwrap_or_default()))
            .collect()
    } else {
        Vec::new()
    };
    shown.extend(
        set.iter()
            .map(|(name, (status, description))| json!({ "name": name, "status": status, "description": description })),
    );
    json!({
        "components": shown,
        "incidents": incidents(monitor, now_ms).await,
        "maintenance": settings.maintenance.iter().map(|(name, from, to, components)| json!({
            "name": name, "from_ms": from, "to_ms": to, "components": components,
        })).collect::<Vec<_>>(),
    })
}

/// Pushes to every gateway once an interval, until dropped.
pub(crate) async fn push(
    monitor: Arc<Monitor>,
    gateways: Vec<GatewayAdmin>,
    token: Option<String>,
    interval: Duration,
) {
    if gateways.is_empty() {
        return;
    }
    let http = reqwest::Client::builder()
        .timeout(interval.max(Duration::from_millis(500)))
        .build()
        .unwrap_or_default();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = monitor.status_changed.notified() => {}
        }
        let body = published(
            &monitor,
            &monitor.status_settings,
            flashguard_telemetry::unix_ms(),
        )
        .await;
        for gateway in &gateways {
            let mut request = http
                .put(format!(
                    "{}/admin/status",
                    gateway.url.trim_end_matches('/')
                ))
                .json(&body);
            if let Some(token) = &token {
                request = request.bearer_auth(token);
            }
            match request.send().await {
                Ok(answer) if answer.status().is_success() => {}
                Ok(answer) => {
                    tracing::warn!(gateway = %gateway.name, status = %answer.status(), "the status page refused the monitor's word")
                }
                Err(err) => {
                    tracing::debug!(gateway = %gateway.name, %err, "status page not reached")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn firing_alerts_move_components_and_the_worst_wins() {
        let settings = StatusSettings::default();
        let firing = ["ErrorRatioHigh".to_string(), "RequestsShed".to_string()];
        let shown = components(&settings, &firing);
        let names: Vec<&str> = shown.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["checkout", "storefront"]);
        assert!(shown.iter().all(|c| c["status"] == "degraded_performance"));
        assert!(components(&settings, &[]).is_empty());
    }

    #[test]
    fn bad_settings_name_their_field() {
        let file: StatusFile = toml::from_str(
            "[[rule]]\nalert = \"X\"\ncomponent = \"kitchen\"\nstate = \"major_outage\"\n",
        )
        .unwrap();
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("status.rule[0].component"));
        let file: StatusFile = toml::from_str(
            "[[maintenance]]\nname = \"db\"\nfrom = \"2026-12-02T10:00:00Z\"\nto = \"2026-12-02T09:00:00Z\"\ncomponents = [\"checkout\"]\n",
        )
        .unwrap();
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("status.maintenance[0].to"));
        assert!(toml::from_str::<StatusFile>(
            "[[rule]]\nalert = \"X\"\ncomponent = \"sale\"\nstate = \"on_fire\"\n"
        )
        .is_err());
    }
}
