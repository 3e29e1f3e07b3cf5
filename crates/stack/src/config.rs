//! The stack's settings: how many shops and backups, which database, where
//! the gateway and the control API listen. Every field has a default, so
//! `flashguard up` needs no file.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StackFile {
    /// Primary shops. Default 3.
    pub shops: usize,
    /// Backup shops, used by the gateway only when no primary can serve. Default 1.
    pub backups: usize,
    /// Database every shop shares. Default `sqlite://flashguard-stack.db`.
    pub database_url: String,
    /// Seed the demo flash sale. Default true.
    pub demo: bool,
    /// Put the gateway in front of the shops. Default true; without it
    /// (the original outage's architecture) customers talk to shop-1.
    pub gateway: bool,
    /// A config file passed to every shop (`--config`), e.g. to change its
    /// limits. Default none.
    pub shop_config: Option<String>,
    /// A config file passed to the monitor (`--config`), e.g. its
    /// `[oncall]`: who is paged. The stack still gives it its targets, its
    /// gateway, its incident file, its address and the admin token.
    /// Default none.
    pub monitor_config: Option<String>,
    /// Where customers connect (the gateway). Default `127.0.0.1:8000`.
    pub listen: String,
    /// The gateway's admin API. Default `127.0.0.1:8001`.
    pub gateway_admin_listen: String,
    /// The stack's control API (parts, chaos). Default `127.0.0.1:8002`.
    pub control_listen: String,
    /// The monitor's API. Default `127.0.0.1:8003`.
    pub monitor_listen: String,
    /// Admin token for shops and gateway; a random one when absent (or from
    /// `FLASHGUARD_ADMIN_TOKEN`).
    pub admin_token: Option<String>,
    /// First restart delay after a part dies, in ms; doubles per crash in a
    /// row. Default 200.
    pub restart_backoff_ms: u64,
    /// Longest restart delay, in ms. Default 5000.
    pub max_restart_backoff_ms: u64,
    /// On stop, how long each part gets to drain before SIGKILL, in ms. Default 10000.
    pub stop_grace_ms: u64,
    /// Addresses whose X-Forwarded-For the gateway believes. Default
    /// `["127.0.0.1"]`: on one machine the drill stands in for the CDN and
    /// names synthetic clients. Set `[]` when real clients connect directly.
    pub trusted_proxies: Vec<String>,
    /// The monitor's incident file. Default `flashguard-incidents.sqlite`.
    pub incidents_db: String,
    /// Every part's log, a file each (and `up`'s own), bounded in size.
    /// Default `flashguard-logs`.
    pub logs_dir: String,
    /// Each shop's CPU, in cores (0.25: a quarter of one), enforced by a
    /// cgroup quota, so a shop is a measured unit of capacity, as a pod's
    /// CPU limit makes it. Default none: unlimited.
    pub shop_cpu: Option<f64>,
    /// Shops added and removed with the load (`[autoscale]`). Default
    /// none: `shops` shops, always.
    pub autoscale: Option<AutoscaleFile>,
    /// The gateway's waiting room (`[waiting_room]` as in gateway.toml).
    /// Default none: no room.
    pub waiting_room: Option<flashguard_gateway::room::RoomFile>,
    /// HTTPS at the gateway (`[tls]` as in gateway.toml): customers
    /// connect to `listen` over TLS, HTTP/2 or HTTP/1.1. The certificate
    /// files are read by the gateway, reloaded when they change. The
    /// admin listener stays plain (`[tls.admin]` is refused): the stack
    /// and its monitor reach it on loopback. Default none: plain HTTP.
    pub tls: Option<flashguard_gateway::edge::config::TlsFile>,
}

impl Default for StackFile {
    fn default() -> Self {
        StackFile {
            shops: 3,
            backups: 1,
            database_url: "sqlite://flashguard-stack.db".into(),
            demo: true,
            gateway: true,
            shop_config: None,
            monitor_config: None,
            listen: "127.0.0.1:8000".into(),
            gateway_admin_listen: "127.0.0.1:8001".into(),
            control_listen: "127.0.0.1:8002".into(),
            monitor_listen: "127.0.0.1:8003".into(),
            admin_token: None,
            restart_backoff_ms: 200,
            max_restart_backoff_ms: 5_000,
            stop_grace_ms: 10_000,
            trusted_proxies: vec!["127.0.0.1".into()],
            incidents_db: "flashguard-incidents.sqlite".into(),
            logs_dir: "flashguard-logs".into(),
            shop_cpu: None,
            autoscale: None,
            waiting_room: None,
            tls: None,
        }
    }
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub shops: usize,
    pub backups: usize,
    pub database_url: String,
    pub demo: bool,
    pub gateway: bool,
    pub shop_config: Option<String>,
    pub monitor_config: Option<String>,
    pub listen: String,
    pub gateway_admin_listen: String,
    pub control_listen: String,
    pub monitor_listen: String,
    pub admin_token: String,
    pub restart_backoff: Duration,
    pub max_restart_backoff: Duration,
    pub stop_grace: Duration,
    pub trusted_proxies: Vec<String>,
    pub incidents_db: String,
    pub logs_dir: String,
    pub shop_cpu: Option<f64>,
    /// The autoscaler's rules and its step.
    pub autoscale: Option<(crate::AutoscaleRules, Duration)>,
    pub waiting_room: Option<flashguard_gateway::room::RoomFile>,
    /// `[tls]` as written, for the gateway's config, and as validated.
    pub tls: Option<(
        flashguard_gateway::edge::config::TlsFile,
        flashguard_gateway::edge::config::TlsRules,
    )>,
}

#[derive(Debug, thiserror::Error)]
pub enum StackConfigError {
    #[error(transparent)]
    File(#[from] flashguard_telemetry::ConfigFileError),
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
    /// A gateway setting given to the stack (`[waiting_room]`, `[tls]`).
    #[error(transparent)]
    Gateway(#[from] flashguard_gateway::ConfigError),
}

impl StackFile {
    /// This stack alone on loopback: every listener on a free port, its
    /// own database and incident file in `dir`, no demo sale. What
    /// `rehearse` and `plan` start.
    pub(crate) fn private(self, dir: &Path, database_url: String) -> StackFile {
        StackFile {
            database_url,
            demo: false,
            listen: "127.0.0.1:0".into(),
            gateway_admin_listen: "127.0.0.1:0".into(),
            control_listen: "127.0.0.1:0".into(),
            monitor_listen: "127.0.0.1:0".into(),
            incidents_db: dir.join("incidents.sqlite").display().to_string(),
            ..self
        }
    }

    pub fn load(path: &Path) -> Result<StackFile, StackConfigError> {
        Ok(flashguard_telemetry::read_toml(path)?)
    }

    pub fn validate(self) -> Result<StackConfig, StackConfigError> {
        let refuse = |field, problem| Err(StackConfigError::Invalid { field, problem });
        if !(1..=32).contains(&self.shops) {
            return refuse("shops", "must be 1 to 32");
        }
        if self.backups > 8 {
            return refuse("backups", "must be at most 8");
        }
        if !(self.database_url.starts_with("sqlite://")
            || self.database_url.starts_with("postgres://")
            || self.database_url.starts_with("postgresql://"))
        {
            return refuse("database_url", "must be sqlite://PATH or postgres://...");
        }
        if self.restart_backoff_ms == 0 || self.max_restart_backoff_ms < self.restart_backoff_ms {
            return refuse(
                "max_restart_backoff_ms",
                "must be at least restart_backoff_ms, which must be above 0",
            );
        }
        if self
            .trusted_proxies
            .iter()
            .any(|p| p.parse::<std::net::IpAddr>().is_err())
        {
            return refuse("trusted_proxies", "must be IP addresses");
        }
        if self.incidents_db.trim().is_empty() {
            return refuse("incidents_db", "must name a file");
        }
        if self.logs_dir.trim().is_empty() {
            return refuse("logs_dir", "must name a folder");
        }
        if self
            .shop_cpu
            .is_some_and(|cores| !(0.01..=64.0).contains(&cores))
        {
            return refuse("shop_cpu", "must be 0.01 to 64 (cores)");
        }
        if let Some(room) = &self.waiting_room {
            // Refused here with the field named, not later by the gateway.
            room.validate(None)?;
        }
        let tls = match self.tls {
            Some(tls) if tls.admin.is_some() => {
                return refuse(
                    "tls.admin",
                    "is not for a stack: the stack and its monitor reach the gateway's admin API \
                     in plain HTTP on loopback (run `flashguard gateway` alone for admin HTTPS)",
                );
            }
            Some(tls) => {
                let rules = tls.validate()?;
                Some((tls, rules))
            }
            None => None,
        };
        let token = self
            .admin_token
            .filter(|t| !t.trim().is_empty())
            .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
        let autoscale = match &self.autoscale {
            None => None,
            Some(file) => Some(file.validate(self.shops)?),
        };
        Ok(StackConfig {
            shops: self.shops,
            backups: self.backups,
            database_url: self.database_url,
            demo: self.demo,
            gateway: self.gateway,
            shop_config: self.shop_config,
            monitor_config: self.monitor_config,
            listen: self.listen,
            gateway_admin_listen: self.gateway_admin_listen,
            control_listen: self.control_listen,
            monitor_listen: self.monitor_listen,
            admin_token: token,
            restart_backoff: Duration::from_millis(self.restart_backoff_ms),
            max_restart_backoff: Duration::from_millis(self.max_restart_backoff_ms),
            stop_grace: Duration::from_millis(self.stop_grace_ms),
            trusted_proxies: self.trusted_proxies,
            incidents_db: self.incidents_db,
            logs_dir: self.logs_dir,
            shop_cpu: self.shop_cpu,
            autoscale,
            waiting_room: self.waiting_room,
            tls,
        })
    }
}

/// `[autoscale]`: between `min_shops` and `max_shops` primaries, from the
/// gateway's figures every `step_ms`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AutoscaleFile {
    /// Default: `shops`.
    pub min_shops: Option<usize>,
    /// Default: twice `shops`, at most 32.
    pub max_shops: Option<usize>,
    /// Default 0.7.
    pub target_utilisation: f64,
    /// Default 500.
    pub p99_target_ms: f64,
    /// Default 300 (5 min).
    pub down_window_s: u64,
    /// Default 60.
    pub lead_s: u64,
    /// Shops during a sale window, at least. Default `max_shops`.
    pub planned_shops: Option<usize>,
    /// Default 1000.
    pub step_ms: u64,
}

impl Default for AutoscaleFile {
    fn default() -> Self {
        AutoscaleFile {
            min_shops: None,
            max_shops: None,
            target_utilisation: 0.7,
            p99_target_ms: 500.0,
            down_window_s: 300,
            lead_s: 60,
            planned_shops: None,
            step_ms: 1_000,
        }
    }
}

impl AutoscaleFile {
    fn validate(
        &self,
        shops: usize,
    ) -> Result<(crate::AutoscaleRules, Duration), StackConfigError> {
        let refuse = |field, problem| Err(StackConfigError::Invalid { field, problem });
        let min = self.min_shops.unwrap_or(shops);
        let max = self.max_shops.unwrap_or((shops * 2).min(32));
        if !(1..=32).contains(&min) {
            return refuse("autoscale.min_shops", "must be 1 to 32");
        }
        if !(min..=32).contains(&max) {
            return refuse("autoscale.max_shops", "must be min_shops to 32");
        }
        if !(shops >= min && shops <= max) {
            return refuse("shops", "must be within autoscale.min_shops and max_shops");
        }
        if !(self.target_utilisation > 0.0 && self.target_utilisation <= 1.0) {
            return refuse(
                "autoscale.target_utilisation",
                "must be above 0 and at most 1",
            );
        }
        if !(100..=60_000).contains(&self.step_ms) {
            return refuse("autoscale.step_ms", "must be 100 to 60000");
        }
        if self
            .planned_shops
            .is_some_and(|planned| !(min..=max).contains(&planned))
        {
            return refuse(
                "autoscale.planned_shops",
                "must be within min_shops and max_shops",
            );
        }
        Ok((
            crate::AutoscaleRules {
                min_shops: min as u32,
                max_shops: max as u32,
                target_utilisation: self.target_utilisation,
                p99_target_ms: self.p99_target_ms,
                down_window: Duration::from_secs(self.down_window_s),
                lead: Duration::from_secs(self.lead_s),
                planned: self.planned_shops.map(|p| p as u32),
            },
            Duration::from_millis(self.step_ms),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_name_their_field() {
        let file = StackFile {
            shops: 0,
            ..StackFile::default()
        };
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("shops:"));
        let file = StackFile {
            database_url: "mysql://x".into(),
            ..StackFile::default()
        };
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("database_url:"));
        let err = toml::from_str::<StackFile>("shopz = 2").unwrap_err();
        assert!(err.to_string().contains("shopz"), "{err}");
    }
}
