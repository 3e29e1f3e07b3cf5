//! flashguard's monitor: scrapes every target's `/metrics` and the host
//! every second into a bounded in-memory history, answers queries over it,
//! evaluates alert rules and the surge verdict, keeps incidents and their
//! timelines in SQLite, drafts postmortems, and serves a live dashboard.
//!
//! `monitor` holds the running state and the tick that fills it (scrape →
//! evaluate → notify → record → publish → prune); `scrape`, `rules`,
//! `surge`, `notify`, `incidents` and `dashboard` are the steps, each
//! unaware of the others; `api` serves what the tick publishes.

mod api;
mod config;
mod dashboard;
mod defaults;
mod export;
mod exposition;
mod gateway_events;
mod host;
pub mod incidents;
mod monitor;
mod notify;
pub mod oncall;
pub mod rules;
mod scrape;
pub mod status_page;
mod store;
pub mod surge;

use std::future::Future;
use std::sync::Arc;

use tokio::net::TcpListener;

pub use config::{Config, GatewayAdmin, MonitorConfigError, MonitorFile, Target};
pub use defaults::DEFAULT_RULES;
pub use export::prometheus_rules;
use monitor::{Monitor, Pipeline};
pub use notify::{Kind as ReceiverKind, Receiver};
pub use store::{SeriesKey, Store};

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
        flashguard_telemetry::unix_ms(),
    )
    .await?;
    let store = Store::new(config.retention.as_millis() as i64, config.max_series);
    let incidents = Arc::new(incidents);
    let pages = oncall::channels::PageCounts::default();
    let oncall = config.oncall.clone().map(|settings| {
        oncall::OnCallHandle::start(
            settings,
            Arc::clone(&incidents),
            pages.clone(),
            oncall::Clock::new(),
        )
    });
    let mut monitor = Monitor::new(
        store,
        incidents,
        config.admin_token.clone(),
        config.capacity_plan,
        oncall,
    );
    monitor.metrics.pages = pages;
    monitor.status_settings = config.status.clone();
    let monitor = Arc::new(monitor);
    let pipeline = Pipeline::new(Arc::clone(&monitor), &config);
    let ticking = tokio::spawn(pipeline.run(config.interval));
    let follower = tokio::spawn(gateway_events::follow(
        Arc::clone(&monitor),
        config.gateway_admins.clone(),
        config.admin_token.clone(),
        config.interval,
    ));
    let status = tokio::spawn(status_page::push(
        Arc::clone(&monitor),
        config.gateway_admins.clone(),
        config.admin_token.clone(),
        config.interval,
    ));
    let stopping = Arc::clone(&monitor);
    axum::serve(
        listener,
        api::router(monitor).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        stopping.stop();
    })
    .await
    .map_err(MonitorError::Serve)?;
    ticking.abort();
    follower.abort();
    status.abort();
    Ok(())
}
