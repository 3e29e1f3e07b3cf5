//! The waiting room's metrics, registered with the gateway's.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabels {
    pub(crate) reason: &'static str,
}

#[derive(Debug, Clone)]
pub(crate) struct RoomMetrics {
    /// 1 when `[waiting_room]` is configured (activation not off).
    pub(crate) configured: Gauge,
    pub(crate) on: Gauge,
    pub(crate) waiting: Gauge,
    pub(crate) active: Gauge,
    pub(crate) admit_rate: Gauge<f64, AtomicU64>,
    pub(crate) admitted: Counter,
    pub(crate) held_back: Counter,
    pub(crate) door_busy: Counter,
    pub(crate) issued: Counter,
    pub(crate) refused: Family<ReasonLabels, Counter>,
    pub(crate) wait: Histogram,
    pub(crate) eta_ratio: Histogram,
    pub(crate) abandoned: Counter,
    pub(crate) sold_out_notices: Counter,
    pub(crate) sale_ended_notices: Counter,
    pub(crate) longest_wait: Gauge<f64, AtomicU64>,
}

impl Default for RoomMetrics {
    fn default() -> Self {
        RoomMetrics {
            configured: Gauge::default(),
            on: Gauge::default(),
            waiting: Gauge::default(),
            active: Gauge::default(),
            admit_rate: Gauge::default(),
            admitted: Counter::default(),
            held_back: Counter::default(),
            door_busy: Counter::default(),
            issued: Counter::default(),
            refused: Family::default(),
            // 0.1 s to about 2 h.
            wait: Histogram::new(exponential_buckets(0.1, 2.0, 17)),
            // Actual ÷ first estimate: 1/16 to 16.
            eta_ratio: Histogram::new(exponential_buckets(0.0625, 2.0, 9)),
            abandoned: Counter::default(),
            sold_out_notices: Counter::default(),
            sale_ended_notices: Counter::default(),
            longest_wait: Gauge::default(),
        }
    }
}

impl RoomMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "gateway_room_configured",
            "1 when a waiting room is configured (activation not off)",
            self.configured.clone(),
        );
        registry.register(
            "gateway_room_on",
            "1 while the waiting room holds customers in line",
            self.on.clone(),
        );
        registry.register(
            "gateway_room_waiting",
            "Customers in line at this gateway",
            self.waiting.clone(),
        );
        registry.register(
            "gateway_room_active_sessions",
            "Customers let in within the session length",
            self.active.clone(),
        );
        registry.register(
            "gateway_room_admit_rate",
            "Customers let in per second at most, as the room now sets it",
            self.admit_rate.clone(),
        );
        registry.register(
            "gateway_room_admitted",
            "Customers whose turn came and who came back for it",
            self.admitted.clone(),
        );
        registry.register(
            "gateway_room_held_back",
            "Requests of customers let in that found every shop full for as long as a request may wait, answered with the room's come-back answer instead of the queue's 503",
            self.held_back.clone(),
        );
        registry.register(
            "gateway_room_door_busy",
            "Visits of customers whose turn had come, told to come back in a second because more came back at once than the rate lets in",
            self.door_busy.clone(),
        );
        registry.register(
            "gateway_room_tickets_issued",
            "Tickets issued (every first visit to a guarded path)",
            self.issued.clone(),
        );
        registry.register(
            "gateway_room_tickets_refused",
            "Tickets refused, by reason (forged, other event, copied, expired, over the client's issuance)",
            self.refused.clone(),
        );
        registry.register(
            "gateway_room_wait_seconds",
            "From arrival to turn, for customers admitted from the line",
            self.wait.clone(),
        );
        registry.register(
            "gateway_room_eta_ratio",
            "Actual wait divided by the first estimate shown",
            self.eta_ratio.clone(),
        );
        registry.register(
            "gateway_room_abandoned",
            "Places whose customers did not come back within 30 s of their turn",
            self.abandoned.clone(),
        );
        registry.register(
            "gateway_room_sold_out_notices",
            "Waiting customers told the sale sold out",
            self.sold_out_notices.clone(),
        );
        registry.register(
            "gateway_room_sale_ended_notices",
            "Waiting customers told the sale's window had closed",
            self.sale_ended_notices.clone(),
        );
        registry.register(
            "gateway_room_longest_wait_seconds",
            "The longest wait from arrival to turn so far",
            self.longest_wait.clone(),
        );
    }

    pub(crate) fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&ReasonLabels { reason }).inc();
    }
}
