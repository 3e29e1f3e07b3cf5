//! Alert rules: a selector, an aggregation over a window, a comparison with
//! a threshold, `for`, `keep_firing_for`, labels and templated annotations.
//! Evaluation takes the time as an argument, so `for`, `keep_firing_for`
//! and resolution are tested with a clock the test controls.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::store::{SeriesPoints, Store};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(rename = "rule", default)]
    pub rules: Vec<Rule>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub metric: String,
    /// Label matchers (equality).
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
    /// `last`, `rate`, `increase`, `avg`, `max`, or `quantile` (of a
    /// histogram's `_bucket` series; set `quantile`). Default `last`.
    #[serde(default)]
    pub aggregation: Aggregation,
    pub quantile: Option<f64>,
    /// Window of the aggregation, in seconds. Default 30.
    #[serde(default = "thirty")]
    pub window_s: f64,
    /// `>`, `<`, `>=` or `<=`.
    pub op: Op,
    pub threshold: f64,
    #[serde(default)]
    pub for_s: f64,
    #[serde(default)]
    pub keep_firing_for_s: f64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Templates may use `{{ $value }}` and `{{ $labels.NAME }}`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Makes the rule a ratio: the sum over series of this rule's
    /// aggregation divided by the same aggregation of `divide_by`.
    pub divide_by: Option<Divisor>,
}

/// The denominator of a ratio rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Divisor {
    pub metric: String,
    #[serde(default)]
    pub matchers: BTreeMap<String, String>,
}

/// How a rule turns a series' points in its window into one value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// The newest point.
    #[default]
    Last,
    /// A counter's increase per second over the window.
    Rate,
    /// A counter's increase over the window.
    Increase,
    Avg,
    Max,
    /// `histogram_quantile` of a histogram's `_bucket` series.
    Quantile,
}

/// The comparison with the threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Op {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "<")]
    Below,
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = "<=")]
    AtMost,
}

impl Op {
    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Above => value > threshold,
            Op::Below => value < threshold,
            Op::AtLeast => value >= threshold,
            Op::AtMost => value <= threshold,
        }
    }

    /// As written in a rule file and in PromQL.
    pub fn symbol(self) -> &'static str {
        match self {
            Op::Above => ">",
            Op::Below => "<",
            Op::AtLeast => ">=",
            Op::AtMost => "<=",
        }
    }
}

/// An alert's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    Firing,
}

fn thirty() -> f64 {
    30.0
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("rule file: {0}")]
    Parse(String),
    #[error("rule {rule:?}: {field}: {problem}")]
    Invalid {
        rule: String,
        field: &'static str,
        problem: &'static str,
    },
}

impl RuleFile {
    pub fn parse(text: &str) -> Result<RuleFile, RuleError> {
        let file: RuleFile = flashguard_telemetry::parse_toml(text).map_err(RuleError::Parse)?;
        for rule in &file.rules {
            rule.validate()?;
        }
        Ok(file)
    }
}

impl Rule {
    fn validate(&self) -> Result<(), RuleError> {
        let refuse = |field, problem| {
            Err(RuleError::Invalid {
                rule: self.name.clone(),
                field,
                problem,
            })
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return refuse("name", "must be letters, digits or '_'");
        }
        if self.metric.is_empty() {
            return refuse("metric", "names no metric");
        }
        match (self.aggregation, self.quantile) {
            (Aggregation::Quantile, Some(q)) if (0.0..=1.0).contains(&q) => {}
            (Aggregation::Quantile, _) => {
                return refuse("quantile", "must be set, between 0 and 1")
            }
            (_, None) => {}
            (_, Some(_)) => return refuse("quantile", "only goes with aggregation = \"quantile\""),
        }
        if !(self.window_s > 0.0 && self.window_s <= 3600.0) {
            return refuse("window_s", "must be above 0 and at most 3600");
        }
        if self.for_s < 0.0 || self.keep_firing_for_s < 0.0 {
            return refuse("for_s", "for_s and keep_firing_for_s must not be negative");
        }
        Ok(())
    }

    /// The rule's value for each series (or, for a quantile, each
    /// histogram), with its labels.
    pub fn values(&self, store: &Store, now_ms: i64) -> Vec<(BTreeMap<String, String>, f64)> {
        let Some(divisor) = &self.divide_by else {
            return self.aggregate(&self.metric, &self.matchers, store, now_ms);
        };
        let sum =
            |values: Vec<(BTreeMap<String, String>, f64)>| values.iter().map(|v| v.1).sum::<f64>();
        let numerator = sum(self.aggregate(&self.metric, &self.matchers, store, now_ms));
        let denominator = sum(self.aggregate(&divisor.metric, &divisor.matchers, store, now_ms));
        if denominator <= 0.0 {
            return Vec::new();
        }
        vec![(BTreeMap::new(), numerator / denominator)]
    }

    fn aggregate(
        &self,
        metric: &str,
        matchers: &BTreeMap<String, String>,
        store: &Store,
        now_ms: i64,
    ) -> Vec<(BTreeMap<String, String>, f64)> {
        let matchers: Vec<(String, String)> = matchers.clone().into_iter().collect();
        let start = now_ms - (self.window_s * 1000.0) as i64;
        let series = store.range(metric, &matchers, start, now_ms);
        if self.aggregation == Aggregation::Quantile {
            return quantiles(&series, self.quantile.unwrap_or(0.99));
        }
        series
            .iter()
            .filter_map(|s| {
                let points = &s.points;
                let value = match self.aggregation {
                    Aggregation::Last => points.last()?.1,
                    Aggregation::Avg => {
                        points.iter().map(|p| p.1).sum::<f64>() / points.len() as f64
                    }
                    Aggregation::Max => points.iter().map(|p| p.1).fold(f64::MIN, f64::max),
                    Aggregation::Increase => increase(points),
                    Aggregation::Rate => per_second(points)?,
                    Aggregation::Quantile => return None,
                };
                Some((s.key.labels.clone(), value))
            })
            .collect()
    }

    fn holds(&self, value: f64) -> bool {
        self.op.holds(value, self.threshold)
    }
}

/// A counter's steps between consecutive points: (time of the later point,
/// its increase, seconds between them), counting a drop as a restart.
pub(crate) fn steps(points: &[(i64, f64)]) -> impl Iterator<Item = (i64, f64, f64)> + '_ {
    points.windows(2).map(|w| {
        let step = if w[1].1 >= w[0].1 {
            w[1].1 - w[0].1
        } else {
            w[1].1
        };
        (w[1].0, step, (w[1].0 - w[0].0) as f64 / 1000.0)
    })
}

/// A counter's increase over the points.
pub(crate) fn increase(points: &[(i64, f64)]) -> f64 {
    steps(points).map(|s| s.1).sum()
}

/// A counter's average rate per second over the points; `None` when they
/// span no time.
pub(crate) fn per_second(points: &[(i64, f64)]) -> Option<f64> {
    let span = (points.last()?.0 - points.first()?.0) as f64 / 1000.0;
    (span > 0.0).then(|| increase(points) / span)
}

/// `histogram_quantile` over the buckets' increases in the window.
pub(crate) fn quantiles(series: &[SeriesPoints], q: f64) -> Vec<(BTreeMap<String, String>, f64)> {
    let mut histograms: HashMap<BTreeMap<String, String>, Vec<(f64, f64)>> = HashMap::new();
    for s in series {
        let mut labels = s.key.labels.clone();
        let Some(le) = labels.remove("le") else {
            continue;
        };
        let bound = if le == "+Inf" {
            f64::INFINITY
        } else {
            le.parse().unwrap_or(f64::NAN)
        };
        histograms
            .entry(labels)
            .or_default()
            .push((bound, increase(&s.points)));
    }
    histograms
        .into_iter()
        .filter_map(|(labels, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let total = buckets.last()?.1;
            if total <= 0.0 {
                return None;
            }
            let rank = q * total;
            let (mut lower, mut below) = (0.0, 0.0);
            for (bound, count) in buckets {
                if count >= rank {
                    if bound.is_infinite() {
                        return Some((labels, lower));
                    }
                    let share = if count > below {
                        (rank - below) / (count - below)
                    } else {
                        0.0
                    };
                    return Some((labels, lower + (bound - lower) * share));
                }
                lower = bound;
                below = count;
            }
            None
        })
        .collect()
}

/// An alert and its state, as `GET /api/alerts` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    pub rule: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: f64,
    pub active_since_ms: i64,
    pub firing_since_ms: Option<i64>,
}

/// A change worth telling someone about.
#[derive(Debug, Clone, PartialEq)]
pub enum Transition {
    Firing(Alert),
    Resolved(Alert, i64),
}

#[derive(Debug, Clone)]
struct Tracked {
    alert: Alert,
    /// When the condition last held.
    last_true_ms: i64,
}

/// Evaluates rules over time and keeps their alerts' states.
#[derive(Debug, Default)]
pub struct Evaluator {
    rules: Vec<Rule>,
    active: BTreeMap<(String, BTreeMap<String, String>), Tracked>,
}

impl Evaluator {
    pub fn new(rules: Vec<Rule>) -> Evaluator {
        Evaluator {
            rules,
            active: BTreeMap::new(),
        }
    }

    pub fn alerts(&self) -> Vec<Alert> {
        self.active.values().map(|t| t.alert.clone()).collect()
    }

    pub fn evaluate(&mut self, store: &Store, now_ms: i64) -> Vec<Transition> {
        let mut transitions = Vec::new();
        for rule in &self.rules {
            let mut seen = Vec::new();
            for (series_labels, value) in rule.values(store, now_ms) {
                if !rule.holds(value) {
                    continue;
                }
                let mut labels = series_labels.clone();
                labels.extend(rule.labels.clone());
                labels.insert("alertname".into(), rule.name.clone());
                let key = (rule.name.clone(), labels.clone());
                seen.push(key.clone());
                let annotations = rule
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.clone(), render(v, value, &labels)))
                    .collect();
                let tracked = self.active.entry(key).or_insert_with(|| Tracked {
                    alert: Alert {
                        rule: rule.name.clone(),
                        labels: labels.clone(),
                        annotations: BTreeMap::new(),
                        state: AlertState::Pending,
                        value,
                        active_since_ms: now_ms,
                        firing_since_ms: None,
                    },
                    last_true_ms: now_ms,
                });
                tracked.last_true_ms = now_ms;
                tracked.alert.value = value;
                tracked.alert.annotations = annotations;
                let held_ms = now_ms - tracked.alert.active_since_ms;
                let pending = tracked.alert.state == AlertState::Pending;
                if pending && held_ms as f64 >= rule.for_s * 1000.0 {
                    tracked.alert.state = AlertState::Firing;
                    tracked.alert.firing_since_ms = Some(now_ms);
                    transitions.push(Transition::Firing(tracked.alert.clone()));
                }
            }
            // Alerts of this rule whose condition no longer holds.
            let keep_ms = (rule.keep_firing_for_s * 1000.0) as i64;
            let gone: Vec<_> = self
                .active
                .iter()
                .filter(|(key, t)| {
                    key.0 == rule.name
                        && !seen.contains(key)
                        && !(t.alert.state == AlertState::Firing
                            && now_ms - t.last_true_ms < keep_ms)
                })
                .map(|(key, _)| key.clone())
                .collect();
            for key in gone {
                if let Some(tracked) = self.active.remove(&key) {
                    if tracked.alert.state == AlertState::Firing {
                        transitions.push(Transition::Resolved(tracked.alert, now_ms));
                    }
                }
            }
        }
        transitions
    }
}

/// Fills `{{ $value }}` and `{{ $labels.NAME }}`.
fn render(template: &str, value: f64, labels: &BTreeMap<String, String>) -> String {
    let mut out = template.replace("{{ $value }}", &format!("{value:.3}"));
    for (k, v) in labels {
        out = out.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SeriesKey;

    const RULES: &str = r#"
        [[rule]]
        name = "TargetDown"
        metric = "up"
        op = "<"
        threshold = 1
        for_s = 2
        keep_firing_for_s = 3
        labels = { severity = "page" }
        annotations = { summary = "{{ $labels.target }} is down (up = {{ $value }})" }
    "#;

    fn up(store: &mut Store, at_s: i64, value: f64) {
        store.push(
            SeriesKey::new("up", [("target".to_string(), "shop-2".to_string())]),
            at_s * 1000,
            value,
        );
    }

    #[test]
    fn pending_then_firing_after_for_then_resolved_after_keep_firing_for() {
        let rules = RuleFile::parse(RULES).unwrap().rules;
        let mut evaluator = Evaluator::new(rules);
        let mut store = Store::new(600_000, 100);
        let step = |store: &mut Store, evaluator: &mut Evaluator, t: i64, v: f64| {
            up(store, t, v);
            evaluator.evaluate(store, t * 1000)
        };
        assert!(step(&mut store, &mut evaluator, 0, 1.0).is_empty());
        assert!(step(&mut store, &mut evaluator, 1, 0.0).is_empty());
        assert_eq!(evaluator.alerts()[0].state, AlertState::Pending);
        assert!(
            step(&mut store, &mut evaluator, 2, 0.0).is_empty(),
            "for 2 s not reached"
        );
        let fired = step(&mut store, &mut evaluator, 3, 0.0);
        let Transition::Firing(alert) = &fired[0] else {
            panic!("{fired:?}")
        };
        assert_eq!(alert.annotations["summary"], "shop-2 is down (up = 0.000)");
        assert_eq!(alert.labels["severity"], "page");
        assert_eq!(alert.labels["alertname"], "TargetDown");
        // Back up: still firing for keep_firing_for (3 s), then resolved.
        assert!(step(&mut store, &mut evaluator, 4, 1.0).is_empty());
        assert!(step(&mut store, &mut evaluator, 5, 1.0).is_empty());
        assert_eq!(evaluator.alerts()[0].state, AlertState::Firing);
        let resolved = step(&mut store, &mut evaluator, 6, 1.0);
        assert!(
            matches!(resolved[0], Transition::Resolved(_, 6000)),
            "{resolved:?}"
        );
        assert!(evaluator.alerts().is_empty());
    }

    #[test]
    fn a_blip_shorter_than_for_never_fires() {
        let mut evaluator = Evaluator::new(RuleFile::parse(RULES).unwrap().rules);
        let mut store = Store::new(600_000, 100);
        for (t, v) in [(0, 1.0), (1, 0.0), (2, 1.0), (3, 1.0)] {
            up(&mut store, t, v);
            assert!(evaluator.evaluate(&store, t * 1000).is_empty());
        }
        assert!(evaluator.alerts().is_empty());
    }

    #[test]
    fn rates_and_histogram_quantiles() {
        let mut store = Store::new(600_000, 100);
        for t in 0..=10 {
            store.push(SeriesKey::new("req_total", []), t * 1000, (t * 50) as f64);
            for (le, per_s) in [("0.1", 90.0), ("0.5", 99.0), ("+Inf", 100.0)] {
                let key = SeriesKey::new("lat_bucket", [("le".to_string(), le.to_string())]);
                store.push(key, t * 1000, per_s * t as f64);
            }
        }
        let rule = |text: &str| RuleFile::parse(text).unwrap().rules.remove(0);
        let rate = rule("[[rule]]\nname = \"R\"\nmetric = \"req_total\"\naggregation = \"rate\"\nop = \">\"\nthreshold = 1\n");
        assert_eq!(rate.values(&store, 10_000)[0].1, 50.0);
        let p99 = rule("[[rule]]\nname = \"Q\"\nmetric = \"lat_bucket\"\naggregation = \"quantile\"\nquantile = 0.99\nwindow_s = 10\nop = \">\"\nthreshold = 1\n");
        let value = p99.values(&store, 10_000)[0].1;
        assert!((value - 0.5).abs() < 1e-9, "{value}");
    }

    #[test]
    fn a_ratio_divides_sums_and_prefixes_match() {
        let mut store = Store::new(600_000, 100);
        for t in 0..=10 {
            for (status, per_s) in [("200", 95.0), ("503", 4.0), ("502", 1.0)] {
                let key = SeriesKey::new("req_total", [("status".to_string(), status.to_string())]);
                store.push(key, t * 1000, per_s * t as f64);
            }
        }
        let rules = RuleFile::parse(
            "[[rule]]\nname = \"E\"\nmetric = \"req_total\"\nmatchers = { status = \"5*\" }\n\
             aggregation = \"increase\"\nwindow_s = 10\ndivide_by = { metric = \"req_total\" }\n\
             op = \">\"\nthreshold = 0.01\n",
        )
        .unwrap()
        .rules;
        let value = rules[0].values(&store, 10_000)[0].1;
        assert!((value - 0.05).abs() < 1e-9, "{value}");
    }

    #[test]
    fn a_bad_rule_is_refused_naming_the_rule_and_field() {
        let err = RuleFile::parse(
            "[[rule]]\nname = \"X\"\nmetric = \"up\"\nop = \"!=\"\nthreshold = 1\n",
        )
        .unwrap_err();
        // Refused as it is parsed: the field is named by its place.
        assert!(
            err.to_string()
                .starts_with("rule file: rule[0].op: unknown variant `!=`"),
            "{err}"
        );
        let err = RuleFile::parse(
            "[[rule]]\nname = \"Z\"\nmetric = \"up\"\naggregation = \"median\"\nop = \">\"\nthreshold = 1\n",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("rule file: rule[0].aggregation:"),
            "{err}"
        );
        let err = RuleFile::parse("[[rule]]\nname = \"Y\"\nmetric = \"up\"\naggregation = \"quantile\"\nop = \">\"\nthreshold = 1\n").unwrap_err();
        assert!(
            err.to_string().starts_with("rule \"Y\": quantile:"),
            "{err}"
        );
    }
}
