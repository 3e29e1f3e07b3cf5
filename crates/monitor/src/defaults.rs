//! The rules the monitor runs when given none. Thresholds are chosen for a
//! flash sale on one machine; `for` is short because every alert must leave
//! within 3 s of its threshold being crossed (collection each second).

/// The default rule file, documented in the README.
pub const DEFAULT_RULES: &str = r#"
# The host is out of CPU: latency will follow.
[[rule]]
name = "HostCpuSaturated"
metric = "host_cpu_usage_ratio"
aggregation = "avg"
window_s = 5
op = ">"
threshold = 0.9
for_s = 1
labels = { severity = "warning" }
annotations = { summary = "host CPU at {{ $value }} of capacity over 5 s" }

# More runnable work than cores, sustained.
[[rule]]
name = "HostLoadHigh"
metric = "host_load1_per_core"
op = ">"
threshold = 2
for_s = 1
labels = { severity = "warning" }
annotations = { summary = "load per core {{ $value }}" }

# Under 256 MiB available: the kernel is about to start killing.
[[rule]]
name = "HostMemoryLow"
metric = "host_memory_available_bytes"
op = "<"
threshold = 268435456
for_s = 1
labels = { severity = "page" }
annotations = { summary = "only {{ $value }} bytes of memory available" }

# A part does not answer its /metrics.
[[rule]]
name = "TargetDown"
metric = "up"
op = "<"
threshold = 1
for_s = 1
labels = { severity = "page" }
annotations = { summary = "{{ $labels.target }} is down" }

# The gateway has taken a backend out (down or ejected).
[[rule]]
name = "BackendDown"
metric = "gateway_backend_state"
matchers = { state = "down" }
op = ">="
threshold = 1
for_s = 0
labels = { severity = "page" }
annotations = { summary = "backend {{ $labels.backend }} is down at the gateway" }

# More than 5 % of the gateway's answers are 5xx over 10 s.
[[rule]]
name = "ErrorRatioHigh"
metric = "gateway_requests_total"
matchers = { status = "5*" }
aggregation = "increase"
window_s = 10
divide_by = { metric = "gateway_requests_total" }
op = ">"
threshold = 0.05
for_s = 1
labels = { severity = "page" }
annotations = { summary = "{{ $value }} of requests failed over 10 s" }

# Customers wait: p99 above half a second at the gateway.
[[rule]]
name = "LatencyP99High"
metric = "gateway_request_duration_seconds_bucket"
aggregation = "quantile"
quantile = 0.99
window_s = 10
op = ">"
threshold = 0.5
for_s = 1
labels = { severity = "warning" }
annotations = { summary = "p99 {{ $value }} s at {{ $labels.target }}" }

# Requests are being shed (by design, but a sign the tier is full).
[[rule]]
name = "RequestsShed"
metric = "gateway_shed_total"
aggregation = "rate"
window_s = 5
op = ">"
threshold = 1
for_s = 0
labels = { severity = "warning" }
annotations = { summary = "{{ $labels.target }} sheds {{ $value }} requests/s ({{ $labels.reason }})" }

# A sale item is nearly sold out: time to tell customers, or restock.
[[rule]]
name = "StockNearlyGone"
metric = "shop_stock_remaining_ratio"
op = "<"
threshold = 0.1
for_s = 0
labels = { severity = "info" }
annotations = { summary = "{{ $labels.sku }} has {{ $value }} of its stock left" }

# Shops shedding orders: the sale is beyond capacity.
[[rule]]
name = "ShopShedding"
metric = "shop_requests_shed_total"
aggregation = "rate"
window_s = 5
op = ">"
threshold = 1
for_s = 0
labels = { severity = "warning" }
annotations = { summary = "{{ $labels.target }} sheds {{ $value }} requests/s" }

# Someone is guessing an admin token (any part's admin API counts them;
# past five in a row a client is held back with 429).
[[rule]]
name = "AdminAuthFailures"
metric = "admin_auth_failures_total"
aggregation = "increase"
window_s = 60
op = ">"
threshold = 10
for_s = 0
labels = { severity = "warning" }
annotations = { summary = "{{ $value }} wrong admin tokens at {{ $labels.target }} within a minute" }

# Answers cut off mid-way: clients that take none of their answer for
# timeouts.client_send_ms (slow readers holding connections to the shops, or an
# attack made of them), or a shop silent mid-body for timeouts.upstream_ms.
[[rule]]
name = "AnswersCut"
metric = "gateway_answers_cut_total"
aggregation = "increase"
window_s = 60
op = ">"
threshold = 10
for_s = 0
labels = { severity = "warning" }
annotations = { summary = "{{ $value }} answers cut at {{ $labels.target }} within a minute ({{ $labels.reason }})" }

# The gateway frozen again and again: its serving threads did not run for
# 5 ms or more, over once a second (its CPU quota spent, or its cores given
# to other processes). Customers wait through every stall; it needs more
# CPU than it gets. One stall is counted per thread, and a gateway in no
# such trouble counts next to none.
[[rule]]
name = "GatewayCpuStarved"
metric = "gateway_serving_stalls_total"
aggregation = "increase"
window_s = 60
op = ">"
threshold = 60
for_s = 0
labels = { severity = "warning" }
annotations = { summary = "{{ $labels.target }} stalled {{ $value }} times within a minute: it needs more CPU than its quota gives" }

# A certificate the gateway serves expires within 14 days: renew it (the
# gateway picks the new files up by itself).
[[rule]]
name = "CertificateExpiresSoon"
metric = "gateway_tls_certificate_expiry_seconds"
op = "<"
threshold = 1209600
for_s = 0
labels = { severity = "warning" }
annotations = { summary = "the certificate for {{ $labels.name }} expires in {{ $value }} s" }
"#;

#[cfg(test)]
mod tests {
    use super::DEFAULT_RULES;
    use crate::rules::RuleFile;

    #[test]
    fn the_default_rules_are_valid() {
        let rules = RuleFile::parse(DEFAULT_RULES).unwrap().rules;
        assert!(rules.len() >= 10);
        assert!(
            rules.iter().all(|r| r.for_s <= 1.0),
            "alerts must leave within 3 s"
        );
    }
}
