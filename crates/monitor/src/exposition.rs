//! Reading a target's `/metrics` (Prometheus text format 0.0.4 or
//! OpenMetrics) into series: every sample line becomes a series under its
//! own name (`x_total`, `x_bucket{le=...}`, `x_sum`, `x_count`), as
//! Prometheus stores them. A malformed exposition is refused with the line
//! that is wrong, rather than partly read.
//!
//! Written here rather than taken from prometheus-parse: that crate's
//! line pattern stops a label value at the first `}`, so a label such as
//! `route="/api/products/{sku}"` made every scrape of a shop fail.

use crate::store::SeriesKey;

/// The samples of one scrape, each labelled with the target's name.
pub(crate) fn parse(text: &str, target: &str) -> Result<Vec<(SeriesKey, f64)>, String> {
    let mut samples = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let refuse = |why: &str| {
            format!(
                "line {} is not a metric sample ({why}): {:?}",
                n + 1,
                truncate(line)
            )
        };
        let (name, mut labels, value) = sample(line).map_err(refuse)?;
        labels.push(("target".to_string(), target.to_string()));
        samples.push((SeriesKey::new(name, labels), value));
    }
    Ok(samples)
}

type Labels = Vec<(String, String)>;
type Sample<'a> = (&'a str, Labels, f64);

/// `name{label="value",...} value [timestamp]`.
fn sample(line: &str) -> Result<Sample<'_>, &'static str> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("no metric name");
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = label_set(inner)?;
        labels = parsed;
        rest = after;
    }
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("no value")?;
    let value = parse_value(value).ok_or("the value is not a number")?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<f64>()
            .map_err(|_| "the timestamp is not a number")?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp");
    }
    Ok((name, labels, value))
}

/// The labels up to the closing `}`, and what follows it.
fn label_set(mut text: &str) -> Result<(Labels, &str), &'static str> {
    let mut labels = Vec::new();
    loop {
        text = text.trim_start();
        if let Some(after) = text.strip_prefix('}') {
            return Ok((labels, after));
        }
        let (key, after) = text.split_once('=').ok_or("a label without '='")?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("a bad label name");
        }
        let after = after
            .trim_start()
            .strip_prefix('"')
            .ok_or("an unquoted label value")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value"),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated label value"),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.push((key.to_string(), value));
        text = after[end + 1..].trim_start();
        if let Some(after) = text.strip_prefix(',') {
            text = after;
        } else if !text.starts_with('}') {
            return Err("labels not separated by ','");
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "+inf" | "inf" => Some(f64::INFINITY),
        "-inf" => Some(f64::NEG_INFINITY),
        _ => text.parse().ok(),
    }
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
                    lat_sum 1.5\nlat_count 4 1700000000000\n# EOF\n";
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
    fn label_values_may_hold_braces_commas_and_escapes() {
        let text = "shop_http_requests_total{route=\"/api/products/{sku}\",method=\"GET\",status=\"200\"} 7\n\
                    odd{a=\"x,y=}\",b=\"say \\\"hi\\\"\\n\",} 1\n";
        let samples = parse(text, "shop-1").unwrap();
        assert_eq!(samples[0].0.labels["route"], "/api/products/{sku}");
        assert_eq!(samples[0].1, 7.0);
        assert_eq!(samples[1].0.labels["a"], "x,y=}");
        assert_eq!(samples[1].0.labels["b"], "say \"hi\"\n");
    }

    #[test]
    fn malformed_text_is_refused_with_the_line() {
        let err = parse("up 1\nthis is not prometheus\n", "x").unwrap_err();
        assert!(err.starts_with("line 2"), "{err}");
        let err = parse("<html>oops</html>", "x").unwrap_err();
        assert!(err.starts_with("line 1"), "{err}");
        for bad in [
            "x{a=\"1} 2",
            "x{a=1} 2",
            "x 1 2 3",
            "x{a=\"1\" b=\"2\"} 1",
            "x abc",
        ] {
            assert!(parse(bad, "x").is_err(), "{bad}");
        }
    }
}
