//! The gateway frozen, as a spent CPU quota freezes it: each serving
//! thread awaiting answers counts the stall (`gateway_serving_stalls_total`;
//! answers awaited across a stall do not cut a backend's adaptive limit),
//! and the monitor's default rule says the gateway is short of CPU. A real gateway process, frozen with SIGSTOP and let go
//! with SIGCONT, as the kernel's throttling does to a process past its
//! quota.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::gateway::{echo_backend, metric_sum, Gateway};

/// Serving threads the gateway runs here.
const WORKERS: usize = 2;

async fn stalls(gateway: &Gateway) -> f64 {
    metric_sum(
        &gateway.metrics().await,
        "gateway_serving_stalls_total",
        &[],
    )
}

/// Freezes `pid` for `frozen`, `times` times, running `between` after each.
async fn freeze(pid: u32, times: usize, frozen: Duration, between: Duration) {
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([&format!("-{name}"), &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {pid}");
    };
    for _ in 0..times {
        signal("STOP");
        tokio::time::sleep(frozen).await;
        signal("CONT");
        tokio::time::sleep(between).await;
    }
}

/// Customers whose requests the backend answers after 600 ms, one after
/// another, so that every serving thread always awaits some (a thread
/// watches for its stalls only then); they stop when the flag is set.
fn slow_customers(
    url: &str,
    customers: usize,
) -> (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let customers = (0..customers)
        .map(|_| {
            let (stop, url) = (Arc::clone(&stop), format!("{url}/slow"));
            tokio::spawn(async move {
                // One connection each, spread over the serving threads.
                let http = reqwest::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let answer = http.get(&url).send().await.expect("answered");
                    assert_eq!(answer.status(), 200);
                }
            })
        })
        .collect();
    (stop, customers)
}

async fn stop_customers((stop, customers): (Arc<AtomicBool>, Vec<tokio::task::JoinHandle<()>>)) {
    stop.store(true, Ordering::Relaxed);
    for customer in customers {
        customer.await.expect("every slow request answered 200");
    }
}

/// A gateway with `WORKERS` serving threads in front of one backend, its
/// config in a directory kept for as long as it runs.
async fn gateway() -> (Gateway, tempfile::TempDir) {
    let backend = echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("workers = {WORKERS}\n")).unwrap();
    let gateway = Gateway::start(&[
        "--config",
        config.to_str().unwrap(),
        "--backend",
        &format!("s1={backend}"),
    ])
    .await;
    (gateway, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_serving_thread_counts_each_time_the_gateway_is_frozen() {
    let (gateway, _dir) = gateway().await;
    let pid = gateway.part.child.id().expect("the gateway runs");
    let (frozen, between) = (Duration::from_millis(50), Duration::from_millis(50));
    // Idle, it does not tick: a freeze then is not counted.
    let before = stalls(&gateway).await;
    freeze(pid, 3, frozen, between).await;
    assert_eq!(
        stalls(&gateway).await,
        before,
        "an idle gateway counted stalls"
    );
    let customers = slow_customers(&gateway.url, 8);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = stalls(&gateway).await;
    let times = 10;
    freeze(pid, times, frozen, between).await;
    let counted = stalls(&gateway).await - before;
    stop_customers(customers).await;
    // Each thread's tick comes 45 ms or more late after each freeze; a
    // busy machine may add stalls of its own, never take one away.
    assert!(
        counted >= (times * WORKERS) as f64,
        "{counted} stalls counted for {times} freezes of {WORKERS} threads"
    );
    // And the gateway serves as before.
    let answer = reqwest::get(format!("{}/echo", gateway.url)).await.unwrap();
    assert_eq!(answer.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_frozen_every_moment_raises_the_default_alert() {
    let (gateway, dir) = gateway().await;
    let (_monitor, url) = support::monitor_with_default_rules(&gateway.admin_url, dir.path()).await;
    // The monitor has seen the count (exported from the start, at 0 or
    // a few), so the freezes below are an increase it can see.
    support::poll_json(
        &format!("{url}/api/query?metric=gateway_serving_stalls_total"),
        Duration::from_secs(30),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    let pid = gateway.part.child.id().expect("the gateway runs");
    let customers = slow_customers(&gateway.url, 8);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // 40 freezes of two threads: 80 stalls, past the rule's 60 a minute.
    let (frozen, between) = (Duration::from_millis(40), Duration::from_millis(40));
    freeze(pid, 40, frozen, between).await;
    stop_customers(customers).await;
    let alert = support::firing_alert(&url, "GatewayCpuStarved").await;
    assert_eq!(alert["labels"]["alertname"], "GatewayCpuStarved", "{alert}");
}
