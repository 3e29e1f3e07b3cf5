//! `flashguard monitor --export-rules`: the same rules as a Prometheus rule
//! file (YAML, PromQL), for operators who already run Prometheus. Strings
//! are written as double-quoted scalars, which YAML reads as JSON strings.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::rules::{Aggregation, Rule};

pub fn prometheus_rules(rules: &[Rule]) -> String {
    let mut out = String::from("groups:\n  - name: flashguard\n    rules:\n");
    for rule in rules {
        let _ = writeln!(out, "      - alert: {}", quote(&rule.name));
        let _ = writeln!(out, "        expr: {}", quote(&expr(rule)));
        if rule.for_s > 0.0 {
            let _ = writeln!(out, "        for: {}", duration(rule.for_s));
        }
        if rule.keep_firing_for_s > 0.0 {
            let _ = writeln!(
                out,
                "        keep_firing_for: {}",
                duration(rule.keep_firing_for_s)
            );
        }
        map(&mut out, "labels", &rule.labels);
        map(&mut out, "annotations", &rule.annotations);
    }
    out
}

fn map(out: &mut String, name: &str, entries: &BTreeMap<String, String>) {
    if entries.is_empty() {
        return;
    }
    let _ = writeln!(out, "        {name}:");
    for (k, v) in entries {
        let _ = writeln!(out, "          {k}: {}", quote(v));
    }
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}

/// Prometheus durations take whole milliseconds at least.
fn duration(seconds: f64) -> String {
    format!("{}ms", (seconds * 1000.0).round() as u64)
}

fn selector(metric: &str, matchers: &BTreeMap<String, String>) -> String {
    if matchers.is_empty() {
        return metric.to_string();
    }
    let parts: Vec<String> = matchers
        .iter()
        .map(|(k, v)| match v.strip_suffix('*') {
            Some(prefix) => format!("{k}=~{}", quote(&format!("{}.*", regex_escape(prefix)))),
            None => format!("{k}={}", quote(v)),
        })
        .collect();
    format!("{metric}{{{}}}", parts.join(","))
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}

fn aggregated(rule: &Rule, metric: &str, matchers: &BTreeMap<String, String>) -> String {
    let s = selector(metric, matchers);
    let w = duration(rule.window_s);
    match rule.aggregation {
        Aggregation::Rate => format!("rate({s}[{w}])"),
        Aggregation::Increase => format!("increase({s}[{w}])"),
        Aggregation::Avg => format!("avg_over_time({s}[{w}])"),
        Aggregation::Max => format!("max_over_time({s}[{w}])"),
        Aggregation::Quantile => format!(
            "histogram_quantile({}, rate({s}[{w}]))",
            rule.quantile.unwrap_or(0.99)
        ),
        Aggregation::Last => s,
    }
}

fn expr(rule: &Rule) -> String {
    let value = match &rule.divide_by {
        None => aggregated(rule, &rule.metric, &rule.matchers),
        Some(divisor) => format!(
            "sum({}) / sum({})",
            aggregated(rule, &rule.metric, &rule.matchers),
            aggregated(rule, &divisor.metric, &divisor.matchers)
        ),
    };
    format!("{value} {} {}", rule.op.symbol(), rule.threshold)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleFile;

    #[test]
    fn rules_become_promql() {
        let rules = RuleFile::parse(crate::DEFAULT_RULES).unwrap().rules;
        let yaml = prometheus_rules(&rules);
        assert!(yaml.contains(r#"expr: "up < 1""#), "{yaml}");
        assert!(
            yaml.contains(r#"sum(increase(gateway_requests_total{status=~\"5.*\"}[10000ms])) / sum(increase(gateway_requests_total[10000ms])) > 0.05"#),
            "{yaml}"
        );
        assert!(yaml.contains("histogram_quantile(0.99, rate(gateway_request_duration_seconds_bucket[10000ms])) > 0.5"));
    }
}
