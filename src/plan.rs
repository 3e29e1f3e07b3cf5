//! `flashguard plan`: measure one shop here, print how many a peak needs.

use std::sync::Arc;

use anyhow::Context;

use crate::cli::PlanArgs;

pub(crate) async fn plan(args: PlanArgs) -> anyhow::Result<()> {
    let request = flashguard_stack::PlanRequest {
        exe: std::env::current_exe().context("finding the flashguard binary")?,
        peak_per_s: args.peak,
        shop_cpu: args.shop_cpu,
        p99_target_ms: args.p99_target_ms,
        database_url: args.db,
        report_dir: args.report_dir.clone(),
        step_s: args.step_s,
        first_rate: args.first_rate,
        steps: args.steps,
    };
    anyhow::ensure!(args.peak > 0.0, "--peak must be above 0");
    anyhow::ensure!(
        (0.01..=64.0).contains(&args.shop_cpu),
        "--shop-cpu must be 0.01 to 64 (cores)"
    );
    anyhow::ensure!(
        (1..=16).contains(&args.steps) && args.step_s >= 1.0 && args.first_rate > 0.0,
        "--steps must be 1 to 16, --step-s at least 1, --first-rate above 0"
    );
    let console = Arc::new(flashguard_drill::Console::new());
    console.step(&format!(
        "planning for {} customers/s (report in {})",
        args.peak,
        args.report_dir.display()
    ));
    let plan = flashguard_stack::plan(&request, Arc::clone(&console)).await?;
    console.line("");
    for step in &plan.steps {
        console.line(&format!(
            "  {:>7.0} customers/s: p99 {:>7.1} ms, {} failed or shed{}",
            step.rate_per_s,
            step.p99_ms,
            step.failed_or_shed,
            if step.carried { "" } else { "  (not carried)" }
        ));
    }
    console.line(&format!(
        "\none shop at {} core{} carries {:.0} customers/s with p99 within {} ms.\n\
         {} customers/s needs {} shops; with one to spare: {} shops, {:.2} cores.",
        plan.shop_cpu,
        if plan.cpu_capped {
            ""
        } else {
            " (not capped: no cgroup here)"
        },
        plan.shop_capacity_per_s,
        plan.p99_target_ms,
        plan.peak_per_s,
        plan.shops_for_peak,
        plan.shops,
        plan.cpu_cores,
    ));
    println!(
        "plan:       {}",
        args.report_dir.join("plan.json").display()
    );
    Ok(())
}
