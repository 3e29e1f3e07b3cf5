//! The autoscaler at work in `up`: every step, the gateway's figures
//! (its admin API and metrics, the same second-by-second data the monitor
//! scrapes) and the catalogue's sale windows go to `autoscale`'s
//! decisions, and the stack adds or removes a shop. Every decision that
//! changes something goes on the monitor's timeline with its reason.

use std::time::Duration;

use serde_json::{json, Value};

use crate::autoscale::{Autoscaler, Decision, SaleWindow, Signals};
use crate::stack::Stack;
use crate::AutoscaleRules;

/// How often the catalogue's sale windows are read again.
const SALES_EVERY: Duration = Duration::from_secs(2);

/// Runs until the future is dropped (when `up` stops).
pub(crate) async fn drive(stack: &mut Stack, rules: AutoscaleRules, step: Duration) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("an HTTP client builds");
    let mut autoscaler = Autoscaler::new(rules);
    let mut seen = Seen::default();
    let mut sales = Vec::new();
    let mut sales_read: Option<tokio::time::Instant> = None;
    let mut tick = tokio::time::interval(step);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if sales_read.is_none_or(|at| at.elapsed() >= SALES_EVERY) {
            for shop in stack.catalogue_sources() {
                if let Some(read) = sale_windows(&http, &shop).await {
                    sales = read;
                    break;
                }
            }
            sales_read = Some(tokio::time::Instant::now());
        }
        let Some(signals) = signals(&http, stack, &mut seen, step).await else {
            continue;
        };
        let now = flashguard_telemetry::unix_ms().max(0) as u64;
        let current = stack.primaries() as u32;
        match autoscaler.decide(now, current, signals, &sales) {
            Decision::Hold => {}
            Decision::ScaleUp { to, why } => {
                for _ in current..to {
                    match stack.add_shop(&http).await {
                        Ok(name) => stack.record_scaling(
                            &name,
                            format!(
                                "autoscaler added {name} ({} shops): {why}",
                                stack.primaries()
                            ),
                            json!({ "action": "add", "shops": stack.primaries(), "why": why }),
                        ),
                        Err(err) => {
                            tracing::warn!(%err, "the autoscaler could not add a shop");
                            break;
                        }
                    }
                }
            }
            Decision::ScaleDown { why, .. } => {
                if let Some(name) = stack.remove_shop(&http).await {
                    stack.record_scaling(
                        &name,
                        format!(
                            "autoscaler removed {name} ({} shops): {why}",
                            stack.primaries()
                        ),
                        json!({ "action": "remove", "shops": stack.primaries(), "why": why }),
                    );
                }
            }
        }
    }
}

/// Counters as the last step read them, for their change since.
#[derive(Debug, Default)]
struct Seen {
    shed: Option<f64>,
    /// The shops' CPU time, in s, and how many shops it was of.
    cpu: Option<(f64, usize)>,
    /// The gateway's latency histogram: cumulative count per bucket bound.
    latency: Vec<(f64, f64)>,
}

/// The shops' load as the gateway sees it. None while it does not answer.
async fn signals(
    http: &reqwest::Client,
    stack: &Stack,
    seen: &mut Seen,
    step: Duration,
) -> Option<Signals> {
    let (admin, token) = stack.gateway_admin()?;
    let backends: Vec<Value> = json_of(
        http.get(format!("{admin}/admin/backends"))
            .bearer_auth(&token),
    )
    .await?;
    let serving = backends
        .iter()
        .filter(|b| b["pool"] == "primary" && b["state"] == "up");
    let (in_flight, limit) = serving.fold((0.0, 0.0), |(i, l), b| {
        (
            i + b["inflight"].as_f64().unwrap_or(0.0),
            l + b["limit"].as_f64().unwrap_or(0.0),
        )
    });
    let metrics = http
        .get(format!("{admin}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let shed_total = sum(&metrics, "gateway_shed_total");
    let shed_per_s = seen.shed.map_or(0.0, |before| {
        (shed_total - before).max(0.0) / step.as_secs_f64()
    });
    seen.shed = Some(shed_total);
    let latency = buckets(&metrics, "gateway_request_duration_seconds_bucket");
    let p99_ms = quantile_since(&seen.latency, &latency, 0.99).map(|s| s * 1000.0);
    seen.latency = latency;
    // The shops' CPU over the step against their quota; not across a step
    // in which a shop came or went.
    let shops = stack.primaries();
    let cpu_of_quota = stack.shops_cpu().and_then(|(seconds, cores)| {
        let before = seen.cpu.replace((seconds, shops));
        let (then, then_shops) = before?;
        (then_shops == shops && seconds >= then)
            .then(|| (seconds - then) / step.as_secs_f64() / (cores * shops as f64))
    });
    Some(Signals {
        in_flight,
        limit,
        cpu_of_quota,
        queued: sum(&metrics, "gateway_queue_waiting"),
        shed_per_s,
        p99_ms,
    })
}

/// A histogram's cumulative counts by bucket bound (`le`), summed over its
/// other labels, in bound order.
fn buckets(metrics: &str, family: &str) -> Vec<(f64, f64)> {
    let mut by_bound: Vec<(f64, f64)> = Vec::new();
    for line in metrics.lines().filter(|l| l.starts_with(family)) {
        let Some(bound) = line
            .split("le=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
        else {
            continue;
        };
        let bound = if bound == "+Inf" {
            f64::INFINITY
        } else {
            match bound.parse::<f64>() {
                Ok(bound) => bound,
                Err(_) => continue,
            }
        };
        let Some(count) = line.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()) else {
            continue;
        };
        match by_bound.iter_mut().find(|(b, _)| *b == bound) {
            Some((_, total)) => *total += count,
            None => by_bound.push((bound, count)),
        }
    }
    by_bound.sort_by(|a, b| a.0.total_cmp(&b.0));
    by_bound
}

/// The `q` quantile of what a histogram counted between two readings:
/// the bound of the first bucket that holds it (Prometheus's
/// `histogram_quantile` without the interpolation; the largest finite
/// bound when it lies beyond). None when nothing was counted.
fn quantile_since(before: &[(f64, f64)], now: &[(f64, f64)], q: f64) -> Option<f64> {
    let counted = |bound: f64| {
        before
            .iter()
            .find(|(b, _)| *b == bound)
            .map_or(0.0, |(_, c)| *c)
    };
    let deltas: Vec<(f64, f64)> = now
        .iter()
        .map(|(b, c)| (*b, (c - counted(*b)).max(0.0)))
        .collect();
    let total = deltas.last()?.1;
    if total <= 0.0 {
        return None;
    }
    deltas
        .iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(b, _)| *b)
        .filter(|b| b.is_finite())
        .or_else(|| deltas.iter().rev().nth(1).map(|(b, _)| *b))
}

/// The JSON an API answered, or None (no answer, not JSON).
async fn json_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> Option<T> {
    request.send().await.ok()?.json().await.ok()
}

/// A metric family's samples summed, from the text format.
fn sum(metrics: &str, family: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The catalogue's sale windows (`sale_starts_at`, `sale_ends_at`).
async fn sale_windows(http: &reqwest::Client, shop: &str) -> Option<Vec<SaleWindow>> {
    let products: Vec<Value> = json_of(http.get(format!("{shop}/api/products"))).await?;
    let ms = |value: &Value| -> Option<u64> {
        let at = flashguard_telemetry::parse_rfc3339(value.as_str()?).ok()?;
        u64::try_from(at).ok()
    };
    Some(
        products
            .iter()
            .filter_map(|p| {
                Some(SaleWindow {
                    opens_ms: ms(&p["sale_starts_at"])?,
                    closes_ms: ms(&p["sale_ends_at"]),
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_p99_is_of_the_answers_since_the_last_step() {
        let before = "gateway_request_duration_seconds_bucket{le=\"0.01\"} 100\n\
                      gateway_request_duration_seconds_bucket{le=\"0.1\"} 100\n\
                      gateway_request_duration_seconds_bucket{le=\"1\"} 100\n\
                      gateway_request_duration_seconds_bucket{le=\"+Inf\"} 100\n";
        // Since: 100 more answers, 2 of them slower than 0.1 s.
        let now = "gateway_request_duration_seconds_bucket{le=\"0.01\"} 150\n\
                   gateway_request_duration_seconds_bucket{le=\"0.1\"} 198\n\
                   gateway_request_duration_seconds_bucket{le=\"1\"} 200\n\
                   gateway_request_duration_seconds_bucket{le=\"+Inf\"} 200\n";
        let family = "gateway_request_duration_seconds_bucket";
        let (before, now) = (super::buckets(before, family), super::buckets(now, family));
        assert_eq!(super::quantile_since(&before, &now, 0.99), Some(1.0));
        assert_eq!(super::quantile_since(&before, &now, 0.5), Some(0.01));
        // Nothing answered since: no figure, not zero.
        assert_eq!(super::quantile_since(&now, &now, 0.99), None);
    }

    #[test]
    fn a_family_is_summed_over_its_labels_and_not_its_neighbours() {
        let text = "gateway_shed_total{reason=\"queue_full\"} 3\n\
                    gateway_shed_total{reason=\"overloaded\"} 4\n\
                    gateway_shed_totals 100\n\
                    # HELP gateway_shed_total x\n";
        assert_eq!(super::sum(text, "gateway_shed_total"), 7.0);
    }
}
