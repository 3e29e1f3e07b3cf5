//! The postmortem draft: Markdown in the classic structure (Issue Summary,
//! Timeline, Root Cause and Resolution, Corrective and Preventative
//! Measures), filled from the incident's timeline, the drill's report when
//! a drill ran through it, and the gateway's counters.

use std::fmt::Write as _;

use flashguard_telemetry::EventKind;
use serde_json::Value;

use super::{Event, IncidentView};

/// What the metrics say about the incident's window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Evidence {
    /// The drill's figures, when a drill ran through the incident.
    pub(crate) drill: Option<Value>,
    /// Requests the gateway answered, and how many with 5xx.
    pub(crate) gateway_requests: f64,
    pub(crate) gateway_server_errors: f64,
    /// Requests shed (503) by the gateway and the shops.
    pub(crate) shed: f64,
    /// The most shed in one second, and the seconds with any shedding.
    pub(crate) peak_shed_rate: f64,
    pub(crate) shedding_s: f64,
    /// Seconds the host CPU alert was firing.
    pub(crate) cpu_saturated_s: f64,
    /// Whether a gateway stood in front of the shops (its metrics or its
    /// events were recorded).
    pub(crate) behind_gateway: bool,
    /// The highest request rate seen, and the primary shops serving.
    pub(crate) peak_rate: f64,
    pub(crate) primary_shops: usize,
    /// One shop's measured capacity (`flashguard plan`), when given.
    pub(crate) plan: Option<crate::config::CapacityPlan>,
}

pub(crate) fn clock(ms: i64) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return ms.to_string();
    };
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

fn date(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|at| format!("{} {} UTC", at.date(), clock(ms)))
        .unwrap_or_default()
}

fn number(value: &Value, field: &str) -> f64 {
    value[field].as_f64().unwrap_or(0.0)
}

/// The crash at the root of it, if a part died.
struct Crash<'a> {
    exited: &'a Event,
    chaos: Option<&'a Event>,
    taken_out: Option<&'a Event>,
    restarted: Option<&'a Event>,
    back_up: Option<&'a Event>,
}

fn crash(timeline: &[Event]) -> Option<Crash<'_>> {
    let exited = timeline.iter().find(|e| e.kind == EventKind::PartExited)?;
    let part = exited.subject.as_str();
    let after = |kind: EventKind, states: &[&str]| {
        timeline.iter().find(|e| {
            e.kind == kind
                && e.subject == part
                && e.at_ms >= exited.at_ms - 1_000
                && (states.is_empty()
                    || states.contains(&e.data["state"].as_str().unwrap_or_default()))
        })
    };
    Some(Crash {
        exited,
        chaos: timeline.iter().rev().find(|e| {
            e.kind == EventKind::Chaos && e.subject == part && e.at_ms <= exited.at_ms + 1_000
        }),
        taken_out: after(EventKind::BackendState, &["down", "ejected"]),
        restarted: after(EventKind::PartRestarted, &[]),
        back_up: timeline.iter().find(|e| {
            e.kind == EventKind::BackendState
                && e.subject == part
                && e.at_ms > exited.at_ms
                && e.data["state"] == "up"
        }),
    })
}

/// How fast people were told and answered, against the original outage
/// (an engineer notified 15 min after the alerts, the operations team an
/// hour after them, the site back after five hours).
fn response(out: &mut String, incident: &IncidentView, crash: Option<&Crash<'_>>) {
    let timeline = &incident.timeline;
    let on_call = |action: &str| {
        timeline
            .iter()
            .find(|e| e.kind == EventKind::OnCall && e.data["action"] == action)
    };
    let Some(page) = on_call("page") else {
        return;
    };
    let alert = timeline
        .iter()
        .find(|e| e.kind == EventKind::AlertFiring && e.at_ms >= incident.opened_ms - 1_000);
    let seconds = |from: i64, to: i64| format!("{:.1} s", (to - from) as f64 / 1000.0);
    let mut parts = Vec::new();
    if let (Some(crash), Some(alert)) = (crash, alert) {
        parts.push(format!(
            "detected {} after {} died",
            seconds(crash.exited.at_ms, alert.at_ms),
            crash.exited.subject
        ));
    }
    if let Some(alert) = alert {
        parts.push(format!(
            "first page {} after the alert",
            seconds(alert.at_ms, page.at_ms)
        ));
    }
    match on_call("escalate") {
        Some(escalated) => parts.push(format!(
            "escalated {} after the first page",
            seconds(page.at_ms, escalated.at_ms)
        )),
        None => parts.push("no escalation needed".into()),
    }
    match on_call("acknowledge") {
        Some(ack) => parts.push(format!(
            "acknowledged {} after the first page by {} ({})",
            seconds(page.at_ms, ack.at_ms),
            ack.data["by"].as_str().unwrap_or("someone"),
            ack.data["via"].as_str().unwrap_or("?")
        )),
        None => parts.push("never acknowledged".into()),
    }
    if let Some(resolved) = incident.resolved_ms {
        parts.push(format!(
            "resolved {} after it opened",
            seconds(incident.opened_ms, resolved)
        ));
    }
    let _ = writeln!(
        out,
        "- **Response:** {}. In the original outage: an engineer notified 15 min after the \
         alerts, the operations team 1 h after them, the site restored after 5 h.",
        parts.join(", ")
    );
}

pub(crate) fn render(incident: &IncidentView, evidence: &Evidence) -> String {
    let timeline = &incident.timeline;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Postmortem draft: incident {} — {}\n",
        incident.id, incident.title
    );
    let _ = writeln!(
        out,
        "_Drafted by flashguard's monitor from what it recorded; edit before sharing._\n"
    );

    // Issue Summary
    let _ = writeln!(out, "## Issue Summary\n");
    let ended = match incident.resolved_ms {
        Some(at) => format!("to {}", date(at)),
        None => "and still open".to_string(),
    };
    let _ = writeln!(
        out,
        "- **Duration:** {:.1} s, from {} {ended}.",
        incident.duration_s,
        date(incident.opened_ms)
    );
    impact(&mut out, evidence);
    let verdicts: Vec<&Event> = timeline
        .iter()
        .filter(|e| e.kind == EventKind::SurgeVerdict)
        .collect();
    if let Some(verdict) = verdicts.last() {
        let _ = writeln!(out, "- **Traffic:** {}.", verdict.summary);
    }
    let crash = crash(timeline);
    response(&mut out, incident, crash.as_ref());
    let _ = writeln!(
        out,
        "- **Root cause:** {}\n",
        root_cause(crash.as_ref(), &verdicts, evidence)
    );

    // Timeline
    let _ = writeln!(out, "## Timeline\n");
    let _ = writeln!(out, "All times UTC.\n");
    for event in timeline {
        let _ = writeln!(
            out,
            "- **{}** [{}] {}",
            clock(event.at_ms),
            event.source,
            event.summary
        );
    }
    if timeline.is_empty() {
        let _ = writeln!(out, "- (nothing recorded)");
    }
    let _ = writeln!(out);

    // Root Cause and Resolution
    let _ = writeln!(out, "## Root Cause and Resolution\n");
    let _ = writeln!(out, "{}\n", root_cause(crash.as_ref(), &verdicts, evidence));
    let _ = writeln!(out, "{}\n", resolution(incident, crash.as_ref()));

    // Corrective and Preventative Measures
    let _ = writeln!(out, "## Corrective and Preventative Measures\n");
    for measure in measures(crash.as_ref(), &verdicts, evidence) {
        let _ = writeln!(out, "- {measure}");
    }
    out
}

/// The waiting room's line, when customers waited in one.
fn waiting_room(out: &mut String, drill: &Value) {
    let room = &drill["waiting_room"];
    let waited = number(room, "customers_waited");
    if waited == 0.0 {
        return;
    }
    let overtakes = number(drill, "fairness_overtakes");
    let fairness = if overtakes == 0.0 {
        "fair: nobody was let in after someone who arrived more than a second later".to_string()
    } else {
        format!("{overtakes:.0} customers were let in after someone who arrived more than a second later")
    };
    let _ = writeln!(
        out,
        "- **Waiting room:** {waited:.0} customers waited, median {:.1} s, longest {:.1} s; \
         {fairness}; {:.0} were told the sale sold out while waiting{}, {:.0} gave up waiting, \
         {:.0} orders bypassed the line.",
        number(&room["wait_s"], "p50"),
        number(&room["wait_s"], "max"),
        number(room, "told_sold_out"),
        match number(room, "told_sale_ended") {
            0.0 => String::new(),
            ended => format!(" and {ended:.0} that it had ended"),
        },
        number(room, "gave_up_waiting"),
        number(drill, "bypassed_orders"),
    );
}

fn impact(out: &mut String, evidence: &Evidence) {
    if let Some(drill) = &evidence.drill {
        let total = number(drill, "requests_total");
        let errors = number(drill, "requests_errors");
        let _ = writeln!(
            out,
            "- **Impact on requests:** {errors:.0} of {total:.0} customer requests failed \
             ({:.2} %; availability {:.4}), measured by the drill's customers; the longest \
             run of errors after a chaos action lasted {:.0} ms.",
            if total > 0.0 {
                errors / total * 100.0
            } else {
                0.0
            },
            number(drill, "availability"),
            number(drill, "failover_gap_ms"),
        );
        let _ = writeln!(
            out,
            "- **Orders affected:** {:.0} lost acknowledged orders, {:.0} units oversold, \
             {:.0} duplicate idempotency keys (the oracle's check of the store); {:.0} orders \
             were acknowledged.",
            number(drill, "lost_orders"),
            number(drill, "oversold_units"),
            number(drill, "duplicate_keys"),
            number(drill, "orders_acknowledged"),
        );
        let _ = writeln!(
            out,
            "- **Customers affected:** {:.0} customers gave up before their order was answered.",
            number(drill, "customers_gave_up"),
        );
        waiting_room(out, drill);
    }
    if evidence.gateway_requests > 0.0 {
        let _ = writeln!(
            out,
            "- **At the gateway:** {:.0} of {:.0} requests answered with 5xx ({:.2} %); {:.0} \
             requests shed with 503 by the gateway or the shops.",
            evidence.gateway_server_errors,
            evidence.gateway_requests,
            evidence.gateway_server_errors / evidence.gateway_requests * 100.0,
            evidence.shed,
        );
    } else if evidence.drill.is_none() {
        let _ = writeln!(
            out,
            "- **Impact:** no request figures were recorded for this window."
        );
    }
}

fn failed_requests(evidence: &Evidence) -> String {
    match &evidence.drill {
        Some(drill) => format!(
            "{:.0} customer requests failed",
            number(drill, "requests_errors")
        ),
        None => format!(
            "{:.0} requests were answered with 5xx at the gateway",
            evidence.gateway_server_errors
        ),
    }
}

fn root_cause(crash: Option<&Crash<'_>>, verdicts: &[&Event], evidence: &Evidence) -> String {
    if let Some(crash) = crash {
        let part = &crash.exited.subject;
        let how = crash.exited.data["cause"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| crash.exited.summary.clone());
        let mut text = format!("{part} {how} at {}", clock(crash.exited.at_ms));
        if let Some(chaos) = crash.chaos {
            let _ = write!(text, " (a chaos action: {})", chaos.summary);
        }
        match crash.taken_out {
            Some(out) => {
                let _ = write!(
                    text,
                    "; the gateway took it out of rotation ({}) after {} ms",
                    out.data["state"].as_str().unwrap_or("down"),
                    (out.at_ms - crash.exited.at_ms).max(0)
                );
            }
            None => {
                let back = crash
                    .restarted
                    .map(|r| (r.at_ms - crash.exited.at_ms).max(0));
                match (evidence.behind_gateway, back) {
                    (true, Some(ms)) => {
                        let _ = write!(
                            text,
                            "; it was back {ms} ms later, before the gateway's health checks marked it down"
                        );
                    }
                    (true, None) => text.push_str("; the gateway recorded no state change for it"),
                    (false, Some(ms)) => {
                        let _ = write!(
                            text,
                            "; no gateway stood in front of it, so customers met the dead shop until it was restarted {ms} ms later"
                        );
                    }
                    (false, None) => text.push_str(
                        "; no gateway stood in front of it, and it was not restarted within the incident",
                    ),
                }
            }
        }
        let _ = write!(text, "; {}.", failed_requests(evidence));
        return text;
    }
    if let Some(verdict) = verdicts.last() {
        return format!(
            "a traffic surge, {}; {}.",
            verdict.summary,
            failed_requests(evidence)
        );
    }
    if evidence.cpu_saturated_s > 0.0 {
        return format!(
            "the host's CPU was saturated for {:.0} s; {}.",
            evidence.cpu_saturated_s,
            failed_requests(evidence)
        );
    }
    "no crash or surge was recorded; see the alerts in the timeline.".to_string()
}

fn resolution(incident: &IncidentView, crash: Option<&Crash<'_>>) -> String {
    let mut text = String::new();
    if let Some(crash) = crash {
        let part = &crash.exited.subject;
        match crash.restarted {
            Some(restart) => {
                let _ = write!(
                    text,
                    "{part} was restarted at {} ({:.1} s after it died)",
                    clock(restart.at_ms),
                    (restart.at_ms - crash.exited.at_ms) as f64 / 1000.0
                );
            }
            None => {
                let _ = write!(text, "{part} was not restarted within the incident");
            }
        }
        if let Some(up) = crash.back_up {
            let _ = write!(
                text,
                " and the gateway sent it traffic again from {}",
                clock(up.at_ms)
            );
        }
        text.push_str(". ");
    }
    match incident.resolved_ms {
        Some(at) => {
            let _ = write!(
                text,
                "Every alert had resolved by {} and stayed quiet, which closed the incident.",
                clock(at)
            );
        }
        None => text
            .push_str("The incident is still open: alerts are firing or were quiet too briefly."),
    }
    text
}

/// Offered load beyond what was served: by how much, for how long, and the
/// pool that would have served the peak.
fn capacity_measure(evidence: &Evidence) -> String {
    let served = (evidence.peak_rate - evidence.peak_shed_rate).max(1.0);
    let over = evidence.peak_rate / served;
    let shops = evidence.primary_shops.max(1);
    if over > 1.05 {
        // From the measured capacity of one shop when there is a plan,
        // with one to spare; else by the ratio of offered to served.
        let (needed, how) = match evidence.plan {
            Some(plan) => (
                (evidence.peak_rate / plan.shop_capacity_requests_per_s).ceil() as usize + 1,
                format!(
                    " (the capacity plan: one shop at {} core answers {:.0} req/s; the peak needs {:.0} shops, plus one to spare)",
                    plan.shop_cpu,
                    plan.shop_capacity_requests_per_s,
                    (evidence.peak_rate / plan.shop_capacity_requests_per_s).ceil()
                ),
            ),
            None => ((shops as f64 * over).ceil() as usize, String::new()),
        };
        format!(
            "Offered load exceeded capacity {over:.1}× for {:.0} s ({:.0} requests shed with 503 at the peak of {:.0} req/s): raise the shop pool from {shops} to {needed} primaries{how} before the next sale.",
            evidence.shedding_s, evidence.shed, evidence.peak_rate
        )
    } else {
        format!(
            "{:.0} requests were shed with 503 over {:.0} s, a small share of the peak of {:.0} req/s: watch it; one more shop would remove it.",
            evidence.shed, evidence.shedding_s, evidence.peak_rate
        )
    }
}

fn measures(crash: Option<&Crash<'_>>, verdicts: &[&Event], evidence: &Evidence) -> Vec<String> {
    let mut measures = Vec::new();
    if let Some(crash) = crash {
        let part = &crash.exited.subject;
        if crash.chaos.is_some() {
            measures.push(format!(
                "The crash of {part} was injected by the drill: keep rehearsing it before each sale."
            ));
        } else {
            let signal = crash.exited.data["signal"].as_str().unwrap_or_default();
            let hint = if signal == "SIGKILL" {
                " (SIGKILL usually means the kernel's OOM killer or an operator: check the kernel log and the part's memory)"
            } else {
                ""
            };
            measures.push(format!("Find why {part} died{hint}."));
        }
        if evidence.primary_shops > 0 {
            measures.push(format!(
                "Keep enough primaries that losing one still carries the peak: with {} primary shops, losing one leaves {} to carry the peak of {:.0} req/s, about {:.0} req/s each.",
                evidence.primary_shops,
                evidence.primary_shops.saturating_sub(1).max(1),
                evidence.peak_rate,
                evidence.peak_rate / evidence.primary_shops.saturating_sub(1).max(1) as f64
            ));
        }
    }
    let gap = evidence
        .drill
        .as_ref()
        .map_or(0.0, |d| number(d, "failover_gap_ms"));
    if !evidence.behind_gateway && crash.is_some() {
        measures.push(
            "Customers reached the shop directly: put the gateway in front of at least two primary shops and a backup (`flashguard up`), so a crash is routed around instead of answered with errors."
                .to_string(),
        );
    } else if gap > 0.0 {
        measures.push(format!(
            "Customers saw errors for {gap:.0} ms after the chaos action: shorten the gateway's health-check interval and fall, and send orders with an Idempotency-Key so the gateway can retry them."
        ));
    }
    if evidence.shed > 0.0 {
        measures.push(capacity_measure(evidence));
    }
    if evidence.cpu_saturated_s > 0.0 {
        measures.push(format!(
            "The host's CPU was saturated for {:.0} s: give the sale more cores or a second host before the next event.",
            evidence.cpu_saturated_s
        ));
    }
    if let Some(verdict) = verdicts.last() {
        if verdict.data["kind"] == "suspected_attack" {
            measures.push(
                "Traffic looked like an attack: enable the gateway's per-client rate limit (`[rate_limit]`) and block the busiest addresses at the edge."
                    .to_string(),
            );
        } else {
            measures.push(
                "The surge was a flash crowd, not an attack: do not block clients; plan capacity for this peak instead."
                    .to_string(),
            );
        }
    }
    if measures.is_empty() {
        measures.push(
            "Nothing in the recorded signals calls for a change; review the alerts that fired."
                .to_string(),
        );
    }
    measures
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(
        at_ms: i64,
        source: &str,
        kind: &str,
        subject: &str,
        summary: &str,
        data: Value,
    ) -> Event {
        let kind = kind.parse().expect("a known kind");
        Event::new(at_ms, source, kind, subject, summary, data)
    }

    #[test]
    fn a_crash_is_named_with_its_signal_time_and_failover() {
        let t0 = 1_700_000_000_000;
        let incident = IncidentView {
            id: 7,
            title: "BackendDown: backend shop-2 is down at the gateway".into(),
            status: "resolved",
            opened_ms: t0 + 900,
            resolved_ms: Some(t0 + 20_000),
            duration_s: 19.1,
            timeline: vec![
                event(
                    t0,
                    "stack",
                    "chaos",
                    "shop-2",
                    "drill: kill shop-2",
                    json!({"action": "kill"}),
                ),
                event(
                    t0 + 3,
                    "stack",
                    "part_exited",
                    "shop-2",
                    "shop-2 killed by SIGKILL",
                    json!({"cause": "killed by SIGKILL", "signal": "SIGKILL"}),
                ),
                event(
                    t0 + 243,
                    "gateway",
                    "backend_state",
                    "shop-2",
                    "shop-2 down",
                    json!({"state": "down"}),
                ),
                event(
                    t0 + 8_000,
                    "stack",
                    "part_restarted",
                    "shop-2",
                    "shop-2 restarted",
                    json!({}),
                ),
                event(
                    t0 + 8_600,
                    "gateway",
                    "backend_state",
                    "shop-2",
                    "shop-2 up",
                    json!({"state": "up"}),
                ),
            ],
        };
        let evidence = Evidence {
            drill: Some(
                json!({"requests_total": 12000, "requests_errors": 0, "availability": 1.0,
                "failover_gap_ms": 0, "orders_acknowledged": 2999, "customers_gave_up": 0,
                "lost_orders": 0, "oversold_units": 0, "duplicate_keys": 0}),
            ),
            peak_rate: 600.0,
            primary_shops: 3,
            behind_gateway: true,
            ..Evidence::default()
        };
        let text = render(&incident, &evidence);
        for needed in [
            "## Issue Summary",
            "## Timeline",
            "## Root Cause and Resolution",
            "## Corrective and Preventative Measures",
            "shop-2 killed by SIGKILL at 22:13:20.003",
            "after 240 ms",
            "0 customer requests failed",
            "0 of 12000 customer requests failed",
            "restarted at 22:13:28.000",
            "injected by the drill",
        ] {
            assert!(text.contains(needed), "missing {needed:?} in\n{text}");
        }
    }

    #[test]
    fn shedding_at_the_peak_suggests_the_pool_that_would_have_served_it() {
        let evidence = Evidence {
            shed: 36_000.0,
            peak_rate: 2_000.0,
            peak_shed_rate: 1_500.0,
            shedding_s: 90.0,
            primary_shops: 3,
            ..Evidence::default()
        };
        let text = capacity_measure(&evidence);
        assert!(
            text.starts_with("Offered load exceeded capacity 4.0× for 90 s"),
            "{text}"
        );
        assert!(text.contains("from 3 to 12 primaries"), "{text}");
    }

    #[test]
    fn without_a_gateway_the_draft_says_so_and_suggests_one() {
        let t0 = 1_700_000_000_000;
        let incident = IncidentView {
            id: 1,
            title: "TargetDown: shop-1 is down".into(),
            status: "open",
            opened_ms: t0 + 1_000,
            resolved_ms: None,
            duration_s: 10.0,
            timeline: vec![
                event(
                    t0,
                    "stack",
                    "part_exited",
                    "shop-1",
                    "shop-1 killed by SIGKILL",
                    json!({"cause": "killed by SIGKILL", "signal": "SIGKILL"}),
                ),
                event(
                    t0 + 8_000,
                    "stack",
                    "part_restarted",
                    "shop-1",
                    "shop-1 restarted",
                    json!({}),
                ),
            ],
        };
        let evidence = Evidence {
            drill: Some(
                json!({"requests_total": 100, "requests_errors": 90, "failover_gap_ms": 8000}),
            ),
            ..Evidence::default()
        };
        let text = render(&incident, &evidence);
        assert!(text.contains("no gateway stood in front of it, so customers met the dead shop until it was restarted 8000 ms later"), "{text}");
        assert!(
            text.contains("put the gateway in front of at least two primary shops"),
            "{text}"
        );
        assert!(!text.contains("health checks marked it down"), "{text}");
    }

    #[test]
    fn the_pool_is_sized_from_the_plan_when_there_is_one() {
        let shed = Evidence {
            peak_rate: 3_000.0,
            peak_shed_rate: 1_000.0,
            shed: 5_000.0,
            shedding_s: 10.0,
            primary_shops: 3,
            ..Evidence::default()
        };
        // By the ratio: 3,000 offered, 2,000 served, 3 shops: 5.
        let by_ratio = capacity_measure(&shed);
        assert!(
            by_ratio.contains("from 3 to 5 primaries before"),
            "{by_ratio}"
        );
        // By the plan: 3,000 req/s at 1,280 a shop is 3 shops, and one to spare.
        let planned = Evidence {
            plan: Some(crate::config::CapacityPlan {
                shop_capacity_requests_per_s: 1_280.0,
                shop_cpu: 0.25,
            }),
            ..shed
        };
        let text = capacity_measure(&planned);
        assert!(text.contains("from 3 to 4 primaries"), "{text}");
        assert!(
            text.contains("one shop at 0.25 core answers 1280 req/s; the peak needs 3 shops, plus one to spare"),
            "{text}"
        );
    }
}
