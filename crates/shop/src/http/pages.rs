//! The storefront a customer sees: server-rendered HTML that works without
//! JavaScript. The only script ticks the sale countdowns; without it they
//! still show the time left when the page was made.

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use maud::{html, Markup, PreEscaped, DOCTYPE};
use serde::Deserialize;

use super::api::{lookup_order, sale_not_open_detail, take_order};
use super::AppState;
use crate::error::ApiError;
use crate::model::{
    now_ms, validate_idempotency_key, validate_sku, OrderInput, Product, SaleState,
};
use crate::store::{Decision, Outcome};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}\
a{color:#0a58ca}.card{border:1px solid #ddd;border-radius:8px;padding:1rem;margin:1rem 0}\
.price{font-weight:bold}.muted{color:#666}.soldout{color:#b00020;font-weight:bold}\
button{font-size:1.1rem;padding:.5rem 1.5rem;background:#0a58ca;color:#fff;border:0;border-radius:6px}\
input{font-size:1rem;padding:.3rem;margin:.2rem 0 .8rem}\
.banner{background:#fef3c7;border:1px solid #f59e0b;border-radius:6px;padding:.6rem 1rem}";

/// Updates every `[data-starts]` element once a second.
const COUNTDOWN_JS: &str = "function t(){var n=Date.now();document.querySelectorAll('[data-starts]').forEach(function(e){\
var s=Math.max(0,Math.round((+e.dataset.starts-n)/1000));e.textContent=s>0?'Sale opens in '+Math.floor(s/3600)+'h '+\
Math.floor(s%3600/60)+'m '+s%60+'s':'Sale is open: reload to buy';});}t();setInterval(t,1000);";

/// The gateway's word on the store's state, for the banner: it sets
/// `Flashguard-Status` on what it forwards when its status page says
/// something is wrong (and drops any copy a client sent), so the shop
/// never polls and the gateway never rewrites a page.
const STATUS_HEADER: &str = "flashguard-status";

tokio::task_local! {
    static STORE_STATUS: Option<&'static str>;
}

/// Makes the gateway's status header known to the page being rendered.
pub(super) async fn with_store_status(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let status = request
        .headers()
        .get(STATUS_HEADER)
        .and_then(|v| match v.as_bytes() {
            b"degraded_performance" => Some("Some things are slower or failing more than usual."),
            b"partial_outage" => Some("Part of the store is not working."),
            b"major_outage" => Some("The store is having a major outage."),
            b"under_maintenance" => Some("Part of the store is under maintenance."),
            _ => None,
        });
    STORE_STATUS.scope(status, next.run(request)).await
}

fn page(title: &str, body: Markup) -> Markup {
    let banner = STORE_STATUS.try_with(|status| *status).ok().flatten();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · flashguard shop" }
                // No icon to fetch: a browser's request for /favicon.ico
                // would be a 404 on every page.
                link rel="icon" href="data:,";
                style { (PreEscaped(STYLE)) }
            }
            body {
                header { a href="/" { "flashguard shop" } }
                @if let Some(words) = banner {
                    p #status-banner .banner { (words) " " a href="/status" { "See the status page." } }
                }
                main { (body) }
                script { (PreEscaped(COUNTDOWN_JS)) }
            }
        }
    }
}

fn price(cents: i64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

fn countdown(starts_at: i64, now: i64) -> Markup {
    let seconds = ((starts_at - now) / 1000).max(0);
    html! {
        span.countdown data-starts=(starts_at) {
            "Sale opens in " (seconds / 3600) "h " (seconds % 3600 / 60) "m " (seconds % 60) "s"
        }
    }
}

fn availability(product: &Product, now: i64) -> Markup {
    match product.sale_state(now) {
        SaleState::Upcoming => countdown(product.sale_starts_at.unwrap_or(now), now),
        SaleState::Ended => html! { span.muted { "The sale has ended." } },
        SaleState::Open if product.remaining() == 0 => html! { span.soldout { "Sold out" } },
        SaleState::Open => {
            html! { span { (product.remaining()) " of " (product.initial_stock) " left" } }
        }
    }
}

fn html_response(status: StatusCode, markup: Markup) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        markup.into_string(),
    )
        .into_response()
}

pub(super) async fn index(State(state): State<AppState>) -> Response {
    let now = now_ms();
    let products = match state.store.list_products().await {
        Ok(products) => products,
        Err(err) => return trouble_page(super::api::store_failed(&state, err)),
    };
    html_response(
        StatusCode::OK,
        page(
            "Flash sale",
            html! {
                h1 { "Flash sale" }
                @if products.is_empty() { p.muted { "Nothing on sale yet." } }
                @for product in &products {
                    div.card {
                        h2 { a href={ "/products/" (product.sku) } { (product.name) } }
                        p.price { (price(product.price_cents)) }
                        p { (availability(product, now)) }
                    }
                }
            },
        ),
    )
}

pub(super) async fn product(State(state): State<AppState>, Path(sku): Path<String>) -> Response {
    let now = now_ms();
    let found = if validate_sku(&sku).is_ok() {
        state.store.product(&sku).await
    } else {
        Ok(None)
    };
    let product = match found {
        Ok(Some(product)) => product,
        Ok(None) => return not_found_page("We have no such product."),
        Err(err) => return trouble_page(super::api::store_failed(&state, err)),
    };
    let open = product.sale_state(now) == SaleState::Open && product.remaining() > 0;
    let max_quantity = product
        .limit_per_customer
        .unwrap_or(state.config.max_quantity_per_order)
        .min(state.config.max_quantity_per_order)
        .min(product.remaining().max(1));
    // A fresh key per page view: resubmitting this form (a double click, a
    // retry after a network error) can never buy twice.
    let key = uuid::Uuid::new_v4().to_string();
    html_response(
        StatusCode::OK,
        page(
            &product.name,
            html! {
                h1 { (product.name) }
                p.price { (price(product.price_cents)) }
                p { (availability(&product, now)) }
                @if let Some(limit) = product.limit_per_customer { p.muted { "Limit " (limit) " per customer." } }
                @if open {
                    form method="post" action={ "/products/" (product.sku) "/buy" } {
                        input type="hidden" name="idempotency_key" value=(key);
                        label { "Your email or customer id" br; input name="customer" required maxlength="128"; }
                        br;
                        label { "Quantity" br; input type="number" name="quantity" value="1" min="1" max=(max_quantity) required; }
                        br;
                        button type="submit" { "Buy now" }
                    }
                } @else if product.remaining() == 0 {
                    (sold_out_markup(&product.name))
                }
            },
        ),
    )
}

fn sold_out_markup(name: &str) -> Markup {
    html! {
        div.card {
            p.soldout { "Sold out — sorry!" }
            p { "Every " (name) " in this sale has found a buyer. Nobody was charged for an item we could not deliver." }
            p { a href="/" { "See what else is on sale" } }
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct BuyForm {
    idempotency_key: String,
    customer: String,
    quantity: i64,
}

pub(super) async fn buy(
    State(state): State<AppState>,
    Path(sku): Path<String>,
    form: Result<Form<BuyForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Please check the form",
            "Some fields were missing or not numbers.",
        );
    };
    if let Err(why) = validate_idempotency_key(&form.idempotency_key) {
        return message_page(
            StatusCode::BAD_REQUEST,
            "Please reload the product page",
            &why,
        );
    }
    let input = OrderInput {
        sku: sku.clone(),
        quantity: form.quantity,
        customer: form.customer.clone(),
    };
    let request = match input.validate(
        form.idempotency_key.clone(),
        state.config.max_quantity_per_order,
    ) {
        Ok(request) => request,
        Err(invalid) => {
            return message_page(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Please check the form",
                &invalid.to_string(),
            )
        }
    };
    let decision = take_order(&state, request).await;
    // A created order, now or when this form was sent before.
    let created = match &decision {
        Ok(Decision::Final(outcome) | Decision::Replay(outcome)) => outcome.order_id(),
        _ => None,
    };
    if let Some(id) = created {
        return Redirect::to(&format!("/orders/{id}")).into_response();
    }
    match decision {
        Ok(Decision::Final(Outcome::LimitExceeded { .. })) => message_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Limit reached",
            "You already have as many of these as one customer may buy in this sale.",
        ),
        Ok(Decision::SaleNotOpen {
            state: sale,
            starts_at,
        }) => message_page(
            StatusCode::CONFLICT,
            "Not yet",
            &sale_not_open_detail(sale, starts_at),
        ),
        // Sold out, or an earlier answer to this form that created nothing.
        Ok(Decision::Final(_) | Decision::Replay(_)) => html_response(
            StatusCode::CONFLICT,
            page("Sold out", sold_out_markup(&sku)),
        ),
        Ok(Decision::UnknownSku) => not_found_page("We have no such product."),
        Ok(Decision::KeyReused) => message_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Please reload the product page",
            "This form was already used for a different order.",
        ),
        Err(
            err
            @ (ApiError::Overloaded(_) | ApiError::Unavailable(_) | ApiError::RequestInProgress),
        ) => retry_page(&sku, &form, &err),
        Err(err) => trouble_page(err),
    }
}

/// Busy: the same form with the same key, so pressing the button again is
/// always safe.
fn retry_page(sku: &str, form: &BuyForm, err: &ApiError) -> Response {
    html_response(
        StatusCode::SERVICE_UNAVAILABLE,
        page(
            "Busy",
            html! {
                h1 { "We are very busy" }
                p { "Your order is not lost: press the button again in a moment. You will never be charged twice." }
                p.muted { (err.to_string()) }
                form method="post" action={ "/products/" (sku) "/buy" } {
                    input type="hidden" name="idempotency_key" value=(form.idempotency_key);
                    input type="hidden" name="customer" value=(form.customer);
                    input type="hidden" name="quantity" value=(form.quantity);
                    button type="submit" { "Try again" }
                }
            },
        ),
    )
}

pub(super) async fn order(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match lookup_order(&state, &id).await {
        Ok(Some(order)) => html_response(
            StatusCode::OK,
            page(
                "Order confirmed",
                html! {
                    h1 { "Thank you — your order is confirmed" }
                    div.card {
                        p { "Order " code { (order.order_id) } }
                        p { (order.quantity) " × " a href={ "/products/" (order.sku) } { (order.sku) } }
                        p.muted { "For " (order.customer) ", placed " (order.created_at) }
                    }
                    p { a href="/" { "Back to the sale" } }
                },
            ),
        ),
        Ok(None) => not_found_page("We have no order with that number."),
        Err(err) => trouble_page(err),
    }
}

fn message_page(status: StatusCode, title: &str, text: &str) -> Response {
    html_response(
        status,
        page(
            title,
            html! { h1 { (title) } p { (text) } p { a href="/" { "Back to the sale" } } },
        ),
    )
}

fn not_found_page(text: &str) -> Response {
    message_page(StatusCode::NOT_FOUND, "Not found", text)
}

fn trouble_page(err: ApiError) -> Response {
    let status = err.status();
    if status.is_server_error()
        && !matches!(err, ApiError::Overloaded(_) | ApiError::Unavailable(_))
    {
        tracing::error!(error = %err, "page failed");
    }
    message_page(
        status,
        "Please try again in a moment",
        "The shop is very busy right now.",
    )
}
