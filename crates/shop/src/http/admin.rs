//! The admin API: products and stock, the order export the drill's oracle
//! reads, and the inventory summary. Bearer token from
//! `FLASHGUARD_ADMIN_TOKEN`; without one the admin API is off (403).

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use flashguard_telemetry::{check_bearer, BearerRefusal};

use super::api::store_failed;
use super::extract::JsonBody;
use super::AppState;
use crate::error::ApiError;
use crate::model::{now_ms, InventoryLine, ProductInput};
use crate::store::{StoreError, Upsert};

/// Orders read from the store per page of the export.
const EXPORT_PAGE: u32 = 1_000;

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    check_bearer(state.config.admin_token.as_deref(), headers).map_err(|refusal| match refusal {
        BearerRefusal::Disabled => ApiError::AdminDisabled,
        BearerRefusal::Unauthorized => ApiError::Unauthorized,
    })
}

pub(super) async fn put_product(
    State(state): State<AppState>,
    Path(sku): Path<String>,
    headers: HeaderMap,
    body: Result<JsonBody<ProductInput>, ApiError>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let JsonBody(input) = body?;
    let product = input.validate(&sku).map_err(ApiError::InvalidField)?;
    let now = now_ms();
    let outcome = match state.store.upsert_product(&product, now).await {
        Err(StoreError::Refused(why)) => return Err(ApiError::StockBelowSold(why)),
        other => other.map_err(|err| store_failed(&state, err))?,
    };
    let stored = state
        .store
        .product(&sku)
        .await
        .map_err(|err| store_failed(&state, err))?
        .ok_or_else(|| ApiError::Internal("product vanished after upsert".into()))?;
    tracing::info!(sku, stock = product.initial_stock, outcome = ?outcome, "product saved");
    let status = match outcome {
        Upsert::Created => StatusCode::CREATED,
        Upsert::Replaced => StatusCode::OK,
    };
    Ok((status, Json(stored.view(now))).into_response())
}

/// Every order as JSON lines, oldest first, read page by page so the export
/// never holds every order in memory.
pub(super) async fn export_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    // Fail before the 200 goes out if the store is down.
    let first = state
        .store
        .orders_after(None, EXPORT_PAGE)
        .await
        .map_err(|err| store_failed(&state, err))?;
    let store = state.store.clone();
    let pages = futures::stream::try_unfold(Some(first), move |page| {
        let store = store.clone();
        async move {
            let Some(page) = page else {
                return Ok::<_, StoreError>(None);
            };
            if page.is_empty() {
                return Ok(None);
            }
            let mut chunk = Vec::with_capacity(page.len() * 160);
            for (_, record) in &page {
                serde_json::to_writer(&mut chunk, record).expect("an order always serializes");
                chunk.push(b'\n');
            }
            let next = if page.len() < EXPORT_PAGE as usize {
                None
            } else {
                let (created_at, last) = page.last().expect("page is not empty");
                Some(
                    store
                        .orders_after(Some((*created_at, last.order_id.clone())), EXPORT_PAGE)
                        .await?,
                )
            };
            Ok(Some((Bytes::from(chunk), next)))
        }
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(pages),
    )
        .into_response())
}

pub(super) async fn inventory(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<Vec<InventoryLine>>, ApiError> {
    authorize(&state, &headers)?;
    Ok(Json(
        state
            .store
            .inventory()
            .await
            .map_err(|err| store_failed(&state, err))?,
    ))
}
