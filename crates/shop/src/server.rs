//! Running a shop: start the order desk and the background probes, serve
//! until told to stop, then drain.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::config::Config;
use crate::health::Health;
use crate::http::metrics::ShopMetrics;
use crate::http::{router, AppState};
use crate::orders::{InFlight, OrderDesk};
use crate::store::{self, Store, StoreError};

/// Why a shop could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] store::OpenError),
    #[error("serving HTTP failed: {0}")]
    Serve(#[source] std::io::Error),
}

/// Builds the state a shop serves from: opens the store (lazily: no
/// connection is made yet) and starts the order desk.
pub fn build_state(config: Config) -> Result<AppState, Error> {
    let store = store::open(&config.database_url, &config.store)?;
    let metrics = Arc::new(ShopMetrics::new());
    let observer = Arc::clone(&metrics);
    let desk = OrderDesk::start(
        Arc::clone(&store),
        config.desk.clone(),
        Arc::new(move |size| observer.batch(size)),
    );
    Ok(AppState {
        store,
        desk,
        inflight: InFlight::default(),
        metrics,
        health: Arc::new(Health::default()),
        config: Arc::new(config),
    })
}

/// Serves the shop on `listener` until `shutdown` completes; then `/readyz`
/// turns 503 at once, in-flight requests finish (up to the grace period),
/// and the function returns.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let state = build_state(config)?;
    let config = Arc::clone(&state.config);
    tracing::info!(
        store = state.store.engine().as_str(),
        url = %store::redact(&config.database_url),
        admin = config.admin_token.is_some(),
        "shop starting"
    );
    let background = [
        tokio::spawn(probe_store(
            Arc::clone(&state.store),
            Arc::clone(&state.health),
            Arc::clone(&config),
        )),
        tokio::spawn(purge_expired_keys(
            Arc::clone(&state.store),
            config.purge_interval,
        )),
    ];
    let health = Arc::clone(&state.health);
    let store = Arc::clone(&state.store);
    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let drain_delay = config.drain_delay;
    let stop_accepting = async move {
        shutdown.await;
        health.start_draining();
        tracing::info!(
            state = "draining",
            "shutdown requested; not ready, finishing in-flight requests"
        );
        tokio::time::sleep(drain_delay).await;
        let _ = drained_tx.send(());
    };
    let app = router(state);
    let serve = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(stop_accepting);
    let grace = config.grace_period;
    let outcome = tokio::select! {
        served = serve => served.map_err(Error::Serve),
        () = grace_expired(drained_rx, grace) => {
            tracing::warn!(grace_ms = grace.as_millis() as u64, "in-flight requests outlived the grace period");
            Ok(())
        }
    };
    for task in background {
        task.abort();
    }
    store.close().await;
    tracing::info!("shop stopped");
    outcome
}

/// Completes `grace` after draining began; never if it never begins.
async fn grace_expired(drained: tokio::sync::oneshot::Receiver<()>, grace: Duration) {
    if drained.await.is_err() {
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(grace).await;
}

/// Keeps `/readyz` true to the store: migrate (retrying until the database
/// answers), seed the demo if asked, then ping at every interval.
async fn probe_store(store: Arc<dyn Store>, health: Arc<Health>, config: Arc<Config>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match store.migrate().await {
            Ok(()) => break,
            Err(err) => {
                tracing::warn!(error = %err, retry_ms = backoff.as_millis() as u64, "store not ready for migrations");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.probe_interval.max(Duration::from_millis(100)));
            }
        }
    }
    if config.demo {
        loop {
            match crate::demo::seed(store.as_ref()).await {
                Ok(added) => {
                    tracing::info!(added, "demo flash sale seeded");
                    break;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "demo seed failed; retrying");
                    tokio::time::sleep(config.probe_interval).await;
                }
            }
        }
    }
    let mut ticker = tokio::time::interval(config.probe_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        // Busy (every pooled connection in use) is not down: readiness
        // stays as it was, so a saturated shop is not taken out of
        // rotation while it keeps answering.
        match tokio::time::timeout(config.store.acquire_timeout * 2, store.ping()).await {
            Ok(Ok(())) => health.set_store_up(true),
            Ok(Err(StoreError::Contention(_))) => {}
            Ok(Err(_)) | Err(_) => health.set_store_up(false),
        }
    }
}

async fn purge_expired_keys(store: Arc<dyn Store>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        match store.purge_expired_keys(crate::model::now_ms()).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "expired idempotency keys deleted"),
            Err(err) => tracing::debug!(error = %err, "purging expired keys failed; will retry"),
        }
    }
}
