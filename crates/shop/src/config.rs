//! The shop's settings: an optional TOML file, every field with a default,
//! validated into [`Config`] with errors that name the field.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::orders::DeskOptions;
use crate::store::{StoreOptions, Synchronous};

/// The file as written. Every field may be left out.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ConfigFile {
    /// Address to listen on; `--listen` overrides. Default `127.0.0.1:8080`.
    pub listen: Option<String>,
    /// `sqlite://PATH` or `postgres://...`; `--db` overrides.
    /// Default `sqlite://flashguard.db`.
    pub database_url: Option<String>,
    /// Create the demo flash-sale item at start if it does not exist.
    /// Default false (`--demo` sets it).
    pub demo: bool,
    /// The admin API's bearer token: from `FLASHGUARD_ADMIN_TOKEN` (the
    /// binary sets it), never from the file. None or blank: the admin API
    /// is off.
    #[serde(skip)]
    pub admin_token: Option<String>,
    pub limits: LimitsFile,
    pub store: StoreFile,
    pub orders: OrdersFile,
    pub shutdown: ShutdownFile,
}

/// `[limits]`: what one shop takes on before it sheds load.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsFile {
    /// Requests handled at once; more are answered 503 `overloaded`
    /// at once. Default 512.
    pub max_concurrent_requests: usize,
    /// Longest a request may take before it is answered 503, in ms. Default 5000.
    pub request_timeout_ms: u64,
    /// Largest request body accepted, in bytes. Default 16384.
    pub max_body_bytes: usize,
    /// Most units in one order. Default 100.
    pub max_quantity_per_order: i64,
    /// The `Retry-After` sent with 503 answers, in seconds. Default 1.
    pub retry_after_secs: u64,
}

impl Default for LimitsFile {
    fn default() -> Self {
        LimitsFile {
            max_concurrent_requests: 512,
            request_timeout_ms: 5_000,
            max_body_bytes: 16 * 1024,
            max_quantity_per_order: 100,
            retry_after_secs: 1,
        }
    }
}

/// `[store]`: the database connection pool and its health probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreFile {
    /// Most database connections. Default 16.
    pub max_connections: u32,
    /// Longest wait for a free connection, in ms. Default 1000.
    pub acquire_timeout_ms: u64,
    /// How often the store is probed for `/readyz`, in ms. Default 500.
    pub probe_interval_ms: u64,
    /// How long idempotency answers are kept, in seconds. Default 86400 (24 h).
    pub idempotency_ttl_secs: u64,
    /// How often expired idempotency answers are deleted, in seconds. Default 600.
    pub purge_interval_secs: u64,
    /// SQLite `synchronous`: `normal`, `full` or `extra`. Default `full`.
    pub sqlite_synchronous: Synchronous,
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            max_connections: 16,
            acquire_timeout_ms: 1_000,
            probe_interval_ms: 500,
            idempotency_ttl_secs: 24 * 3600,
            purge_interval_secs: 600,
            sqlite_synchronous: Synchronous::Full,
        }
    }
}

/// `[orders]`: the order desk (see `orders::desk`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersFile {
    /// Order lanes, each with at most one open transaction. Default 4.
    pub lanes: usize,
    /// Orders waiting per lane before new ones are shed. Default 1024.
    pub lane_capacity: usize,
    /// Most orders decided in one transaction. Default 256.
    pub max_batch: usize,
}

impl Default for OrdersFile {
    fn default() -> Self {
        let desk = DeskOptions::default();
        OrdersFile {
            lanes: desk.lanes,
            lane_capacity: desk.lane_capacity,
            max_batch: desk.max_batch,
        }
    }
}

/// `[shutdown]`: what SIGTERM does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownFile {
    /// How long to keep serving after `/readyz` turns 503, so load balancers
    /// notice before connections are refused, in ms. Default 0.
    pub drain_delay_ms: u64,
    /// Longest wait for in-flight requests to finish, in ms. Default 30000.
    pub grace_period_ms: u64,
}

impl Default for ShutdownFile {
    fn default() -> Self {
        ShutdownFile {
            drain_delay_ms: 0,
            grace_period_ms: 30_000,
        }
    }
}

/// A setting that is wrong, and which one.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] flashguard_telemetry::ConfigFileError),
    #[error("config field `{field}`: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

/// The validated settings a shop runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub demo: bool,
    /// From `FLASHGUARD_ADMIN_TOKEN`; `None` disables the admin API.
    pub admin_token: Option<String>,
    pub max_concurrent_requests: usize,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub max_quantity_per_order: i64,
    pub retry_after_secs: u64,
    pub probe_interval: Duration,
    pub purge_interval: Duration,
    pub store: StoreOptions,
    pub desk: DeskOptions,
    pub drain_delay: Duration,
    pub grace_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        ConfigFile::default()
            .validate()
            .expect("the built-in defaults are valid")
    }
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<ConfigFile, ConfigError> {
        Ok(flashguard_telemetry::read_toml(path)?)
    }

    pub fn validate(self) -> Result<Config, ConfigError> {
        fn invalid(field: &'static str, problem: &str) -> ConfigError {
            ConfigError::Invalid {
                field,
                problem: problem.to_string(),
            }
        }
        fn at_least<T: PartialOrd + Copy>(
            field: &'static str,
            value: T,
            min: T,
            what: &str,
        ) -> Result<T, ConfigError> {
            if value < min {
                return Err(invalid(field, what));
            }
            Ok(value)
        }
        let l = &self.limits;
        let s = &self.store;
        let o = &self.orders;
        at_least(
            "limits.max_concurrent_requests",
            l.max_concurrent_requests,
            1,
            "must be at least 1",
        )?;
        at_least(
            "limits.request_timeout_ms",
            l.request_timeout_ms,
            1,
            "must be at least 1 ms",
        )?;
        at_least(
            "limits.max_body_bytes",
            l.max_body_bytes,
            256,
            "must be at least 256 bytes",
        )?;
        at_least(
            "limits.max_quantity_per_order",
            l.max_quantity_per_order,
            1,
            "must be at least 1",
        )?;
        at_least(
            "store.max_connections",
            s.max_connections,
            1,
            "must be at least 1",
        )?;
        at_least(
            "store.acquire_timeout_ms",
            s.acquire_timeout_ms,
            1,
            "must be at least 1 ms",
        )?;
        at_least(
            "store.probe_interval_ms",
            s.probe_interval_ms,
            10,
            "must be at least 10 ms",
        )?;
        at_least(
            "store.idempotency_ttl_secs",
            s.idempotency_ttl_secs,
            1,
            "must be at least 1 s",
        )?;
        at_least(
            "store.purge_interval_secs",
            s.purge_interval_secs,
            1,
            "must be at least 1 s",
        )?;
        at_least("orders.lanes", o.lanes, 1, "must be at least 1")?;
        at_least(
            "orders.lane_capacity",
            o.lane_capacity,
            1,
            "must be at least 1",
        )?;
        at_least("orders.max_batch", o.max_batch, 1, "must be at least 1")?;
        if o.max_batch > 1024 {
            return Err(invalid(
                "orders.max_batch",
                "must be at most 1024 (statement parameter limits)",
            ));
        }
        let database_url = self
            .database_url
            .clone()
            .unwrap_or_else(|| "sqlite://flashguard.db".to_string());
        if !(database_url.starts_with("sqlite://")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite:// or postgres://",
            ));
        }
        Ok(Config {
            listen: self
                .listen
                .clone()
                .unwrap_or_else(|| "127.0.0.1:8080".to_string()),
            database_url,
            demo: self.demo,
            admin_token: self
                .admin_token
                .clone()
                .filter(|token| !token.trim().is_empty()),
            max_concurrent_requests: l.max_concurrent_requests,
            request_timeout: Duration::from_millis(l.request_timeout_ms),
            max_body_bytes: l.max_body_bytes,
            max_quantity_per_order: l.max_quantity_per_order,
            retry_after_secs: l.retry_after_secs,
            probe_interval: Duration::from_millis(s.probe_interval_ms),
            purge_interval: Duration::from_secs(s.purge_interval_secs),
            store: StoreOptions {
                max_connections: s.max_connections,
                acquire_timeout: Duration::from_millis(s.acquire_timeout_ms),
                idempotency_ttl: Duration::from_secs(s.idempotency_ttl_secs),
                sqlite_synchronous: s.sqlite_synchronous,
            },
            desk: DeskOptions {
                lanes: o.lanes,
                lane_capacity: o.lane_capacity,
                max_batch: o.max_batch,
                ..DeskOptions::default()
            },
            drain_delay: Duration::from_millis(self.shutdown.drain_delay_ms),
            grace_period: Duration::from_millis(self.shutdown.grace_period_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_gives_the_defaults() {
        let config = toml::from_str::<ConfigFile>("")
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(config.database_url, "sqlite://flashguard.db");
        assert_eq!(config.store.idempotency_ttl, Duration::from_secs(86_400));
        assert_eq!(config.max_concurrent_requests, 512);
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let err = toml::from_str::<ConfigFile>("[limits]\nmax_bodybytes = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_bodybytes"), "{err}");
    }

    #[test]
    fn bad_values_name_their_field() {
        let file: ConfigFile = toml::from_str("[orders]\nlanes = 0\n").expect("parses");
        let err = file.validate().unwrap_err();
        assert!(err.to_string().contains("orders.lanes"), "{err}");
        // A choice that is not one of its values is refused as it is read.
        let err = flashguard_telemetry::parse_toml::<ConfigFile>(
            "[store]\nsqlite_synchronous = \"off\"\n",
        )
        .unwrap_err();
        assert!(err.starts_with("store.sqlite_synchronous:"), "{err}");
        let file: ConfigFile = toml::from_str("database_url = \"mysql://x\"\n").expect("parses");
        assert!(file
            .validate()
            .unwrap_err()
            .to_string()
            .contains("database_url"));
    }
}
