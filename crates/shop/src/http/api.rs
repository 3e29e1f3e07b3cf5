//! The customer API: products and orders, as JSON.

use axum::extract::{Path, State};
use axum::response::Response;
use axum::Json;

use super::extract::{IdempotencyKey, JsonBody};
use super::AppState;
use crate::error::{outcome_response, ApiError};
use crate::model::{
    now_ms, rfc3339, validate_sku, Order, OrderInput, OrderRequest, ProductView, SaleState,
};
use crate::orders::DeskError;
use crate::store::Decision;

pub(super) async fn list_products(
    State(state): State<AppState>,
) -> Result<Json<Vec<ProductView>>, ApiError> {
    let now = now_ms();
    let products = state
        .store
        .list_products()
        .await
        .map_err(|err| store_failed(&state, err))?;
    Ok(Json(products.iter().map(|p| p.view(now)).collect()))
}

pub(super) async fn get_product(
    State(state): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<ProductView>, ApiError> {
    if validate_sku(&sku).is_err() {
        return Err(ApiError::UnknownSku(sku));
    }
    match state
        .store
        .product(&sku)
        .await
        .map_err(|err| store_failed(&state, err))?
    {
        Some(product) => Ok(Json(product.view(now_ms()))),
        None => Err(ApiError::UnknownSku(sku)),
    }
}

pub(super) async fn place_order(
    State(state): State<AppState>,
    IdempotencyKey(key): IdempotencyKey,
    JsonBody(input): JsonBody<OrderInput>,
) -> Result<Response, ApiError> {
    let request = input
        .validate(key, state.config.max_quantity_per_order)
        .map_err(ApiError::InvalidField)?;
    let decision = take_order(&state, request).await?;
    decision_response(decision)
}

pub(super) async fn get_order(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Order>, ApiError> {
    match lookup_order(&state, &id).await? {
        Some(order) => Ok(Json(order)),
        None => Err(ApiError::OrderNotFound(id)),
    }
}

pub(super) async fn lookup_order(state: &AppState, id: &str) -> Result<Option<Order>, ApiError> {
    if id.is_empty() || id.len() > 64 {
        return Ok(None);
    }
    let record = state
        .store
        .order(id)
        .await
        .map_err(|err| store_failed(state, err))?;
    Ok(record.map(|r| Order {
        order_id: r.order_id,
        sku: r.sku,
        quantity: r.quantity,
        customer: r.customer,
        created_at: r.created_at,
    }))
}

/// The one way into the order desk, for the API and the storefront alike.
pub(super) async fn take_order(
    state: &AppState,
    request: OrderRequest,
) -> Result<Decision, ApiError> {
    if !state.health.store_up() {
        return Err(ApiError::Unavailable(
            "the store cannot be reached; try again shortly".into(),
        ));
    }
    let Some(_working) = state
        .inflight
        .begin(&request.customer, &request.idempotency_key)
    else {
        state.metrics.order_result("request_in_progress");
        return Err(ApiError::RequestInProgress);
    };
    match state.desk.place(request).await {
        Ok(decision) => {
            state.metrics.order_result(decision.label());
            Ok(decision)
        }
        Err(DeskError::QueueFull) => {
            state.metrics.shed("order_queue");
            state.metrics.order_result("shed");
            Err(ApiError::Overloaded(
                "too many orders waiting; try again shortly".into(),
            ))
        }
        Err(DeskError::Unavailable(_)) => {
            state.health.set_store_up(false);
            state.metrics.order_result("unavailable");
            Err(ApiError::Unavailable(
                "the store cannot be reached; try again shortly".into(),
            ))
        }
        Err(DeskError::Closed) => Err(ApiError::Unavailable(
            "this shop is shutting down; try again".into(),
        )),
        Err(DeskError::Failed(why)) => {
            state.metrics.order_result("failed");
            Err(ApiError::Internal(why))
        }
    }
}

/// The contract's answer for a decision: recorded outcomes through the one
/// rendering (`error::outcome_response`), the rest as errors.
fn decision_response(decision: Decision) -> Result<Response, ApiError> {
    match decision {
        Decision::Final(outcome) => Ok(outcome_response(&outcome, false)),
        Decision::Replay(outcome) => Ok(outcome_response(&outcome, true)),
        Decision::SaleNotOpen { state, starts_at } => Err(ApiError::SaleNotOpen(
            sale_not_open_detail(state, starts_at),
        )),
        Decision::UnknownSku => Err(ApiError::UnknownSku("in this order".into())),
        Decision::KeyReused => Err(ApiError::IdempotencyKeyReused),
    }
}

pub(super) fn sale_not_open_detail(state: SaleState, starts_at: Option<i64>) -> String {
    match (state, starts_at) {
        (SaleState::Upcoming, Some(start)) => format!("the sale opens at {}", rfc3339(start)),
        (SaleState::Ended, _) => "the sale has ended".to_string(),
        _ => "the sale is not open".to_string(),
    }
}

/// A store failure on a read: an unreachable store also flips readiness at
/// once, rather than at the next probe.
pub(super) fn store_failed(state: &AppState, err: crate::store::StoreError) -> ApiError {
    if err.is_unavailable() {
        state.health.set_store_up(false);
    }
    ApiError::from(err)
}
