//! The shop's HTTP surface. The request path, outermost first:
//!
//! 1. `finish`: any error answer axum itself makes (405, a bad path) is
//!    answered as the contract's JSON error, so clients parse one shape, and
//!    every 503 gets `Retry-After` from the config.
//! 2. `metrics::track`: counts and times every request, shed ones included.
//! 3. `DefaultBodyLimit`: bodies over the limit are refused before reading.
//! 4. On the API, pages and admin only (never on probes and metrics, which
//!    must answer most of all under overload): load shedding, a concurrency
//!    limit and a request timeout, in `overload`.

mod admin;
mod api;
mod extract;
mod finish;
pub(crate) mod metrics;
mod openapi;
mod overload;
mod pages;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::Router;

use crate::config::Config;
use crate::error::ApiError;
use crate::health::Health;
use crate::orders::{InFlight, OrderDesk};
use crate::store::Store;
use metrics::ShopMetrics;

/// Everything a handler may need; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub desk: OrderDesk,
    pub inflight: InFlight,
    pub metrics: Arc<ShopMetrics>,
    pub health: Arc<Health>,
    pub config: Arc<Config>,
}

/// The whole shop as a router, for `run` and for tests without a socket.
pub fn router(state: AppState) -> Router {
    let guarded = Router::new()
        .route("/api/products", get(api::list_products))
        .route("/api/products/{sku}", get(api::get_product))
        .route("/api/orders", post(api::place_order))
        .route("/api/orders/{id}", get(api::get_order))
        .merge(
            Router::new()
                .route("/", get(pages::index))
                .route("/products/{sku}", get(pages::product))
                .route("/products/{sku}/buy", post(pages::buy))
                .route("/orders/{id}", get(pages::order))
                .layer(axum::middleware::from_fn(pages::with_store_status)),
        )
        .route("/admin/products/{sku}", put(admin::put_product))
        .route("/admin/orders", get(admin::export_orders))
        .route("/admin/inventory", get(admin::inventory))
        .layer(overload::layers(&state));
    Router::new()
        .merge(guarded)
        .route("/healthz", get(flashguard_telemetry::healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::serve))
        .route("/api/openapi.json", get(openapi::serve))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state.metrics.failed_auth),
            flashguard_telemetry::limit_failed_auth,
        ))
        .layer(from_fn_with_state(state.clone(), metrics::track))
        .layer(from_fn_with_state(state.clone(), finish::finish))
        .with_state(state)
}

async fn readyz(State(state): State<AppState>) -> Response {
    flashguard_telemetry::readiness_response(state.health.not_ready_because())
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}
