//! The gateway's Prometheus metrics. Backend state, in-flight and latency
//! are read from the backend set at scrape time, so they are never stale.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::answers::{Answers, AnswersCollector};
use crate::backend::{BackendView, State};
use crate::balance::Backends;
use crate::proxy::relay::Stall;
use crate::queue::{HandedTo, WaitQueue};
use crate::traffic::History;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    /// Every reason is one of a fixed set: no allocation per count, which
    /// matters when a surge sheds thousands a second.
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ThreadLabels {
    thread: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Debug)]
pub(crate) struct GatewayMetrics {
    registry: Registry,
    /// Wrong admin tokens, limited per client (the admin API's layer).
    pub(crate) failed_auth: Arc<flashguard_telemetry::FailedAuth>,
    answers: Arc<Answers>,
    retries: Family<ReasonLabels, Counter>,
    budget_exhausted: Counter,
    ejections: Family<BackendLabels, Counter>,
    shed: Family<ReasonLabels, Counter>,
    cut: Family<ReasonLabels, Counter>,
    queue_waits: Family<ResultLabels, Histogram>,
    /// `queue_waits` of each `QueueOutcome`, looked up once: a surge
    /// queues most requests, and the lookup hashed its label on each.
    queue_wait_of: [Histogram; 3],
    client_connections: Family<ThreadLabels, Gauge>,
    /// Times a serving thread did not run for `stall::STALL` or more.
    pub(crate) serving_stalls: Counter,
    /// Serving threads that take new connections (`crate::threads`).
    pub(crate) serving_threads_accepting: Gauge,
    /// Connections closed at once: their client held its share.
    pub(crate) per_client_refused: Counter,
    ready: Gauge,
    gateway_label: Arc<str>,
    pub(crate) room: crate::room::RoomMetrics,
    /// TLS and HTTP/2.
    pub(crate) edge: Arc<crate::edge::metrics::EdgeMetrics>,
}

/// How a wait in the queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueOutcome {
    /// A slot came.
    Granted,
    /// None came within `queue.timeout_ms`.
    TimedOut,
    /// The client gave up first (it reset its HTTP/2 stream).
    Abandoned,
}

impl QueueOutcome {
    fn as_str(self) -> &'static str {
        match self {
            QueueOutcome::Granted => "granted",
            QueueOutcome::TimedOut => "timed_out",
            QueueOutcome::Abandoned => "abandoned",
        }
    }
}

impl GatewayMetrics {
    pub(crate) fn new(
        backends: Arc<Backends>,
        queue: Arc<WaitQueue>,
        traffic: Arc<Mutex<History>>,
    ) -> Self {
        let mut registry = Registry::default();
        // 1 ms to about 16 s.
        let queue_waits: Family<ResultLabels, Histogram> =
            Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 15)));
        // In the enum's order, which `queued` indexes by.
        let queue_wait_of = [
            QueueOutcome::Granted,
            QueueOutcome::TimedOut,
            QueueOutcome::Abandoned,
        ]
        .map(|outcome| {
            queue_waits
                .get_or_create(&ResultLabels {
                    result: outcome.as_str(),
                })
                .clone()
        });
        let metrics = GatewayMetrics {
            // 0.25 ms to about 8 s.
            answers: Arc::new(Answers::new(exponential_buckets(0.00025, 2.0, 16))),
            retries: Family::default(),
            budget_exhausted: Counter::default(),
            ejections: Family::default(),
            shed: Family::default(),
            cut: Family::default(),
            queue_waits,
            queue_wait_of,
            client_connections: Family::default(),
            serving_stalls: Counter::default(),
            serving_threads_accepting: Gauge::default(),
            per_client_refused: Counter::default(),
            ready: Gauge::default(),
            gateway_label: Arc::from("gateway"),
            room: crate::room::RoomMetrics::default(),
            registry: Registry::default(),
            failed_auth: flashguard_telemetry::FailedAuth::new(),
            edge: Arc::default(),
        };
        metrics.edge.register(&mut registry);
        metrics.room.register(&mut registry);
        metrics.failed_auth.register(&mut registry);
        registry.register_collector(Box::new(AnswersCollector(Arc::clone(&metrics.answers))));
        registry.register(
            "gateway_retries",
            "Tries sent to another backend, by what went wrong with the previous one",
            metrics.retries.clone(),
        );
        registry.register(
            "gateway_retry_budget_exhausted",
            "Retries not sent because the retry budget was spent",
            metrics.budget_exhausted.clone(),
        );
        registry.register(
            "gateway_ejections",
            "Backends ejected by passive outlier detection",
            metrics.ejections.clone(),
        );
        registry.register(
            "gateway_shed",
            "Requests the gateway answered by itself, by reason: 503, or for a customer the waiting room let in, the room's come-back answer (gateway_room_held_back)",
            metrics.shed.clone(),
        );
        // Both series exist from the start, at 0: a burst of cuts between
        // two scrapes is then an increase, not a new series' first value.
        for stalled in [Stall::Client, Stall::Backend] {
            metrics.cuts(stalled);
        }
        registry.register(
            "gateway_answers_cut",
            "Answers cut off because their bytes stopped moving, by who stalled: a client that took none (timeouts.client_send_ms) or a backend that sent none (timeouts.upstream_ms)",
            metrics.cut.clone(),
        );
        registry.register(
            "gateway_client_connections",
            "Client connections open, by the serving thread that serves them",
            metrics.client_connections.clone(),
        );
        registry.register(
            "gateway_serving_stalls",
            "Times a serving thread did not run for 5 ms or more (its CPU quota spent, or its core given to another process); answers awaited across one do not move the adaptive limits",
            metrics.serving_stalls.clone(),
        );
        registry.register(
            "gateway_serving_threads_accepting",
            "Serving threads that take new connections: with workers = 0, as many as the CPU quota allows, followed while the gateway runs",
            metrics.serving_threads_accepting.clone(),
        );
        registry.register(
            "gateway_client_connections_refused",
            "Connections closed as soon as they were accepted: their client held limits.max_connections_per_client already",
            metrics.per_client_refused.clone(),
        );
        registry.register(
            "gateway_ready",
            "1 while the gateway accepts traffic, 0 while it drains",
            metrics.ready.clone(),
        );
        registry.register(
            "gateway_queue_wait_seconds",
            "Time requests waited in the queue, by whether they got a slot",
            metrics.queue_waits.clone(),
        );
        registry.register_collector(Box::new(BackendCollector { backends, queue }));
        registry.register_collector(Box::new(TrafficCollector { traffic }));
        registry.register_collector(Box::new(flashguard_telemetry::ProcessCollector));
        GatewayMetrics {
            registry,
            ..metrics
        }
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts an answer from `backend` (`None`: the gateway's own).
    pub(crate) fn answered(&self, backend: Option<&Arc<str>>, status: u16, elapsed: Duration) {
        let backend = backend.unwrap_or(&self.gateway_label);
        self.answers.answered(backend, status, elapsed);
    }

    /// A client request starts (`+1`) or ends (`-1`).
    pub(crate) fn in_flight(&self, change: i64) {
        self.answers.in_flight(change);
    }

    pub(crate) fn retried(&self, reason: &'static str) {
        self.retries.get_or_create(&ReasonLabels { reason }).inc();
    }

    pub(crate) fn budget_exhausted(&self) {
        self.budget_exhausted.inc();
    }

    pub(crate) fn ejected(&self, backend: &str) {
        self.ejections
            .get_or_create(&BackendLabels {
                backend: backend.to_string(),
            })
            .inc();
    }

    /// A request waited `waited` in the queue, and how that ended.
    pub(crate) fn queued(&self, waited: Duration, outcome: QueueOutcome) {
        self.queue_wait_of[outcome as usize].observe(waited.as_secs_f64());
    }

    pub(crate) fn shed(&self, reason: &'static str) {
        self.shed.get_or_create(&ReasonLabels { reason }).inc();
    }

    /// An answer was cut off: `stalled` stopped its bytes moving.
    pub(crate) fn cut(&self, stalled: Stall) {
        self.cuts(stalled).inc();
    }

    /// The count of answers `stalled` had cut off.
    fn cuts(&self, stalled: Stall) -> Counter {
        self.cut
            .get_or_create(&ReasonLabels {
                reason: stalled.as_str(),
            })
            .clone()
    }

    /// The count of client connections serving thread `thread` has open.
    pub(crate) fn client_connections(&self, thread: usize) -> Gauge {
        let thread = u32::try_from(thread).unwrap_or(u32::MAX);
        self.client_connections
            .get_or_create(&ThreadLabels { thread })
            .clone()
    }

    pub(crate) fn set_ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }
}

#[derive(Debug)]
struct BackendCollector {
    backends: Arc<Backends>,
    queue: Arc<WaitQueue>,
}

const STATES: [State; 4] = [State::Up, State::Down, State::Draining, State::Ejected];

impl Collector for BackendCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let views = self.backends.views();
        let mut state = encoder.encode_descriptor(
            "gateway_backend_state",
            "1 for each backend's current state (up, down, draining, ejected)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for view in &views {
            for candidate in STATES {
                let labels = [
                    ("backend", view.name.as_str()),
                    ("pool", view.pool.as_str()),
                    ("state", candidate.as_str()),
                ];
                ConstGauge::new(i64::from(view.state == candidate))
                    .encode(state.encode_family(&labels)?)?;
            }
        }
        per_backend(
            &mut encoder,
            &views,
            (
                "gateway_backend_in_flight_requests",
                "Requests in flight on each backend",
            ),
            |view| view.inflight as i64,
        )?;
        per_backend(
            &mut encoder,
            &views,
            (
                "gateway_backend_answers_waiting_on_clients",
                "Answers from each backend that wait on their clients, holding a connection but no slot",
            ),
            |view| view.waiting_on_clients as i64,
        )?;
        per_backend(
            &mut encoder,
            &views,
            (
                "gateway_backend_latency_ewma_seconds",
                "Each backend's peak-EWMA latency estimate",
            ),
            |view| view.ewma_ms / 1000.0,
        )?;
        per_backend(
            &mut encoder,
            &views,
            (
                "gateway_backend_concurrency_limit",
                "Each backend's concurrency limit now (adaptive unless configured fixed)",
            ),
            |view| i64::from(view.limit),
        )?;
        let waiting = encoder.encode_descriptor(
            "gateway_queue_waiting",
            "Requests waiting in the queue for a backend's slot",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        ConstGauge::new(self.queue.waiting() as i64).encode(waiting)?;
        let mut handed = encoder.encode_descriptor(
            "gateway_queue_handovers",
            "Slots handed to waiting requests, by whether the waiter was on the thread that freed the slot",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for to in HandedTo::ALL {
            ConstCounter::new(self.queue.handed(to))
                .encode(handed.encode_family(&[("to", to.as_str())])?)?;
        }
        Ok(())
    }
}

/// A gauge with one sample per backend (label `backend`): `value` of its
/// view.
fn per_backend<N: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    views: &[BackendView],
    (name, help): (&str, &str),
    value: impl Fn(&BackendView) -> N,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for view in views {
        ConstGauge::new(value(view))
            .encode(family.encode_family(&[("backend", view.name.as_str())])?)?;
    }
    Ok(())
}

/// Seconds of traffic the `gateway_traffic_*` gauges summarise: short, so a
/// surge shows within a scrape or two.
const TRAFFIC_SECONDS: usize = 5;

/// The traffic summary as gauges, so a monitor that scrapes `/metrics` can
/// tell a flash crowd from an attack without the admin token.
#[derive(Debug)]
struct TrafficCollector {
    traffic: Arc<Mutex<History>>,
}

impl Collector for TrafficCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let summary = self
            .traffic
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary(TRAFFIC_SECONDS);
        let busiest_per_s =
            summary.busiest.first().map_or(0, |b| b.1) as f64 / summary.seconds as f64;
        for (name, help, value) in [
            (
                "gateway_traffic_requests_per_second",
                "Requests per second over the last 5 s",
                summary.requests_per_s,
            ),
            (
                "gateway_traffic_distinct_clients",
                "Distinct client addresses seen in the last 5 s (HyperLogLog estimate)",
                summary.distinct_clients,
            ),
            (
                "gateway_traffic_top10_share",
                "Share of the last 5 s of requests sent by the 10 busiest clients",
                summary.top10_share,
            ),
            (
                "gateway_traffic_busiest_client_requests_per_second",
                "Requests per second of the busiest client over the last 5 s",
                busiest_per_s,
            ),
        ] {
            let gauge = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            ConstGauge::new(value).encode(gauge)?;
        }
        for (name, help, shares) in [
            (
                "gateway_traffic_path_share",
                "Share of the last 5 s of requests by kind of path",
                &summary.paths,
            ),
            (
                "gateway_traffic_answer_share",
                "Share of the last 5 s of answers by class (ok, client_error, server_error)",
                &summary.answers,
            ),
        ] {
            let mut family = encoder.encode_descriptor(
                name,
                help,
                None,
                prometheus_client::metrics::MetricType::Gauge,
            )?;
            let mut classes: Vec<_> = shares.iter().collect();
            classes.sort_by_key(|c| *c.0);
            for (class, share) in classes {
                ConstGauge::new(*share).encode(family.encode_family(&[("class", *class)])?)?;
            }
        }
        Ok(())
    }
}
