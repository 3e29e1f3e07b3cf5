//! The surge verdict: when the gateway's request rate jumps well above its
//! recent usual, say whether it looks like a flash crowd or an attack, from
//! what the gateway reports in `gateway_traffic_*`: how many requests each
//! client sends, how much the busiest ten send, how many requests go to
//! paths the shop does not have, how many are refused as client errors.
//!
//! Shoppers in a crowd are many, each sending a request or two a second to
//! the storefront, product and order pages. An attack is few clients, each
//! sending many, often to paths that do not exist. Two of the four signals
//! make "suspected attack"; the figures go with the verdict so a person can
//! judge it.

use std::collections::{BTreeMap, VecDeque};

use serde::Serialize;

use crate::rules::{Alert, AlertState, Transition};
use crate::store::Store;

pub(crate) const RULE: &str = "TrafficSurge";

/// Thresholds of the classifier.
#[derive(Debug, Clone)]
pub struct SurgeSettings {
    /// Below this rate (requests/s) nothing is a surge. Default 100.
    pub min_rate: f64,
    /// A surge is the rate at this many times its usual. Default 3.
    pub factor: f64,
}

impl Default for SurgeSettings {
    fn default() -> Self {
        SurgeSettings {
            min_rate: 100.0,
            factor: 3.0,
        }
    }
}

/// A signal of an attack: its name, the figure, and the threshold.
const PER_CLIENT_RATE: f64 = 5.0;
const TOP10_SHARE: f64 = 0.5;
const UNKNOWN_PATH_SHARE: f64 = 0.3;
const CLIENT_ERROR_SHARE: f64 = 0.3;

/// What the gateway saw in its last seconds, summed over gateways.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Figures {
    pub requests_per_s: f64,
    pub distinct_clients: f64,
    pub requests_per_client_per_s: f64,
    pub busiest_client_per_s: f64,
    pub top10_share: f64,
    pub unknown_path_share: f64,
    pub client_error_share: f64,
}

/// What a surge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SurgeKind {
    /// Many clients on the shop's own paths: customers.
    FlashCrowd,
    /// At least two signals of an attack.
    SuspectedAttack,
}

impl SurgeKind {
    /// As a label value: `flash_crowd`.
    pub fn as_str(self) -> &'static str {
        match self {
            SurgeKind::FlashCrowd => "flash_crowd",
            SurgeKind::SuspectedAttack => "suspected_attack",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Verdict {
    pub kind: SurgeKind,
    pub surge_started_ms: i64,
    pub decided_ms: i64,
    /// The usual rate before the surge (median of the minute before).
    pub baseline_per_s: f64,
    pub figures: Figures,
    /// Which signals pointed at an attack.
    pub attack_signals: Vec<String>,
}

impl Verdict {
    pub(crate) fn words(&self) -> &'static str {
        match self.kind {
            SurgeKind::FlashCrowd => "flash crowd",
            SurgeKind::SuspectedAttack => "suspected attack",
        }
    }

    pub(crate) fn sentence(&self) -> String {
        let f = &self.figures;
        let times = if self.baseline_per_s > 0.5 {
            format!(
                "{:.0}× the usual {:.0} req/s",
                f.requests_per_s / self.baseline_per_s,
                self.baseline_per_s
            )
        } else {
            "from near silence".to_string()
        };
        // The busiest client's rate is a guaranteed floor: in a crowd it is
        // often 0, which says nothing worth printing.
        let busiest = if f.busiest_client_per_s >= 1.0 {
            format!(", busiest {:.0} req/s", f.busiest_client_per_s)
        } else {
            String::new()
        };
        format!(
            "{}: {:.0} req/s, {times}, from {:.0} clients ({:.1} req/s each{busiest}); \
             the 10 busiest send {:.0} %, unknown paths {:.0} %, client errors {:.0} %",
            self.words(),
            f.requests_per_s,
            f.distinct_clients,
            f.requests_per_client_per_s,
            f.top10_share * 100.0,
            f.unknown_path_share * 100.0,
            f.client_error_share * 100.0,
        )
    }
}

/// Reads the latest figures of every gateway from the store.
pub(crate) fn figures(store: &Store, now_ms: i64) -> Option<Figures> {
    let latest = |metric: &str, matchers: &[(String, String)]| -> Vec<(String, f64)> {
        store
            .fresh(metric, matchers, now_ms)
            .into_iter()
            .map(|(labels, value)| (labels.get("target").cloned().unwrap_or_default(), value))
            .collect()
    };
    let rates = latest("gateway_traffic_requests_per_second", &[]);
    if rates.is_empty() {
        return None;
    }
    let rate_of = |target: &str| rates.iter().find(|(t, _)| t == target).map_or(0.0, |r| r.1);
    let total: f64 = rates.iter().map(|r| r.1).sum();
    let sum = |metric: &str| latest(metric, &[]).iter().map(|v| v.1).sum::<f64>();
    // Shares are weighted by each gateway's rate.
    let weighted = |metric: &str, class: Option<&str>| {
        let matchers: Vec<(String, String)> = class
            .map(|c| vec![("class".to_string(), c.to_string())])
            .unwrap_or_default();
        if total <= 0.0 {
            return 0.0;
        }
        latest(metric, &matchers)
            .iter()
            .map(|(target, share)| share * rate_of(target))
            .sum::<f64>()
            / total
    };
    let distinct = sum("gateway_traffic_distinct_clients");
    Some(Figures {
        requests_per_s: total,
        distinct_clients: distinct,
        requests_per_client_per_s: total / distinct.max(1.0),
        busiest_client_per_s: latest("gateway_traffic_busiest_client_requests_per_second", &[])
            .iter()
            .map(|v| v.1)
            .fold(0.0, f64::max),
        top10_share: weighted("gateway_traffic_top10_share", None),
        unknown_path_share: weighted("gateway_traffic_path_share", Some("other")),
        client_error_share: weighted("gateway_traffic_answer_share", Some("client_error")),
    })
}

/// The usual rate: the median of the minute before the last few seconds,
/// leaving out earlier surges (else a busy minute of surges would hide the
/// next one); `None` without a few seconds of history to judge by.
fn baseline(store: &Store, now_ms: i64, surges: &VecDeque<(i64, i64)>) -> Option<f64> {
    let mut by_time: BTreeMap<i64, f64> = BTreeMap::new();
    for series in store.range(
        "gateway_traffic_requests_per_second",
        &[],
        now_ms - 63_000,
        now_ms - 3_000,
    ) {
        for (t, v) in series.points {
            if surges.iter().any(|(from, to)| (*from..=*to).contains(&t)) {
                continue;
            }
            *by_time.entry(t).or_default() += v;
        }
    }
    let mut values: Vec<f64> = by_time.into_values().collect();
    if values.len() < 3 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some(values[values.len() / 2])
}

pub(crate) fn classify(figures: &Figures) -> (SurgeKind, Vec<String>) {
    let mut signals = Vec::new();
    if figures.requests_per_client_per_s > PER_CLIENT_RATE {
        signals.push(format!(
            "{:.1} requests/s per client (shoppers send about 1)",
            figures.requests_per_client_per_s
        ));
    }
    if figures.top10_share > TOP10_SHARE {
        signals.push(format!(
            "the 10 busiest clients send {:.0} % of requests",
            figures.top10_share * 100.0
        ));
    }
    if figures.unknown_path_share > UNKNOWN_PATH_SHARE {
        signals.push(format!(
            "{:.0} % of requests go to paths the shop does not have",
            figures.unknown_path_share * 100.0
        ));
    }
    if figures.client_error_share > CLIENT_ERROR_SHARE {
        signals.push(format!(
            "{:.0} % of answers are client errors",
            figures.client_error_share * 100.0
        ));
    }
    let kind = if signals.len() >= 2 {
        SurgeKind::SuspectedAttack
    } else {
        SurgeKind::FlashCrowd
    };
    (kind, signals)
}

#[derive(Debug)]
struct Active {
    started_ms: i64,
    baseline: f64,
    verdict: Verdict,
    /// Evaluations in a row the rate has been back to normal.
    calm: u32,
    /// A different verdict and the evaluations in a row it has held.
    challenger: Option<(SurgeKind, u32)>,
}

/// Follows the traffic from one evaluation to the next.
#[derive(Debug, Default)]
pub(crate) struct SurgeDetector {
    settings: SurgeSettings,
    active: Option<Active>,
    /// Recent surges, as the times their traffic covered, kept out of the
    /// baseline.
    surges: VecDeque<(i64, i64)>,
    /// The last baseline computed, for when surges cover the whole minute.
    last_baseline: Option<f64>,
}

/// The 5-second rate lags: a surge's traffic shows this long before it is
/// detected and after it ends.
const RATE_LAG_MS: i64 = 6_000;

/// Evaluations a new verdict or calm must hold before it counts.
const HOLD: u32 = 3;

impl SurgeDetector {
    pub(crate) fn new(settings: SurgeSettings) -> SurgeDetector {
        SurgeDetector {
            settings,
            active: None,
            surges: VecDeque::new(),
            last_baseline: None,
        }
    }

    pub(crate) fn verdict(&self) -> Option<&Verdict> {
        self.active.as_ref().map(|a| &a.verdict)
    }

    pub(crate) fn alert(&self) -> Option<Alert> {
        self.active.as_ref().map(|a| alert(&a.verdict))
    }

    /// Looks at the latest figures; returns the alert transitions and, when
    /// a verdict was reached or changed, the verdict.
    pub(crate) fn observe(
        &mut self,
        store: &Store,
        now_ms: i64,
    ) -> (Vec<Transition>, Option<Verdict>) {
        let figures = match figures(store, now_ms) {
            Some(figures) => figures,
            // No gateway reports traffic (it stopped, or none is scraped):
            // a surge in progress counts that as calm, so it ends.
            None if self.active.is_some() => Figures::default(),
            None => return (Vec::new(), None),
        };
        let (kind, signals) = classify(&figures);
        let verdict = |started_ms, baseline| Verdict {
            kind,
            surge_started_ms: started_ms,
            decided_ms: now_ms,
            baseline_per_s: baseline,
            figures,
            attack_signals: signals.clone(),
        };
        let min_rate = self.settings.min_rate;
        let Some(active) = self.active.as_mut() else {
            while self
                .surges
                .front()
                .is_some_and(|(_, to)| *to < now_ms - 70_000)
            {
                self.surges.pop_front();
            }
            let Some(usual) = baseline(store, now_ms, &self.surges).or(self.last_baseline) else {
                return (Vec::new(), None);
            };
            self.last_baseline = Some(usual);
            if figures.requests_per_s >= min_rate.max(self.settings.factor * usual) {
                let decided = verdict(now_ms, usual);
                self.active = Some(Active {
                    started_ms: now_ms,
                    baseline: usual,
                    verdict: decided.clone(),
                    calm: 0,
                    challenger: None,
                });
                return (vec![Transition::Firing(alert(&decided))], Some(decided));
            }
            return (Vec::new(), None);
        };
        let still = min_rate.max(self.settings.factor / 2.0 * active.baseline);
        active.calm = if figures.requests_per_s < still {
            active.calm + 1
        } else {
            0
        };
        if active.calm >= HOLD {
            let ended = alert(&active.verdict);
            self.surges
                .push_back((active.started_ms - RATE_LAG_MS, now_ms + RATE_LAG_MS));
            self.active = None;
            return (vec![Transition::Resolved(ended, now_ms)], None);
        }
        if kind == active.verdict.kind {
            active.challenger = None;
            // Keep the figures current, the verdict's time unchanged.
            active.verdict.figures = figures;
            active.verdict.attack_signals = signals;
            return (Vec::new(), None);
        }
        let held = match active.challenger {
            Some((k, n)) if k == kind => n + 1,
            _ => 1,
        };
        active.challenger = Some((kind, held));
        if held < HOLD {
            return (Vec::new(), None);
        }
        let before = alert(&active.verdict);
        let changed = verdict(active.started_ms, active.baseline);
        active.verdict = changed.clone();
        active.challenger = None;
        (
            vec![
                Transition::Resolved(before, now_ms),
                Transition::Firing(alert(&changed)),
            ],
            Some(changed),
        )
    }
}

fn alert(verdict: &Verdict) -> Alert {
    let f = &verdict.figures;
    let labels: BTreeMap<String, String> = [
        ("alertname", RULE),
        ("severity", "warning"),
        ("verdict", verdict.kind.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let figure = |v: f64| format!("{v:.3}");
    let annotations: BTreeMap<String, String> = [
        ("summary", verdict.sentence()),
        ("verdict", verdict.words().to_string()),
        ("requests_per_s", figure(f.requests_per_s)),
        ("baseline_per_s", figure(verdict.baseline_per_s)),
        ("distinct_clients", figure(f.distinct_clients)),
        (
            "requests_per_client_per_s",
            figure(f.requests_per_client_per_s),
        ),
        ("top10_share", figure(f.top10_share)),
        ("unknown_path_share", figure(f.unknown_path_share)),
        ("client_error_share", figure(f.client_error_share)),
        ("attack_signals", verdict.attack_signals.join("; ")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    Alert {
        rule: RULE.to_string(),
        labels,
        annotations,
        state: AlertState::Firing,
        value: f.requests_per_s,
        active_since_ms: verdict.surge_started_ms,
        firing_since_ms: Some(verdict.decided_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SeriesKey;

    fn second(store: &mut Store, t: i64, rate: f64, distinct: f64, top10: f64, other: f64) {
        let at = t * 1000;
        let gauge = |name: &str| SeriesKey::new(name, [("target".into(), "gateway".into())]);
        let class = |name: &str, class: &str| {
            SeriesKey::new(
                name,
                [
                    ("target".to_string(), "gateway".to_string()),
                    ("class".to_string(), class.to_string()),
                ],
            )
        };
        store.push(gauge("gateway_traffic_requests_per_second"), at, rate);
        store.push(gauge("gateway_traffic_distinct_clients"), at, distinct);
        store.push(gauge("gateway_traffic_top10_share"), at, top10);
        store.push(class("gateway_traffic_path_share", "other"), at, other);
        store.push(
            class("gateway_traffic_answer_share", "client_error"),
            at,
            other,
        );
    }

    #[test]
    fn a_crowd_and_an_attack_get_their_verdicts_and_a_calm_resolves() {
        let mut store = Store::new(600_000, 100);
        let mut detector = SurgeDetector::new(SurgeSettings::default());
        for t in 0..60 {
            second(&mut store, t, 40.0, 30.0, 0.3, 0.0);
            assert!(detector.observe(&store, t * 1000).0.is_empty(), "{t}");
        }
        // 20× the usual, from a thousand clients on the shop's own pages.
        second(&mut store, 60, 800.0, 1000.0, 0.02, 0.01);
        let (transitions, verdict) = detector.observe(&store, 60_000);
        let verdict = verdict.expect("a verdict at once");
        assert_eq!(verdict.kind, SurgeKind::FlashCrowd);
        assert_eq!(verdict.baseline_per_s, 40.0);
        assert!(
            matches!(&transitions[..], [Transition::Firing(a)] if a.labels["verdict"] == "flash_crowd")
        );
        // Then a handful of clients hammering odd paths takes over: the
        // verdict changes after it has held for three evaluations.
        let mut changed = None;
        for t in 61..70 {
            second(&mut store, t, 900.0, 6.0, 1.0, 0.9);
            let (transitions, verdict) = detector.observe(&store, t * 1000);
            if let Some(verdict) = verdict {
                assert_eq!(
                    transitions.len(),
                    2,
                    "the old verdict resolves, the new fires"
                );
                changed = Some((t, verdict));
                break;
            }
        }
        let (t, verdict) = changed.expect("the verdict changed");
        assert_eq!(t, 63);
        assert_eq!(verdict.kind, SurgeKind::SuspectedAttack);
        assert_eq!(
            verdict.attack_signals.len(),
            4,
            "{:?}",
            verdict.attack_signals
        );
        assert_eq!(verdict.surge_started_ms, 60_000);
        // Back to normal: resolved after three calm evaluations.
        let mut resolved_at = None;
        for t in 64..70 {
            second(&mut store, t, 40.0, 30.0, 0.3, 0.0);
            if let [Transition::Resolved(_, at)] = detector.observe(&store, t * 1000).0[..] {
                resolved_at = Some(at);
                break;
            }
        }
        assert_eq!(resolved_at, Some(66_000));
        assert!(detector.verdict().is_none());
    }

    #[test]
    fn a_surge_soon_after_another_is_still_a_surge() {
        let mut store = Store::new(600_000, 100);
        let mut detector = SurgeDetector::new(SurgeSettings::default());
        let mut verdicts = Vec::new();
        // Calm, then surges of 25 s every 35 s: most of any minute is surge.
        for t in 0..150 {
            let surging = t >= 20 && (t - 20) % 35 < 25;
            let rate = if surging { 400.0 } else { 20.0 };
            second(&mut store, t, rate, rate, 0.05, 0.0);
            if let (_, Some(verdict)) = detector.observe(&store, t * 1000) {
                verdicts.push((t, verdict.baseline_per_s));
            }
        }
        let times: Vec<i64> = verdicts.iter().map(|v| v.0).collect();
        assert_eq!(times, [20, 55, 90, 125], "{verdicts:?}");
        assert!(verdicts.iter().all(|v| v.1 == 20.0), "{verdicts:?}");
    }

    #[test]
    fn a_surge_ends_when_the_gateway_stops_reporting() {
        let mut store = Store::new(600_000, 100);
        let mut detector = SurgeDetector::new(SurgeSettings::default());
        for t in 0..10 {
            second(&mut store, t, 20.0, 20.0, 0.1, 0.0);
            detector.observe(&store, t * 1000);
        }
        second(&mut store, 10, 500.0, 500.0, 0.02, 0.0);
        assert!(detector.observe(&store, 10_000).1.is_some());
        // Nothing more from the gateway.
        let ended = (11..20).find(|t| {
            matches!(
                detector.observe(&store, t * 1000).0[..],
                [Transition::Resolved(..)]
            )
        });
        assert!(ended.is_some(), "the surge never ended");
        assert!(detector.verdict().is_none());
    }

    #[test]
    fn busy_but_steady_traffic_is_no_surge() {
        let mut store = Store::new(600_000, 100);
        let mut detector = SurgeDetector::new(SurgeSettings::default());
        for t in 0..120 {
            second(
                &mut store,
                t,
                500.0 + (t % 7) as f64 * 20.0,
                400.0,
                0.05,
                0.0,
            );
            assert!(detector.observe(&store, t * 1000).1.is_none(), "{t}");
        }
        // A jump that stays under the minimum rate is not a surge either.
        let mut quiet = Store::new(600_000, 100);
        let mut detector = SurgeDetector::new(SurgeSettings::default());
        for t in 0..60 {
            second(
                &mut quiet,
                t,
                if t < 50 { 2.0 } else { 60.0 },
                5.0,
                0.5,
                0.0,
            );
            assert!(detector.observe(&quiet, t * 1000).1.is_none(), "{t}");
        }
    }
}
