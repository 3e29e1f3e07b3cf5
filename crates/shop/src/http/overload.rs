//! Shedding load instead of falling over. Outermost first:
//!
//! - `HandleErrorLayer` turns the two refusals below into 503 `overloaded`
//!   with `Retry-After`, and counts them.
//! - `LoadShedLayer` refuses at once when the concurrency limit is reached,
//!   instead of queueing without bound (a queue that grows under a surge is
//!   how a shop runs out of memory and takes minutes to recover).
//! - `ConcurrencyLimitLayer` bounds the requests being worked on.
//! - `TimeoutLayer` bounds how long any one of them may take.

use std::sync::Arc;

use axum::error_handling::HandleErrorLayer;
use axum::BoxError;
use tower::layer::util::{Identity, Stack};
use tower::limit::ConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

use super::metrics::ShopMetrics;
use super::AppState;
use crate::error::ApiError;

type Layers<F> = ServiceBuilder<
    Stack<
        TimeoutLayer,
        Stack<
            ConcurrencyLimitLayer,
            Stack<LoadShedLayer, Stack<HandleErrorLayer<F, ()>, Identity>>,
        >,
    >,
>;

pub(super) fn layers(
    state: &AppState,
) -> Layers<impl Fn(BoxError) -> std::future::Ready<ApiError> + Clone + Send + Sync + 'static> {
    let metrics: Arc<ShopMetrics> = Arc::clone(&state.metrics);
    let timeout = state.config.request_timeout;
    let refuse = move |err: BoxError| {
        let answer = if err.is::<tower::timeout::error::Elapsed>() {
            metrics.shed("timeout");
            ApiError::Overloaded(format!(
                "the request took longer than {} ms",
                timeout.as_millis()
            ))
        } else if err.is::<tower::load_shed::error::Overloaded>() {
            metrics.shed("concurrency");
            ApiError::Overloaded("the shop is at capacity; try again shortly".into())
        } else {
            ApiError::Internal(err.to_string())
        };
        std::future::ready(answer)
    };
    ServiceBuilder::new()
        .layer(HandleErrorLayer::new(refuse))
        .layer(LoadShedLayer::new())
        .layer(ConcurrencyLimitLayer::new(
            state.config.max_concurrent_requests,
        ))
        .layer(TimeoutLayer::new(timeout))
}
