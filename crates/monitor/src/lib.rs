//! flashguard's monitor: scrapes every target's `/metrics` and the host
//! every second into a bounded in-memory history, and answers instant and
//! range queries over it. (Alert rules and notifications build on this.)

mod api;
mod config;
mod defaults;
mod export;
mod exposition;
mod host;
mod notify;
pub mod rules;
mod scrape;
mod store;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

pub use config::{MonitorConfigError, MonitorFile};
pub use defaults::DEFAULT_RULES;
pub use export::prometheus_rules;
pub use notify::{Kind as ReceiverKind, Receiver};
pub use scrape::Monitor;
pub use store::{SeriesKey, Store};

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
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

/// Scrapes and serves until `shutdown` completes.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), MonitorError> {
    let monitor = Arc::new(Monitor::new(&config));
    let scraper = tokio::spawn(Arc::clone(&monitor).scrape_forever(config.interval));
    axum::serve(listener, api::router(monitor))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(MonitorError::Serve)?;
    scraper.abort();
    Ok(())
}
