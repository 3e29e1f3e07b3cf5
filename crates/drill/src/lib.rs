//! flashguard's drill: a flash sale thrown at any server that speaks the
//! shop API, with chaos, measured open loop, and judged afterwards by the
//! oracle against the store's own export.

mod attack;
mod client;
mod console;
mod customer;
mod html;
mod oracle;
mod record;
mod report;
mod room;
mod run;
mod scenario;
mod stories;
mod tls;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flashguard_telemetry::EventKind;
use rustls::ClientConfig;

pub use attack::AttackTally;
pub use console::{Console, Progress, Silent, Tick};
pub use html::Preface;
pub use oracle::{check, Acknowledged, Exported, Invariants, Stock};
pub use record::Second;
pub use report::Report;
pub use run::Target;
pub use scenario::{Scenario, ScenarioError};
pub use tls::trust;

/// Runs `scenario` against `target`, checks the invariants, writes
/// report.json into `report_dir` and returns the report. `progress` hears
/// how it goes.
pub async fn drill(
    target: &Target,
    scenario: &Scenario,
    report_dir: &Path,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<Report> {
    let mut builder = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .tcp_nodelay(true);
    if let Some(tls) = &target.tls {
        // The same trust as the customers' connections.
        builder = builder.use_preconfigured_tls(ClientConfig::clone(tls));
    }
    let http = builder.build().context("building the HTTP client")?;
    run::set_up(&http, target, scenario).await?;
    let started_ms = unix_ms();
    tell_monitor(
        &http,
        target,
        EventKind::DrillStarted,
        format!("drill started: {}", scenario.name),
        serde_json::json!({ "started_ms": started_ms, "scenario": scenario.name }),
    )
    .await;
    progress.begin(scenario.duration());
    let observed = run::traffic(&http, target, scenario, Arc::clone(&progress)).await;
    progress.end();
    let (exported, stock) = store_state(&http, target).await?;
    let mut invariants = oracle::check(&observed.acknowledged, &exported, &stock);
    let seed = lottery_seed(&http, target).await;
    invariants.fairness_overtakes =
        room::fairness_overtakes(&observed.room.stamps, seed.as_deref());
    invariants.bypassed_orders = observed.room.bypassed_orders;
    invariants.unanswered_customers = observed.room.unanswered;
    let report = Report::new(scenario, &observed, invariants);
    tell_monitor(
        &http,
        target,
        EventKind::DrillReport,
        format!(
            "drill {}: {} of {} customer requests failed, availability {:.4}, longest error run after chaos {} ms",
            if report.passed { "passed" } else { "failed" },
            report.requests.errors,
            report.requests.total,
            report.availability,
            report.failover_gap_ms
        ),
        serde_json::json!({
            "started_ms": started_ms,
            "ended_ms": unix_ms(),
            "scenario": report.scenario,
            "passed": report.passed,
            "requests_total": report.requests.total,
            "requests_errors": report.requests.errors,
            "availability": report.availability,
            "failover_gap_ms": report.failover_gap_ms,
            "orders_acknowledged": report.orders_acknowledged,
            "customers_gave_up": report.customers_gave_up,
            "oversold_units": report.invariants.oversold_units,
            "lost_orders": report.invariants.lost_orders,
            "duplicate_keys": report.invariants.duplicate_keys,
            "fairness_overtakes": report.invariants.fairness_overtakes,
            "bypassed_orders": report.invariants.bypassed_orders,
            "unanswered_customers": report.invariants.unanswered_customers,
            "waiting_room": report.waiting_room,
        }),
    )
    .await;
    std::fs::create_dir_all(report_dir)
        .with_context(|| format!("creating {}", report_dir.display()))?;
    let json = serde_json::to_string_pretty(&report)?;
    std::fs::write(report_dir.join("report.json"), json).context("writing report.json")?;
    write_html(report_dir, &[("drill", &report)])?;
    Ok(report)
}

use flashguard_telemetry::unix_ms;

/// Puts the drill on the monitor's incident timeline; a monitor that is
/// not there does not stop the drill.
async fn tell_monitor(
    http: &reqwest::Client,
    target: &Target,
    kind: EventKind,
    summary: String,
    data: serde_json::Value,
) {
    let Some(monitor) = &target.monitor else {
        return;
    };
    let event = serde_json::json!({
        "source": "drill",
        "kind": kind,
        "subject": "drill",
        "summary": summary,
        "data": data,
    });
    let posted = http
        .post(format!("{monitor}/api/events"))
        .bearer_auth(&target.admin_token)
        .json(&event)
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match posted {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            tracing::warn!(status = %response.status(), %kind, "the monitor refused the drill's event")
        }
        Err(err) => tracing::warn!(%err, %kind, "the monitor did not take the drill's event"),
    }
}

/// Writes the monitor's postmortem draft of its newest incident (the one
/// the drill provoked, or is still in) as postmortem.md in `dir`.
pub async fn write_postmortem(monitor: &str, dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let incidents: Vec<serde_json::Value> = http
        .get(format!("{monitor}/api/incidents"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let id = incidents
        .first()
        .and_then(|i| i["id"].as_i64())
        .context("the monitor opened no incident")?;
    let markdown = http
        .get(format!("{monitor}/api/incidents/{id}/postmortem"))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let path = dir.join("postmortem.md");
    std::fs::write(&path, markdown).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Writes report.html with these reports side by side.
pub fn write_html(report_dir: &Path, reports: &[(&str, &Report)]) -> anyhow::Result<()> {
    write_html_with(report_dir, reports, None)
}

/// Writes report.html with a table of figures above the reports.
pub fn write_html_with(
    report_dir: &Path,
    reports: &[(&str, &Report)],
    preface: Option<&Preface>,
) -> anyhow::Result<()> {
    std::fs::write(
        report_dir.join("report.html"),
        html::render(reports, preface),
    )
    .context("writing report.html")
}

/// The seed a waiting room published for its lottery (`None` when there
/// is no room, no lottery, or it published none).
async fn lottery_seed(http: &reqwest::Client, target: &Target) -> Option<Vec<u8>> {
    let room: serde_json::Value = http
        .get(format!("{}/waiting-room.json", target.url))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let hex = room["lottery"]["seed"].as_str()?;
    (0..hex.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok())
        .collect()
}

/// The store's orders and stock, from the admin API.
async fn store_state(
    http: &reqwest::Client,
    target: &Target,
) -> anyhow::Result<(Vec<Exported>, Vec<Stock>)> {
    // A server still working off the crowd (the baseline's single shop,
    // which sheds nothing) may answer 503 for a while after the sale:
    // asked again until it answers, for two minutes at most.
    let get = |path: &str| {
        let url = format!("{}{path}", target.url);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
            loop {
                let answer = http
                    .get(&url)
                    .bearer_auth(&target.admin_token)
                    .timeout(Duration::from_secs(120))
                    .send()
                    .await;
                let busy = match &answer {
                    Ok(answer) => answer.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE,
                    Err(err) => err.is_timeout() || err.is_connect(),
                };
                if !busy || tokio::time::Instant::now() >= deadline {
                    return answer;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    let export = get("/admin/orders").await.context("exporting orders")?;
    anyhow::ensure!(
        export.status().is_success(),
        "the export answered {}",
        export.status()
    );
    let text = export.text().await?;
    let exported = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<Vec<Exported>, _>>()
        .context("reading the export")?;
    let stock: Vec<Stock> = get("/admin/inventory")
        .await
        .context("reading inventory")?
        .json()
        .await?;
    Ok((exported, stock))
}
