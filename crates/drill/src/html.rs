//! report.html: one self-contained file (inline CSS, charts as inline SVG,
//! no network) a person can open. A few lines of script only record that
//! the page rendered and whether any script error happened, for the test
//! that opens it in headless Chromium.

use maud::{html, Markup, PreEscaped, DOCTYPE};

use crate::report::Report;

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
const PAD: f64 = 36.0;
const COLORS: [&str; 6] = [
    "#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2",
];

/// A table of figures above the reports (a capacity plan above the step
/// load it was measured with): a heading, then label and value rows.
#[derive(Debug, Clone, Default)]
pub struct Preface {
    pub heading: String,
    pub rows: Vec<(String, String)>,
}

/// One or more reports (a rehearsal and its baseline) side by side.
pub(crate) fn render(reports: &[(&str, &Report)], preface: Option<&Preface>) -> String {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { "flashguard report" }
                style { (PreEscaped(CSS)) }
            }
            body data-rendered="no" {
                h1 { "flashguard report" }
                @if let Some(preface) = preface {
                    h2 { (preface.heading) }
                    table.preface { @for (label, value) in &preface.rows {
                        tr { th { (label) } td { (value) } } } }
                }
                div.columns {
                    @for (label, report) in reports {
                        section.report { (one(label, report)) }
                    }
                }
                script { (PreEscaped(PROBE)) }
            }
        }
    };
    page.into_string()
}

const CSS: &str = "body{font-family:system-ui,sans-serif;margin:24px;color:#111}\
.columns{display:flex;gap:32px;flex-wrap:wrap}.report{flex:1;min-width:660px}\
.pass{color:#15803d}.fail{color:#b91c1c}table{border-collapse:collapse;margin:8px 0 16px}\
td,th{border-bottom:1px solid #ddd;padding:4px 10px;text-align:left}\
svg{background:#fafafa;border:1px solid #e5e5e5;margin-bottom:4px}.legend span{margin-right:14px}";

const PROBE: &str =
    "window.__errors=0;window.addEventListener('error',function(){window.__errors++;});\
document.addEventListener('DOMContentLoaded',function(){document.body.dataset.rendered='yes';\
document.body.dataset.charts=String(document.querySelectorAll('svg.chart').length);\
document.body.dataset.errors=String(window.__errors);});";

fn one(label: &str, report: &Report) -> Markup {
    let seconds: Vec<f64> = report.timeline.iter().map(|s| s.second as f64).collect();
    let series = |f: &dyn Fn(&crate::record::Second) -> f64| -> Vec<f64> {
        report.timeline.iter().map(f).collect()
    };
    let mut kinds: Vec<&String> = report
        .timeline
        .iter()
        .flat_map(|s| s.errors.keys())
        .collect();
    kinds.sort();
    kinds.dedup();
    let errors: Vec<(String, Vec<f64>)> = kinds
        .iter()
        .map(|kind| {
            let values = series(&|s| s.errors.get(*kind).copied().unwrap_or(0) as f64);
            (kind.to_string(), values)
        })
        .collect();
    // Marked on every chart: the chaos, and a sale's opening (unless at
    // the start) and closing.
    let mut chaos: Vec<(f64, String)> = report
        .chaos
        .iter()
        .map(|c| (c.at_ms as f64 / 1000.0, format!("{} {}", c.action, c.part)))
        .collect();
    for sale in &report.sales {
        if sale.opens_s > 0.0 {
            chaos.push((sale.opens_s, "sale opens".into()));
        }
        if let Some(closes) = sale.closes_s {
            chaos.push((closes, "sale closes".into()));
        }
    }
    let sampled: Vec<f64> = report.parts.iter().map(|s| s.second as f64).collect();
    let shops = report
        .parts
        .iter()
        .map(|s| s.shops_serving as f64)
        .collect();
    let waiting: Vec<f64> = report
        .parts
        .iter()
        .map(|s| s.waiting.unwrap_or(0) as f64)
        .collect();
    let room = report.parts.iter().any(|s| s.waiting.is_some());
    let i = &report.invariants;
    html! {
        h2 { (label) ": " (report.scenario) " — "
            @if report.passed { span.pass { "passed" } } @else { span.fail { "failed" } } }
        table {
            tr { th { "oversold units" } td { (i.oversold_units) } }
            tr { th { "lost acknowledged orders" } td { (i.lost_orders) } }
            tr { th { "duplicate idempotency keys" } td { (i.duplicate_keys) } }
            tr { th { "fairness overtakes" } td #fairness-overtakes { (i.fairness_overtakes) } }
            tr { th { "orders that bypassed the line" } td { (i.bypassed_orders) } }
            tr { th { "customers never answered" } td #unanswered-customers { (i.unanswered_customers) } }
            tr { th { "availability" } td { (format!("{:.4}", report.availability)) " (floor " (report.availability_floor) ")" } }
            tr { th { "longest error run after chaos" } td { (report.failover_gap_ms) " ms" } }
            tr { th { "requests" } td { (report.requests.total) " (" (report.requests.succeeded) " ok, "
                (report.requests.answered_by_design) " by design, " (report.requests.waiting_room_answers)
                " waiting-room answers, " (report.requests.errors) " errors)" } }
            tr { th { "latency from intended send" } td { (format!("p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
                report.latency_ms.p50, report.latency_ms.p99, report.latency_ms.max)) } }
            tr { th { "orders acknowledged" } td { (report.orders_acknowledged) " (served p99 "
                (format!("{:.1}", report.served_latency_ms.p99)) " ms)" } }
        }
        (waiting_room(&report.waiting_room))
        h3 { "Requests per second" }
        (chart(&seconds, &[("customers arriving".into(), series(&|s| s.offered as f64)),
            ("requests answered".into(), series(&|s| s.answered as f64))], &chaos))
        h3 { "Latency (ms)" }
        (chart(&seconds, &[("p50".into(), series(&|s| s.p50_ms)), ("p99".into(), series(&|s| s.p99_ms))], &chaos))
        @if report.parts.iter().any(|s| s.shops_serving > 0) {
            h3 { "Shops serving (primary shops up at the gateway)" }
            (chart(&sampled, &[("shops".into(), shops)], &chaos))
        }
        @if room {
            h3 { "Customers waiting in line" }
            (chart(&sampled, &[("waiting".into(), waiting)], &chaos))
        }
        h3 { "Errors per second, by kind" }
        @if errors.is_empty() { p { "No errors." } }
        (chart(&seconds, &errors, &chaos))
        h3 { "Parts (the stack's supervisor)" }
        (states(report, |s| &s.parts))
        h3 { "Backends (as the gateway sees them)" }
        (states(report, |s| &s.backends))
    }
}

/// The waiting room's figures, when customers waited in one.
fn waiting_room(room: &crate::room::WaitingRoomReport) -> Markup {
    if room.customers_waited == 0 {
        return html! {};
    }
    let (w, e) = (&room.wait_s, &room.eta_ratio);
    html! {
        h3 { "Waiting room" }
        table.waiting-room {
            tr { th { "customers who waited" } td #customers-waited { (room.customers_waited) } }
            tr { th { "wait, arrival to turn" } td { (format!("median {:.1} s, p90 {:.1} s, longest {:.1} s", w.p50, w.p90, w.max)) } }
            tr { th { "actual wait ÷ first estimate" } td { (format!("p50 {:.2}, p90 {:.2}", e.p50, e.p90)) } }
            tr { th { "told sold out while waiting" } td { (room.told_sold_out) } }
            @if room.told_sale_ended > 0 {
                tr { th { "told the sale had ended while waiting" } td { (room.told_sale_ended) } } }
            tr { th { "gave up while waiting" } td { (room.gave_up_waiting) } }
            tr { th { "requests of customers in held back (every shop full)" } td #held-back { (room.held_back) } }
        }
    }
}

/// A line chart with a legend and chaos markers.
fn chart(x: &[f64], series: &[(String, Vec<f64>)], chaos: &[(f64, String)]) -> Markup {
    let x_max = x.last().copied().unwrap_or(1.0).max(1.0);
    let y_max = series
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(1.0_f64, f64::max)
        * 1.1;
    let px = |v: f64| PAD + v / x_max * (WIDTH - 2.0 * PAD);
    let py = |v: f64| HEIGHT - PAD / 2.0 - v / y_max * (HEIGHT - PAD);
    html! {
        svg.chart width=(WIDTH) height=(HEIGHT) viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) xmlns="http://www.w3.org/2000/svg" {
            line x1=(PAD) y1=(py(0.0)) x2=(WIDTH - PAD) y2=(py(0.0)) stroke="#999" {}
            text x="4" y="14" font-size="11" { (format!("{:.0}", y_max)) }
            text x=(WIDTH - PAD) y=(HEIGHT - 2.0) font-size="11" { (format!("{x_max:.0} s")) }
            @for (at, label) in chaos {
                line x1=(px(*at)) y1="4" x2=(px(*at)) y2=(py(0.0)) stroke="#b91c1c" stroke-dasharray="4 3" {}
                text x=(px(*at) + 3.0) y="24" font-size="11" fill="#b91c1c" { (label) }
            }
            @for (n, (_, values)) in series.iter().enumerate() {
                polyline fill="none" stroke-width="2" stroke=(COLORS[n % COLORS.len()])
                    points=(x.iter().zip(values).map(|(a, b)| format!("{:.1},{:.1}", px(*a), py(*b))).collect::<Vec<_>>().join(" ")) {}
            }
        }
        div.legend { @for (n, (label, _)) in series.iter().enumerate() {
            span style=(format!("color:{}", COLORS[n % COLORS.len()])) { "■ " (label) } } }
    }
}

/// Each part's (or backend's) state over time, one row each.
fn states(
    report: &Report,
    of: impl Fn(&crate::record::PartsSample) -> &Vec<(String, String)>,
) -> Markup {
    let mut names: Vec<&String> = report
        .parts
        .iter()
        .flat_map(|s| of(s).iter().map(|(n, _)| n))
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        return html! { p { "Not sampled (no control API or no gateway)." } };
    }
    let last = report.parts.last().map_or(1, |s| s.second.max(1)) as f64;
    let row = 20.0;
    let height = row * names.len() as f64 + 10.0;
    let color = |state: &str| match state {
        "running" | "up" => "#16a34a",
        "ejected" | "draining" => "#ca8a04",
        "down" => "#dc2626",
        "stopped" => "#ca8a04",
        "restarting" | "starting" => "#dc2626",
        _ => "#6b7280",
    };
    html! {
        svg.chart width=(WIDTH) height=(height) xmlns="http://www.w3.org/2000/svg" {
            @for (r, name) in names.iter().enumerate() {
                text x="2" y=(row * r as f64 + 14.0) font-size="11" { (name) }
                @for sample in &report.parts {
                    @if let Some((_, state)) = of(sample).iter().find(|(n, _)| n == *name) {
                        rect x=(90.0 + sample.second as f64 / last * (WIDTH - 100.0)) y=(row * r as f64 + 2.0)
                            width=((WIDTH - 100.0) / last + 0.5) height=(row - 4.0) fill=(color(state)) {
                            title { (format!("{}s {state}", sample.second)) }
                        }
                    }
                }
            }
        }
        div.legend { span style="color:#16a34a" { "■ running / up" } span style="color:#dc2626" { "■ restarting / down" }
            span style="color:#ca8a04" { "■ stopped / ejected / draining" } }
    }
}
