//! `flashguard rehearse` end to end (scaled down), and the drill refusing a
//! scenario that cannot happen.

use std::process::Command;

use serde_json::Value;

#[test]
fn a_short_rehearsal_passes_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args(["rehearse", "--scale", "0.2", "--baseline", "--report-dir"])
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
    assert!(stdout.contains("PASSED"), "{stdout}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(report["passed"], true);
    for invariant in ["oversold_units", "lost_orders", "duplicate_keys"] {
        assert_eq!(report["invariants"][invariant], 0, "{invariant}");
    }
    assert!(
        report["orders_acknowledged"].as_u64().unwrap() > 100,
        "{}",
        report["orders_acknowledged"]
    );
    assert!(report["availability"].as_f64().unwrap() >= 0.99);
    let chaos = report["chaos"].as_array().unwrap();
    assert_eq!(chaos.len(), 2);
    assert!(chaos.iter().all(|c| c["outcome"] == "done"), "{chaos:?}");
    for field in ["failover_gap_ms", "requests", "latency_ms", "timeline"] {
        assert!(report.get(field).is_some(), "report.json lacks {field}");
    }

    // report.html renders in a real browser: the page's probe records that
    // it loaded, how many charts it has, and whether any script failed.
    let html = dir.path().join("report.html");
    let dom = Command::new("chromium")
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium is installed (.ci/run installs it)");
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert!(
        dom.contains(r#"data-rendered="yes" data-charts="9" data-errors="0""#),
        "{}",
        &dom[..dom.len().min(400)]
    );
    assert!(dom.contains("kill shop-2"), "chaos markers are drawn");

    // The original outage's architecture, same story: the crash shows.
    let baseline: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("baseline/report.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        baseline["passed"], false,
        "one shop without failover must not pass"
    );
    assert!(baseline["availability"].as_f64().unwrap() < 0.99);
    assert!(baseline["failover_gap_ms"].as_u64().unwrap() > 500);
    assert_eq!(
        baseline["invariants"]["oversold_units"], 0,
        "slow, but still correct"
    );
}

#[test]
fn an_impossible_scenario_is_refused_before_any_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("scenario.toml");
    std::fs::write(
        &path,
        "[[item]]\nsku = \"x\"\nstock = 5\n[[phase]]\nduration_s = 5\nrate = 10\n\
         [[chaos]]\nat_s = 60\naction = \"kill\"\npart = \"shop-1\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args([
            "drill",
            "--target",
            "http://127.0.0.1:9",
            "--admin-token",
            "t",
            "--scenario",
        ])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("chaos[0].at_s: 60 is outside the scenario"),
        "{stderr}"
    );
}
