//! `flashguard plan`: how many shops a peak needs, from a measurement on
//! this machine and store rather than a ratio.
//!
//! One shop, with the CPU each shop will have (a cgroup quota), gets a
//! step load from the drill: customers browsing then ordering, the rate
//! doubling every step. Its capacity is the highest step it carried with
//! its p99 within the target and nothing shed or failed (the first second
//! of each step left out: it carries the previous step's queue). The plan
//! is then `ceil(peak ÷ capacity)` shops, plus one to spare (N+1: a shop
//! can die in the sale, as in the rehearsal).

use std::path::PathBuf;
use std::sync::Arc;

use flashguard_drill::{Console, Scenario, Second, Target};
use serde::Serialize;

use crate::logs::LogPolicy;
use crate::stack::Stack;
use crate::{StackError, StackFile};

/// What to plan for.
#[derive(Debug, Clone)]
pub struct PlanRequest {
    pub exe: PathBuf,
    /// Customers per second at the peak.
    pub peak_per_s: f64,
    /// Each shop's CPU, in cores.
    pub shop_cpu: f64,
    pub p99_target_ms: f64,
    /// The database measured against; default a fresh SQLite file in
    /// `report_dir`.
    pub database_url: Option<String>,
    pub report_dir: PathBuf,
    /// Seconds per step. Default 3.
    pub step_s: f64,
    /// The first step's rate; each doubles. Default 10 customers/s.
    pub first_rate: f64,
    pub steps: usize,
}

/// One step of the load, as the shop carried it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub rate_per_s: f64,
    /// Requests answered per second (a customer reads, then orders).
    pub answered_per_s: f64,
    pub p99_ms: f64,
    pub failed_or_shed: u64,
    pub carried: bool,
}

/// The plan, as printed and written to `plan.json`.
#[derive(Debug, Clone, Serialize)]
pub struct CapacityPlan {
    pub shop_cpu: f64,
    pub p99_target_ms: f64,
    /// Customers per second one shop carries.
    pub shop_capacity_per_s: f64,
    /// Requests per second it answered at that step: what the monitor's
    /// postmortem sizes the pool with (`capacity_plan` in monitor.toml).
    pub shop_capacity_requests_per_s: f64,
    pub steps: Vec<Step>,
    pub peak_per_s: f64,
    pub shops_for_peak: u32,
    /// With one to spare.
    pub shops: u32,
    pub cpu_cores: f64,
    /// Whether a cgroup capped the shop (else it ran unlimited).
    pub cpu_capped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Stack(#[from] StackError),
    #[error(transparent)]
    Config(#[from] crate::StackConfigError),
    #[error("the step load: {0:#}")]
    Drill(anyhow::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not even the first step ({0} customers/s) was carried: lower --first-rate or raise --p99-target-ms")]
    NothingCarried(f64),
}

/// Measures one shop and plans for the peak.
pub async fn plan(request: &PlanRequest, console: Arc<Console>) -> Result<CapacityPlan, PlanError> {
    let dir = &request.report_dir;
    std::fs::create_dir_all(dir).map_err(|source| PlanError::Io {
        path: dir.clone(),
        source,
    })?;
    let database_url = request
        .database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}", dir.join("plan.db").display()));
    let config = StackFile {
        shops: 1,
        backups: 0,
        gateway: false,
        shop_cpu: Some(request.shop_cpu),
        logs_dir: dir.join("logs").display().to_string(),
        ..StackFile::default()
    }
    .private(dir, database_url)
    .validate()?;
    let logs = LogPolicy {
        dir: Some(dir.join("logs")),
        echo: crate::Echo::Problems,
    };
    let stack = Stack::start_back(config, request.exe.clone(), logs).await?;
    let cpu_capped = stack.quota_note.is_none();
    if let Some(note) = &stack.quota_note {
        console.step(note);
    }
    let shop = stack.shop_urls().await?.remove(0);
    let scenario = Scenario::step_load(request.first_rate, request.steps, request.step_s);
    console.step(&format!(
        "one shop at {} core: {} steps of {} s from {} customers/s, doubling",
        request.shop_cpu, request.steps, request.step_s, request.first_rate
    ));
    let target = Target {
        url: shop,
        control: None,
        admin_token: stack.admin_token().to_string(),
        connections: 1024,
        monitor: None,
        // One shop, straight: plain HTTP.
        tls: None,
    };
    let progress: Arc<dyn flashguard_drill::Progress> = Arc::clone(&console) as _;
    let report =
        flashguard_drill::drill(&target, &scenario, &dir.join("step-load"), progress).await;
    stack.stop().await;
    let report = report.map_err(PlanError::Drill)?;
    let steps = judge(&report.timeline, &scenario, request.p99_target_ms);
    let carried = steps.iter().take_while(|s| s.carried).last();
    let capacity = carried.map_or(0.0, |s| s.rate_per_s);
    let capacity_requests = carried.map_or(0.0, |s| s.answered_per_s);
    if capacity == 0.0 {
        return Err(PlanError::NothingCarried(request.first_rate));
    }
    let shops_for_peak = (request.peak_per_s / capacity).ceil().max(1.0) as u32;
    let plan = CapacityPlan {
        shop_cpu: request.shop_cpu,
        p99_target_ms: request.p99_target_ms,
        shop_capacity_per_s: capacity,
        shop_capacity_requests_per_s: capacity_requests,
        steps,
        peak_per_s: request.peak_per_s,
        shops_for_peak,
        shops: shops_for_peak + 1,
        cpu_cores: f64::from(shops_for_peak + 1) * request.shop_cpu,
        cpu_capped,
    };
    let path = dir.join("plan.json");
    let text = serde_json::to_string_pretty(&plan).expect("a plan serializes");
    std::fs::write(&path, text).map_err(|source| PlanError::Io { path, source })?;
    flashguard_drill::write_html_with(
        dir,
        &[("one shop, step load", &report)],
        Some(&plan.preface()),
    )
    .map_err(PlanError::Drill)?;
    Ok(plan)
}

impl CapacityPlan {
    /// The plan as report.html shows it, above the step load.
    fn preface(&self) -> flashguard_drill::Preface {
        let mut rows = vec![
            (
                "one shop carries".to_string(),
                format!(
                    "{:.0} customers/s ({:.0} requests/s) at {} core{}, p99 within {} ms",
                    self.shop_capacity_per_s,
                    self.shop_capacity_requests_per_s,
                    self.shop_cpu,
                    if self.cpu_capped {
                        ""
                    } else {
                        " (not capped: no cgroup here)"
                    },
                    self.p99_target_ms
                ),
            ),
            (
                "the peak".to_string(),
                format!("{:.0} customers/s", self.peak_per_s),
            ),
            (
                "shops".to_string(),
                format!(
                    "{} for the peak, {} with one to spare: {:.2} cores",
                    self.shops_for_peak, self.shops, self.cpu_cores
                ),
            ),
        ];
        rows.extend(self.steps.iter().map(|step| {
            (
                format!("step at {:.0} customers/s", step.rate_per_s),
                format!(
                    "{:.0} answered/s, p99 {:.1} ms, {} failed or shed: {}",
                    step.answered_per_s,
                    step.p99_ms,
                    step.failed_or_shed,
                    if step.carried {
                        "carried"
                    } else {
                        "not carried"
                    }
                ),
            )
        }));
        flashguard_drill::Preface {
            heading: "Capacity plan".into(),
            rows,
        }
    }
}

/// Each step's worst p99 and failures, its first second left out.
fn judge(timeline: &[Second], scenario: &Scenario, p99_target_ms: f64) -> Vec<Step> {
    let mut from = 0.0;
    scenario
        .phases
        .iter()
        .map(|phase| {
            let (start, end) = (from as u64 + 1, (from + phase.duration_s) as u64);
            from += phase.duration_s;
            let seconds: Vec<&Second> = timeline
                .iter()
                .filter(|s| (start..end).contains(&s.second))
                .collect();
            let p99_ms = seconds.iter().map(|s| s.p99_ms).fold(0.0, f64::max);
            let failed_or_shed = seconds.iter().flat_map(|s| s.errors.values()).sum();
            let answered_per_s = if seconds.is_empty() {
                0.0
            } else {
                seconds.iter().map(|s| s.answered as f64).sum::<f64>() / seconds.len() as f64
            };
            Step {
                rate_per_s: phase.rate,
                answered_per_s,
                p99_ms,
                failed_or_shed,
                carried: !seconds.is_empty() && p99_ms <= p99_target_ms && failed_or_shed == 0,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn second(at: u64, p99_ms: f64, errors: u64) -> Second {
        let mut kinds = BTreeMap::new();
        if errors > 0 {
            kinds.insert("503 overloaded".to_string(), errors);
        }
        Second {
            second: at,
            offered: 0,
            answered: 0,
            errors: kinds,
            p50_ms: 1.0,
            p99_ms,
        }
    }

    #[test]
    fn a_step_is_carried_within_the_target_and_without_shedding() {
        let scenario = Scenario::step_load(10.0, 4, 3.0);
        let timeline = vec![
            second(0, 900.0, 0), // the first second of a step is left out
            second(1, 20.0, 0),
            second(2, 25.0, 0),
            second(4, 40.0, 0),
            second(5, 45.0, 0),
            second(7, 300.0, 0),
            second(8, 700.0, 0), // over the target
            second(10, 200.0, 4),
            second(11, 250.0, 9),
        ];
        let steps = judge(&timeline, &scenario, 500.0);
        let carried: Vec<bool> = steps.iter().map(|s| s.carried).collect();
        assert_eq!(carried, vec![true, true, false, false]);
        assert_eq!(steps[2].p99_ms, 700.0);
        assert_eq!(steps[3].failed_or_shed, 13);
    }
}
