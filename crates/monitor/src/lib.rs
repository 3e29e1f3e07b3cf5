//! flashguard's monitor: scrapes every target's `/metrics` and the host
//! every second into a bounded in-memory history, answers queries over it,
//! evaluates alert rules and the surge verdict, keeps incidents and their
//! timelines in SQLite, drafts postmortems, and serves a live dashboard.

mod api;
mod config;
mod dashboard;
mod defaults;
mod export;
mod exposition;
mod gateway_events;
mod host;
pub mod incidents;
mod notify;
pub mod rules;
mod scrape;
mod store;
pub mod surge;

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::{MonitorConfigError, MonitorFile};
pub use defaults::DEFAULT_RULES;
pub use export::prometheus_rules;
pub use notify::{Kind as ReceiverKind, Receiver};
pub use scrape::Monitor;
pub use store::{SeriesKey, Store};

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
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("serving: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Incidents(#[from] incidents::IncidentDbError),
}

/// Scrapes and serves until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MonitorError> {
    let incidents = incidents::Incidents::open(
        &config.incidents_db,
        config.incident_quiet,
        config.incident_lookback,
        scrape::now_ms(),
    )
    .await?;
    let monitor = Arc::new(Monitor::new(&config, Arc::new(incidents)));
    let scraper = tokio::spawn(Arc::clone(&monitor).scrape_forever(config.interval));
    let follower = tokio::spawn(gateway_events::follow(
        Arc::clone(&monitor),
        config.gateway_admins.clone(),
        config.admin_token.clone(),
        config.interval,
    ));
    let stopping = Arc::clone(&monitor);
    axum::serve(listener, api::router(monitor))
        .with_graceful_shutdown(async move {
            shutdown.await;
            stopping.stop();
        })
        .await
        .map_err(MonitorError::Serve)?;
    scraper.abort();
    follower.abort();
    Ok(())
}
