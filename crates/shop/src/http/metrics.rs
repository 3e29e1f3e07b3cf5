//! The shop's Prometheus metrics and the middleware that records requests.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SkuLabels {
    sku: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    state: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 16 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.0005, 2.0, 16,
    ))
}

#[derive(Debug)]
pub struct ShopMetrics {
    registry: Registry,
    /// Wrong admin tokens, limited per client (a layer on the router).
    pub failed_auth: std::sync::Arc<flashguard_telemetry::FailedAuth>,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily<RouteLabels>,
    in_flight: Gauge,
    shed: Family<ReasonLabels, Counter>,
    orders: Family<ResultLabels, Counter>,
    batch_size: Histogram,
    pool: Family<PoolLabels, Gauge>,
    order_queue: Gauge,
    stock_remaining: Family<SkuLabels, Gauge>,
    stock_remaining_ratio: Family<SkuLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    store_up: Gauge,
    ready: Gauge,
}

impl Default for ShopMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ShopMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily<RouteLabels> = Family::new_with_constructor(latency_histogram);
        let in_flight = Gauge::default();
        let shed = Family::<ReasonLabels, Counter>::default();
        let orders = Family::<ResultLabels, Counter>::default();
        let batch_size = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(1.0, 2.0, 11),
        );
        let pool = Family::<PoolLabels, Gauge>::default();
        let order_queue = Gauge::default();
        let stock_remaining = Family::<SkuLabels, Gauge>::default();
        let stock_remaining_ratio =
            Family::<SkuLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "shop_stock_remaining",
            "Units left per item, read from the store at scrape time",
            stock_remaining.clone(),
        );
        registry.register(
            "shop_stock_remaining_ratio",
            "Units left per item as a share of its initial stock",
            stock_remaining_ratio.clone(),
        );
        let store_up = Gauge::default();
        let ready = Gauge::default();
        registry.register(
            "shop_http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "shop_http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        registry.register(
            "shop_http_requests_in_flight",
            "HTTP requests being answered now",
            in_flight.clone(),
        );
        registry.register(
            "shop_requests_shed",
            "Requests refused with 503 overloaded, by reason (concurrency, timeout, order_queue)",
            shed.clone(),
        );
        registry.register("shop_orders", "Order requests by result", orders.clone());
        registry.register(
            "shop_order_batch_size",
            "Orders decided per store transaction",
            batch_size.clone(),
        );
        registry.register(
            "shop_db_pool_connections",
            "Database connections by state (idle, used, max)",
            pool.clone(),
        );
        registry.register(
            "shop_order_queue_depth",
            "Orders waiting for the order desk",
            order_queue.clone(),
        );
        registry.register(
            "shop_store_up",
            "1 if the store answered its last probe",
            store_up.clone(),
        );
        registry.register("shop_ready", "1 if /readyz answers 200", ready.clone());
        registry.register_collector(Box::new(flashguard_telemetry::ProcessCollector));
        let failed_auth = flashguard_telemetry::FailedAuth::new();
        failed_auth.register(&mut registry);
        ShopMetrics {
            failed_auth,
            registry,
            requests,
            latency,
            in_flight,
            shed,
            orders,
            batch_size,
            pool,
            order_queue,
            stock_remaining,
            stock_remaining_ratio,
            store_up,
            ready,
        }
    }

    pub fn shed(&self, reason: &str) {
        self.shed
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn order_result(&self, result: &str) {
        self.orders
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
    }

    pub fn batch(&self, size: usize) {
        self.batch_size.observe(size as f64);
    }
}

/// `/metrics`: gauges that are cheaper to read than to keep current are
/// read now, then everything is encoded.
pub(super) async fn serve(State(state): State<AppState>) -> Response {
    let m = &state.metrics;
    let pool = state.store.pool_stats();
    for (label, value) in [
        ("idle", pool.idle),
        ("used", pool.size.saturating_sub(pool.idle)),
        ("max", pool.max),
    ] {
        m.pool
            .get_or_create(&PoolLabels {
                state: label.to_string(),
            })
            .set(i64::from(value));
    }
    m.order_queue.set(state.desk.queued() as i64);
    // One small query per scrape; a slow store must not hold /metrics up.
    let inventory = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        state.store.inventory(),
    )
    .await;
    if let Ok(Ok(lines)) = inventory {
        for line in lines {
            let labels = SkuLabels { sku: line.sku };
            m.stock_remaining.get_or_create(&labels).set(line.remaining);
            let ratio = if line.initial > 0 {
                line.remaining as f64 / line.initial as f64
            } else {
                0.0
            };
            m.stock_remaining_ratio.get_or_create(&labels).set(ratio);
        }
    }
    m.store_up.set(i64::from(state.health.store_up()));
    m.ready
        .set(i64::from(state.health.not_ready_because().is_none()));
    flashguard_telemetry::metrics_response(&m.registry)
}

/// Decrements the in-flight gauge however the request ends, including when
/// its client disconnects and the future is dropped.
struct InFlightCount<'a>(&'a Gauge);

impl Drop for InFlightCount<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

pub(super) async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = request.method().as_str().to_string();
    let metrics = &state.metrics;
    metrics.in_flight.inc();
    let _count = InFlightCount(&metrics.in_flight);
    let started = Instant::now();
    let response = next.run(request).await;
    metrics
        .latency
        .get_or_create(&RouteLabels {
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: response.status().as_u16().to_string(),
        })
        .inc();
    response
}
