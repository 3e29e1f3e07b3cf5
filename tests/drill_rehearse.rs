//! `flashguard rehearse` end to end (scaled down), and the drill refusing a
//! scenario that cannot happen.

mod support;

use std::process::Command;

use serde_json::Value;

/// Milliseconds since midnight UTC.
fn ms_of_day(unix_ms: u128) -> u128 {
    unix_ms % 86_400_000
}

/// "06:44:39.741" as milliseconds since midnight.
fn clock_ms(text: &str) -> Option<u128> {
    let (hms, ms) = text.get(..12)?.split_once('.')?;
    let parts: Vec<u128> = hms
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let [h, m, s] = parts[..] else { return None };
    Some(((h * 60 + m) * 60 + s) * 1000 + ms.parse::<u128>().ok()?)
}

fn unix_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

#[test]
fn a_short_rehearsal_passes_every_invariant() {
    let dir = tempfile::tempdir().unwrap();
    let started = unix_ms();
    support::rehearse(&["--scale", "0.2", "--baseline"], dir.path());
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
    // flashguard's column: requests, latency, shops serving, errors, parts,
    // backends (6); the baseline's, without a gateway: requests, latency,
    // errors, parts (4).
    let html = dir.path().join("report.html");
    let dom = support::chromium_dom(&format!("file://{}", html.display()));
    assert!(
        dom.contains(r#"data-rendered="yes" data-charts="10" data-errors="0""#),
        "{}",
        &dom[..dom.len().min(400)]
    );
    assert!(dom.contains("kill shop-2"), "chaos markers are drawn");

    // The monitor's postmortem draft: the crash with the part, the signal
    // and its time, the failover, and impact figures equal to the report's.
    let ended = unix_ms();
    let postmortem = std::fs::read_to_string(dir.path().join("postmortem.md"))
        .expect("rehearse writes postmortem.md");
    let requests = &report["requests"];
    let needed = [
        "## Issue Summary".to_string(),
        "## Timeline".to_string(),
        "## Root Cause and Resolution".to_string(),
        "## Corrective and Preventative Measures".to_string(),
        "shop-2 killed by SIGKILL at ".to_string(),
        format!(
            "{} of {} customer requests failed",
            requests["errors"], requests["total"]
        ),
        format!(
            "availability {:.4}",
            report["availability"].as_f64().unwrap()
        ),
        format!("lasted {} ms", report["failover_gap_ms"]),
        format!("{} orders were acknowledged", report["orders_acknowledged"]),
        format!("{} customers gave up", report["customers_gave_up"]),
    ];
    for needed in &needed {
        assert!(
            postmortem.contains(needed.as_str()),
            "{needed:?} missing:\n{postmortem}"
        );
    }
    // The failover: the gateway took the shop out, or the shop was back
    // before its checks could.
    assert!(
        postmortem.contains("the gateway took it out of rotation (")
            || postmortem.contains("before the gateway's health checks marked it down"),
        "{postmortem}"
    );
    assert!(
        postmortem.contains(&format!(
            "; {} customer requests failed.",
            requests["errors"]
        )),
        "{postmortem}"
    );
    let at = postmortem
        .split("shop-2 killed by SIGKILL at ")
        .nth(1)
        .and_then(clock_ms)
        .expect("the crash's time is given");
    let (from, to) = (ms_of_day(started), ms_of_day(ended));
    if from < to {
        assert!(
            (from..=to).contains(&at),
            "the crash at {at} is outside the run {from}..{to}"
        );
    }

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
