//! Reading a target's `/metrics` (Prometheus text or OpenMetrics) into
//! series, with prometheus-parse. That crate skips lines it cannot read;
//! a monitor must not, so every sample line is checked first and a
//! malformed exposition is refused with the line that is wrong.

use prometheus_parse::{LineInfo, Scrape, Value};

use crate::store::SeriesKey;

/// The samples of one scrape, each labelled with the target's name.
pub(crate) fn parse(text: &str, target: &str) -> Result<Vec<(SeriesKey, f64)>, String> {
    for (n, line) in text.lines().enumerate() {
        match LineInfo::parse(line) {
            LineInfo::Sample { value, .. } if value.parse::<f64>().is_ok() || is_special(value) => {
            }
            LineInfo::Empty | LineInfo::Doc { .. } | LineInfo::Type { .. } => {}
            LineInfo::Ignored if line.trim_start().starts_with('#') => {}
            _ => {
                return Err(format!(
                    "line {} is not a metric sample: {:?}",
                    n + 1,
                    truncate(line)
                ))
            }
        }
    }
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .map_err(|err| format!("unreadable exposition: {err}"))?;
    let mut samples = Vec::with_capacity(scrape.samples.len());
    for sample in scrape.samples {
        let labels = |extra: Option<(&str, String)>| {
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.push(("target".to_string(), target.to_string()));
            if let Some((k, v)) = extra {
                labels.push((k.to_string(), v));
            }
            labels
        };
        match &sample.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => {
                samples.push((SeriesKey::new(&sample.metric, labels(None)), *v));
            }
            Value::Histogram(buckets) => {
                let name = format!("{}_bucket", sample.metric);
                for bucket in buckets {
                    let le = if bucket.less_than.is_infinite() {
                        "+Inf".to_string()
                    } else {
                        bucket.less_than.to_string()
                    };
                    samples.push((
                        SeriesKey::new(&name, labels(Some(("le", le)))),
                        bucket.count,
                    ));
                }
            }
            Value::Summary(quantiles) => {
                for q in quantiles {
                    let labels = labels(Some(("quantile", q.quantile.to_string())));
                    samples.push((SeriesKey::new(&sample.metric, labels), q.count));
                }
            }
        }
    }
    Ok(samples)
}

fn is_special(value: &str) -> bool {
    matches!(
        value.to_ascii_lowercase().as_str(),
        "nan" | "+inf" | "-inf" | "inf"
    )
}

fn truncate(line: &str) -> String {
    line.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn counters_gauges_and_histograms_become_series() {
        let text = "# HELP shop_orders Order requests by result\n# TYPE shop_orders counter\n\
                    shop_orders_total{result=\"created\"} 12\n# TYPE up gauge\nup 1\n\
                    # TYPE lat histogram\nlat_bucket{le=\"0.5\"} 3\nlat_bucket{le=\"+Inf\"} 4\n\
                    lat_sum 1.5\nlat_count 4\n# EOF\n";
        let samples = parse(text, "shop-1").unwrap();
        let find = |name: &str, label: (&str, &str)| {
            samples
                .iter()
                .find(|(k, _)| {
                    k.name == name && k.labels.get(label.0).map(String::as_str) == Some(label.1)
                })
                .map(|(_, v)| *v)
        };
        assert_eq!(find("shop_orders_total", ("result", "created")), Some(12.0));
        assert_eq!(find("up", ("target", "shop-1")), Some(1.0));
        assert_eq!(find("lat_bucket", ("le", "+Inf")), Some(4.0));
        assert_eq!(find("lat_count", ("target", "shop-1")), Some(4.0));
    }

    #[test]
    fn malformed_text_is_refused_with_the_line() {
        let err = parse("up 1\nthis is not prometheus\n", "x").unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
        let err = parse("<html>oops</html>", "x").unwrap_err();
        assert!(err.starts_with("line 1"), "{err}");
    }
}
