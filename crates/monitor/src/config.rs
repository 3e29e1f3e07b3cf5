//! The monitor's settings: the config file (`--config monitor.toml`) as
//! written, where every field has a default and the command line adds
//! targets and receivers, and the validated [`Config`] it becomes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::notify::{Kind, Receiver};
use crate::rules::{self, RuleFile};
use crate::surge;

/// A gateway whose admin event log (backend state changes) goes on the
/// incident timeline.
#[derive(Debug, Clone)]
pub struct GatewayAdmin {
    pub name: String,
    pub url: String,
}

/// A target to scrape.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    /// The base URL; `/metrics` is appended.
    pub url: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub targets: Vec<Target>,
    /// Default 1 s.
    pub interval: Duration,
    /// History kept; default one hour.
    pub retention: Duration,
    /// Series kept at most; default 50,000. A point costs about 19 bytes
    /// (measured in BENCHMARKS.md), so a series kept an hour at one point a
    /// second is about 66 KiB.
    pub max_series: usize,
    /// Alert rules evaluated after every collection.
    pub rules: Vec<rules::Rule>,
    /// Where alerts go besides the log.
    pub receivers: Vec<Receiver>,
    /// Firing alerts are sent to Alertmanagers again this often. Default 10 s.
    pub resend_interval: Duration,
    /// The incident file. Default `flashguard-incidents.sqlite`.
    pub incidents_db: PathBuf,
    /// An incident resolves once no alert has fired for this long. Default 30 s.
    pub incident_quiet: Duration,
    /// An incident's timeline starts this long before its first alert, so
    /// the crash that caused it is on it. Default 60 s.
    pub incident_lookback: Duration,
    pub surge: surge::SurgeSettings,
    /// Gateways whose admin event log to follow (with `admin_token`).
    pub gateway_admins: Vec<GatewayAdmin>,
    /// Required of `POST /api/events` and notes when set; sent to gateways'
    /// admin APIs.
    pub admin_token: Option<String>,
    /// One shop's measured capacity (`capacity_plan`).
    pub capacity_plan: Option<CapacityPlan>,
    /// Who is paged when an incident opens (`[oncall]`); None when no
    /// policy (and no heartbeat) is configured.
    pub oncall: Option<crate::oncall::config::OnCall>,
    /// What the public status page says, pushed to the gateways.
    pub status: crate::status_page::StatusSettings,
}

/// What the postmortem needs of a `flashguard plan`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Deserialize)]
pub struct CapacityPlan {
    pub shop_capacity_requests_per_s: f64,
    pub shop_cpu: f64,
}

fn load_plan(path: &str) -> Result<CapacityPlan, MonitorConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| invalid("capacity_plan", format!("{path}: {err}")))?;
    let plan: CapacityPlan = serde_json::from_str(&text)
        .map_err(|err| invalid("capacity_plan", format!("{path} is not a plan.json: {err}")))?;
    let positive =
        plan.shop_capacity_requests_per_s.is_finite() && plan.shop_capacity_requests_per_s > 0.0;
    if !positive {
        return Err(invalid(
            "capacity_plan",
            format!("{path}: shop_capacity_requests_per_s must be above 0"),
        ));
    }
    Ok(plan)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            targets: Vec::new(),
            interval: Duration::from_secs(1),
            retention: Duration::from_secs(3600),
            max_series: 50_000,
            rules: Vec::new(),
            receivers: Vec::new(),
            resend_interval: Duration::from_secs(10),
            incidents_db: PathBuf::from("flashguard-incidents.sqlite"),
            incident_quiet: Duration::from_secs(30),
            incident_lookback: Duration::from_secs(60),
            surge: surge::SurgeSettings::default(),
            gateway_admins: Vec::new(),
            admin_token: None,
            capacity_plan: None,
            oncall: None,
            status: crate::status_page::StatusSettings::default(),
        }
    }
}

/// The monitor's config file, as written; every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorFile {
    /// Default `127.0.0.1:8003`; `--listen` overrides.
    pub listen: String,
    /// Collection interval in ms. Default 1000.
    pub interval_ms: u64,
    /// History kept, in s. Default 3600.
    pub retention_s: u64,
    /// Series kept at most. Default 50000.
    pub max_series: usize,
    /// A rule file; the default rules when absent.
    pub rules: Option<String>,
    pub webhooks: Vec<String>,
    pub alertmanagers: Vec<String>,
    /// Firing alerts re-sent to Alertmanagers this often, in ms. Default 10000.
    pub resend_interval_ms: u64,
    #[serde(rename = "target")]
    pub targets: Vec<TargetFile>,
    /// The incident file (SQLite). Default `flashguard-incidents.sqlite`.
    pub incidents_db: String,
    /// A `flashguard plan` (its plan.json): the postmortem sizes the shop
    /// pool from the measured capacity of one shop instead of a ratio.
    /// Default none.
    pub capacity_plan: Option<String>,
    /// An incident resolves once no alert has fired for this long, in s. Default 30.
    pub incident_quiet_s: u64,
    /// An incident's timeline starts this long before its first alert, in s. Default 60.
    pub incident_lookback_s: u64,
    /// Below this many requests/s nothing is a surge. Default 100.
    pub surge_min_rate: f64,
    /// A surge is the rate at this many times its usual. Default 3.
    pub surge_factor: f64,
    /// Gateways whose admin event log goes on incident timelines.
    #[serde(rename = "gateway")]
    pub gateways: Vec<TargetFile>,
    /// Required of writes to the incident API when set; sent to gateways.
    pub admin_token: Option<String>,
    /// People, schedules, escalation policies and routes (see README,
    /// *On call*). Default: nobody is paged.
    pub oncall: crate::oncall::config::OnCallFile,
    /// The public status page: which alerts move which component, whether
    /// they do so without a person, scheduled maintenance (README, *Status
    /// page*).
    pub status: crate::status_page::StatusFile,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    pub name: String,
    pub url: String,
}

impl Default for MonitorFile {
    fn default() -> Self {
        MonitorFile {
            listen: "127.0.0.1:8003".into(),
            interval_ms: 1000,
            retention_s: 3600,
            max_series: 50_000,
            rules: None,
            webhooks: Vec::new(),
            alertmanagers: Vec::new(),
            resend_interval_ms: 10_000,
            targets: Vec::new(),
            incidents_db: "flashguard-incidents.sqlite".into(),
            capacity_plan: None,
            incident_quiet_s: 30,
            incident_lookback_s: 60,
            surge_min_rate: 100.0,
            surge_factor: 3.0,
            gateways: Vec::new(),
            admin_token: None,
            oncall: crate::oncall::config::OnCallFile::default(),
            status: crate::status_page::StatusFile::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorConfigError {
    #[error(transparent)]
    File(#[from] flashguard_telemetry::ConfigFileError),
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    #[error("{path}: {source}")]
    Rules {
        path: String,
        source: crate::rules::RuleError,
    },
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> MonitorConfigError {
    MonitorConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn named_url(flag: &str, entry: &str) -> Result<TargetFile, MonitorConfigError> {
    let (name, url) = entry
        .split_once('=')
        .ok_or_else(|| invalid(flag, format!("{entry}: expected NAME=URL")))?;
    Ok(TargetFile {
        name: name.to_string(),
        url: url.to_string(),
    })
}

impl MonitorFile {
    pub fn load(path: &Path) -> Result<MonitorFile, MonitorConfigError> {
        Ok(flashguard_telemetry::read_toml(path)?)
    }

    /// Adds a `NAME=URL` target from the command line.
    pub fn add_target(&mut self, entry: &str) -> Result<(), MonitorConfigError> {
        self.targets.push(named_url("--target", entry)?);
        Ok(())
    }

    /// Adds a `NAME=ADMIN_URL` gateway whose events to follow.
    pub fn add_gateway(&mut self, entry: &str) -> Result<(), MonitorConfigError> {
        self.gateways.push(named_url("--gateway", entry)?);
        Ok(())
    }

    pub fn validate(self) -> Result<Config, MonitorConfigError> {
        if self.interval_ms < 100 {
            return Err(invalid("interval_ms", "must be at least 100"));
        }
        if self.retention_s < 10 {
            return Err(invalid("retention_s", "must be at least 10"));
        }
        if self.max_series == 0 {
            return Err(invalid("max_series", "must be at least 1"));
        }
        if self.incidents_db.trim().is_empty() {
            return Err(invalid("incidents_db", "must name a file"));
        }
        if !(1..=86_400).contains(&self.incident_quiet_s) {
            return Err(invalid("incident_quiet_s", "must be 1 to 86400"));
        }
        if self.incident_lookback_s > 3600 {
            return Err(invalid("incident_lookback_s", "must be at most 3600"));
        }
        if !(self.surge_min_rate >= 0.0 && self.surge_min_rate.is_finite()) {
            return Err(invalid("surge_min_rate", "must be a rate of 0 or more"));
        }
        if !(self.surge_factor > 1.0 && self.surge_factor.is_finite()) {
            return Err(invalid("surge_factor", "must be above 1"));
        }
        for (i, g) in self.gateways.iter().enumerate() {
            if !(g.url.starts_with("http://") || g.url.starts_with("https://")) {
                return Err(invalid(
                    format!("gateway[{i}].url"),
                    "must start with http:// or https://",
                ));
            }
        }
        let mut targets: Vec<Target> = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            if t.name.is_empty() || targets.iter().any(|seen| seen.name == t.name) {
                return Err(invalid(
                    format!("target[{i}].name"),
                    "must be set and unique",
                ));
            }
            if !(t.url.starts_with("http://") || t.url.starts_with("https://")) {
                return Err(invalid(
                    format!("target[{i}].url"),
                    "must start with http:// or https://",
                ));
            }
            targets.push(Target {
                name: t.name.clone(),
                url: t.url.clone(),
            });
        }
        let rules = match &self.rules {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| {
                    MonitorConfigError::File(flashguard_telemetry::ConfigFileError::Read {
                        path: path.clone(),
                        source,
                    })
                })?;
                RuleFile::parse(&text)
                    .map_err(|source| MonitorConfigError::Rules {
                        path: path.clone(),
                        source,
                    })?
                    .rules
            }
            None => {
                RuleFile::parse(crate::DEFAULT_RULES)
                    .map_err(|source| MonitorConfigError::Rules {
                        path: "default rules".into(),
                        source,
                    })?
                    .rules
            }
        };
        let receivers = self
            .webhooks
            .iter()
            .map(|url| (Kind::Webhook, url))
            .chain(
                self.alertmanagers
                    .iter()
                    .map(|url| (Kind::Alertmanager, url)),
            )
            .map(|(kind, url)| Receiver {
                kind,
                url: url.clone(),
            })
            .collect();
        Ok(Config {
            targets,
            interval: Duration::from_millis(self.interval_ms),
            retention: Duration::from_secs(self.retention_s),
            max_series: self.max_series,
            rules,
            receivers,
            resend_interval: Duration::from_millis(self.resend_interval_ms.max(1000)),
            incidents_db: self.incidents_db.into(),
            incident_quiet: Duration::from_secs(self.incident_quiet_s),
            incident_lookback: Duration::from_secs(self.incident_lookback_s),
            surge: surge::SurgeSettings {
                min_rate: self.surge_min_rate,
                factor: self.surge_factor,
            },
            gateway_admins: self
                .gateways
                .iter()
                .map(|g| GatewayAdmin {
                    name: g.name.clone(),
                    url: g.url.clone(),
                })
                .collect(),
            admin_token: self.admin_token.filter(|t| !t.trim().is_empty()),
            capacity_plan: match &self.capacity_plan {
                Some(path) => Some(load_plan(path)?),
                None => None,
            },
            oncall: if self.oncall.is_empty() {
                None
            } else {
                Some(self.oncall.validate()?)
            },
            status: self.status.validate()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_field() {
        let file: MonitorFile =
            toml::from_str("[[target]]\nname = \"a\"\nurl = \"ftp://x\"\n").unwrap();
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("target[0].url:"));
        let file = MonitorFile {
            interval_ms: 5,
            ..MonitorFile::default()
        };
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("interval_ms:"));
        assert!(toml::from_str::<MonitorFile>("intervall_ms = 5")
            .unwrap_err()
            .to_string()
            .contains("intervall_ms"));
        let mut file = MonitorFile::default();
        assert!(file.add_target("nourl").is_err());
        file.add_target("shop=http://127.0.0.1:1").unwrap();
        assert_eq!(file.validate().unwrap().targets.len(), 1);
    }
}
