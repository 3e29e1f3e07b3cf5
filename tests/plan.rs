//! `flashguard plan` end to end on a small step load: one CPU-capped shop
//! measured, the plan derived from the step it carried.

use std::process::Command;

use serde_json::Value;

#[test]
fn a_small_step_load_gives_a_plan_with_one_shop_to_spare() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args([
            "plan",
            "--peak",
            "200",
            "--shop-cpu",
            "0.25",
            "--step-s",
            "2",
            "--first-rate",
            "5",
            "--steps",
            "4",
            "--report-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let plan: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("plan.json")).unwrap())
            .unwrap();
    let steps = plan["steps"].as_array().unwrap();
    let rates: Vec<f64> = steps
        .iter()
        .map(|s| s["rate_per_s"].as_f64().unwrap())
        .collect();
    assert_eq!(rates, vec![5.0, 10.0, 20.0, 40.0]);
    // The capacity is the last step carried before the first that was not.
    let carried: Vec<bool> = steps.iter().map(|s| s["carried"] == true).collect();
    let last = carried.iter().take_while(|c| **c).count();
    assert!(last >= 1, "a quarter core carries 5 customers/s: {plan}");
    let capacity = plan["shop_capacity_per_s"].as_f64().unwrap();
    assert_eq!(capacity, rates[last - 1], "{plan}");
    for step in &steps[..last] {
        assert!(step["p99_ms"].as_f64().unwrap() <= 500.0, "{step}");
        assert_eq!(step["failed_or_shed"], 0, "{step}");
    }
    let needed = (200.0 / capacity).ceil() as u64;
    assert_eq!(plan["shops_for_peak"].as_u64().unwrap(), needed, "{plan}");
    assert_eq!(plan["shops"].as_u64().unwrap(), needed + 1);
    assert!(
        stdout.contains(&format!("with one to spare: {} shops", needed + 1)),
        "{stdout}"
    );
    assert!(
        plan["shop_capacity_requests_per_s"].as_f64().unwrap() > capacity,
        "{plan}"
    );
    // report.html carries the plan above the step load's charts.
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("Capacity plan"), "no plan in report.html");
    assert!(
        html.contains(&format!(
            "{needed} for the peak, {} with one to spare",
            needed + 1
        )),
        "report.html's plan differs from plan.json's"
    );
    // The monitor takes the plan for its postmortems; a file that is not
    // one is refused, naming the setting.
    let monitor = |plan: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_flashguard"))
            .args(["monitor", "--check-config", "--capacity-plan"])
            .arg(plan)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap()
    };
    let taken = monitor(&dir.path().join("plan.json"));
    assert!(
        taken.status.success(),
        "{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let not_a_plan = dir.path().join("not-a-plan.json");
    std::fs::write(&not_a_plan, "{}").unwrap();
    let refused = monitor(&not_a_plan);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("capacity_plan:"));
    // Bad input is refused before anything starts.
    let refused = Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args(["plan", "--peak", "0", "--report-dir"])
        .arg(dir.path().join("refused"))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--peak must be above 0"));
    assert!(!dir.path().join("refused").exists());
}
