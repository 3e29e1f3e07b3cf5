//! The report: figures with stable field names (report.json) and the
//! terminal summary.

use serde::Serialize;

use crate::oracle::Invariants;
use crate::record::{ChaosEvent, Observed, PartsSample, Second};

#[derive(Debug, Clone, Serialize)]
pub struct Requests {
    pub total: u64,
    pub succeeded: u64,
    pub answered_by_design: u64,
    /// A waiting room's "your place is N, come back then".
    pub waiting_room_answers: u64,
    pub errors: u64,
    pub errors_by_kind: std::collections::BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// When an item's sale opened and closed, in seconds of the drill.
#[derive(Debug, Clone, Serialize)]
pub struct SaleWindow {
    pub sku: String,
    pub opens_s: f64,
    pub closes_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub passed: bool,
    pub invariants: Invariants,
    pub availability: f64,
    pub availability_floor: f64,
    pub failover_gap_ms: u64,
    pub requests: Requests,
    pub latency_ms: Latency,
    /// Latency of the orders acknowledged: what served customers saw.
    pub served_latency_ms: Latency,
    /// Zeros when no waiting room stood in front.
    pub waiting_room: crate::room::WaitingRoomReport,
    pub orders_acknowledged: usize,
    pub customers_gave_up: u64,
    pub arrivals_dropped_by_generator: u64,
    /// Attack-like requests (`[[attack]]`), apart from the customers'.
    pub attack: crate::attack::AttackTally,
    pub duration_s: f64,
    pub chaos: Vec<ChaosEvent>,
    pub sales: Vec<SaleWindow>,
    pub timeline: Vec<Second>,
    pub parts: Vec<PartsSample>,
}

impl Report {
    pub(crate) fn new(
        scenario: &crate::Scenario,
        observed: &Observed,
        invariants: Invariants,
    ) -> Report {
        let answered = observed.succeeded + observed.by_design + observed.waiting;
        let availability = if observed.total == 0 {
            0.0
        } else {
            answered as f64 / observed.total as f64
        };
        let ms = |q: f64| observed.latency.value_at_quantile(q) as f64 / 1000.0;
        let served = |q: f64| observed.served.value_at_quantile(q) as f64 / 1000.0;
        let passed = invariants.hold() && availability >= scenario.availability_floor;
        Report {
            scenario: scenario.name.clone(),
            passed,
            availability,
            availability_floor: scenario.availability_floor,
            failover_gap_ms: failover_gap(&observed.outcomes, &observed.chaos),
            requests: Requests {
                total: observed.total,
                succeeded: observed.succeeded,
                answered_by_design: observed.by_design,
                waiting_room_answers: observed.waiting,
                errors: observed.errors,
                errors_by_kind: observed.errors_by_kind.clone(),
            },
            latency_ms: Latency {
                p50: ms(0.5),
                p99: ms(0.99),
                max: observed.latency.max() as f64 / 1000.0,
            },
            served_latency_ms: Latency {
                p50: served(0.5),
                p99: served(0.99),
                max: observed.served.max() as f64 / 1000.0,
            },
            waiting_room: observed.room.report(),
            orders_acknowledged: observed.acknowledged.len(),
            customers_gave_up: observed.gave_up,
            arrivals_dropped_by_generator: observed.dropped,
            attack: observed.attack.clone(),
            duration_s: observed.duration.as_secs_f64(),
            chaos: observed.chaos.clone(),
            sales: scenario
                .items
                .iter()
                .map(|item| SaleWindow {
                    sku: item.sku.clone(),
                    opens_s: item.sale_starts_in_s,
                    closes_s: item.sale_ends_in_s,
                })
                .collect(),
            timeline: observed.timeline.clone(),
            parts: observed.parts.clone(),
            invariants,
        }
    }

    pub fn summary(&self) -> String {
        let verdict = if self.passed { "PASSED" } else { "FAILED" };
        let i = &self.invariants;
        format!(
            "{verdict}: {}\n  oversold units {}, lost acknowledged orders {}, duplicate keys {}\n  \
             fairness overtakes {}, bypassed orders {}, unanswered customers {}\n  \
             availability {:.4} (floor {}), longest error run after chaos {} ms\n  \
             requests {} ({} succeeded, {} answered by design, {} errors {:?})\n  \
             latency from intended send: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms\n  \
             orders acknowledged {} (served p99 {:.1} ms), customers who gave up {}, arrivals dropped by the generator {}{}",
            self.scenario,
            i.oversold_units,
            i.lost_orders,
            i.duplicate_keys,
            i.fairness_overtakes,
            i.bypassed_orders,
            i.unanswered_customers,
            self.availability,
            self.availability_floor,
            self.failover_gap_ms,
            self.requests.total,
            self.requests.succeeded,
            self.requests.answered_by_design,
            self.requests.errors,
            self.requests.errors_by_kind,
            self.latency_ms.p50,
            self.latency_ms.p99,
            self.latency_ms.max,
            self.orders_acknowledged,
            self.served_latency_ms.p99,
            self.customers_gave_up,
            self.arrivals_dropped_by_generator,
            self.room_summary(),
        )
    }

    /// The waiting room's line of the summary, when one stood in front.
    fn room_summary(&self) -> String {
        let w = &self.waiting_room;
        if w.customers_waited == 0 {
            return String::new();
        }
        format!(
            "\n  waiting room: {} customers waited (median {:.1} s, p90 {:.1} s, longest {:.1} s), \
             wait ÷ first estimate p50 {:.2} p90 {:.2}, {} told sold out, {} told the sale ended, \
             {} gave up waiting, {} requests of customers in held back",
            w.customers_waited,
            w.wait_s.p50,
            w.wait_s.p90,
            w.wait_s.max,
            w.eta_ratio.p50,
            w.eta_ratio.p90,
            w.told_sold_out,
            w.told_sale_ended,
            w.gave_up_waiting,
            w.held_back,
        )
    }
}

/// The longest stretch of consecutive client-visible errors (from the
/// first to the last of the run) that began after a chaos action.
pub(crate) fn failover_gap(outcomes: &[(u64, bool)], chaos: &[ChaosEvent]) -> u64 {
    let Some(first_chaos) = chaos.iter().map(|c| c.at_ms).min() else {
        return 0;
    };
    let mut sorted: Vec<(u64, bool)> = outcomes
        .iter()
        .copied()
        .filter(|(at, _)| *at >= first_chaos)
        .collect();
    sorted.sort_unstable();
    let mut longest = 0;
    let mut run_start = None;
    for (at, error) in sorted {
        match (error, run_start) {
            (true, None) => run_start = Some(at),
            (true, Some(start)) => longest = longest.max(at - start),
            (false, _) => run_start = None,
        }
    }
    longest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gap_is_the_longest_error_run_after_chaos() {
        let chaos = [ChaosEvent {
            at_ms: 100,
            action: flashguard_telemetry::ChaosAction::Kill,
            part: "shop-1".into(),
            outcome: "done".into(),
        }];
        let outcomes = [
            (50, true),
            (90, true),
            (150, true),
            (400, true),
            (410, false),
            (500, true),
            (520, true),
        ];
        assert_eq!(failover_gap(&outcomes, &chaos), 250);
        assert_eq!(failover_gap(&outcomes, &[]), 0);
    }
}
