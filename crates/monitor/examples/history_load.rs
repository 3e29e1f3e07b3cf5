//! Benchmark (BENCHMARKS.md): the monitor's history and rule evaluation at
//! ten targets scraped every second for an hour, simulated by feeding
//! samples with timestamps one second apart (no waiting an hour).
//!
//! usage: cargo run --release -p flashguard-monitor --example history_load [SERIES_PER_TARGET]

use std::time::Instant;

use flashguard_monitor::rules::{Evaluator, RuleFile};
use flashguard_monitor::{SeriesKey, Store};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let per_target: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(150);
    let targets = 10;
    let seconds = 3600;
    let mut store = Store::new(3_600_000, 50_000);
    let keys: Vec<SeriesKey> = (0..targets)
        .flat_map(|t| {
            (0..per_target).map(move |s| {
                SeriesKey::new(
                    &format!("metric_{}", s % 30),
                    [
                        ("target".to_string(), format!("t{t}")),
                        ("series".to_string(), s.to_string()),
                    ],
                )
            })
        })
        .collect();
    let mut evaluator = Evaluator::new(
        RuleFile::parse(flashguard_monitor::DEFAULT_RULES)
            .unwrap()
            .rules,
    );
    let started = Instant::now();
    let mut evaluation_total = std::time::Duration::ZERO;
    for second in 0..seconds {
        let at = second as i64 * 1000;
        for (n, key) in keys.iter().enumerate() {
            store.push(key.clone(), at, (second * n) as f64);
        }
        if second % 60 == 59 {
            store.prune(at);
        }
        let evaluation = Instant::now();
        evaluator.evaluate(&store, at);
        evaluation_total += evaluation.elapsed();
    }
    let elapsed = started.elapsed();
    let points = store.point_count();
    println!(
        "{targets} targets x {per_target} series, {seconds} s of history: {} series, {points} points",
        store.series_count()
    );
    println!(
        "ingest + evaluate: {:.2} s for the hour = {:.1} ms per simulated second ({:.1} ms of it rule evaluation)",
        elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1000.0 / seconds as f64,
        evaluation_total.as_secs_f64() * 1000.0 / seconds as f64
    );
    println!(
        "peak resident memory {:.0} MiB = {:.1} bytes per point",
        peak_rss_mib(),
        peak_rss_mib() * 1024.0 * 1024.0 / points as f64
    );
}
