//! More requests than a backend can take: they wait in the gateway's queue
//! and are served in the order they came, the busy backend is never taken
//! for a dead one, and a wait that runs out gets a deliberate 503 with
//! Retry-After. The backend here is a deliberately slow server in the test
//! process: each answer takes a while, its readiness check longer than the
//! gateway's check timeout, so only its live answers show it is alive.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::routing::get;
use axum::Router;
use serde_json::Value;
use support::client;
use support::gateway::{metric_sum, Gateway};

/// Answers `/work` after `work`, recording each request's `x-seq` in the
/// order it arrived; `/readyz` after 800 ms (the gateway's check times out
/// at 500 ms).
async fn slow_backend(work: Duration) -> (String, Arc<Mutex<Vec<u64>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&seen);
    let app = Router::new()
        .route(
            "/work",
            get(move |headers: HeaderMap| {
                let record = Arc::clone(&record);
                async move {
                    let seq = headers
                        .get("x-seq")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(u64::MAX);
                    record.lock().unwrap().push(seq);
                    tokio::time::sleep(work).await;
                    "done"
                }
            }),
        )
        .route(
            "/readyz",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(800)).await;
                "ready"
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

async fn gateway(backend: &str, config: &str) -> (Gateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let path = path.display().to_string();
    let backend = format!("slow={backend}");
    let gateway = Gateway::start(&["--config", &path, "--backend", &backend]).await;
    (gateway, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saturated_backend_queues_requests_in_order_and_is_never_marked_down() {
    const REQUESTS: u64 = 12;
    let (addr, seen) = slow_backend(Duration::from_millis(250)).await;
    // One request at a time: everything else waits in the gateway's queue
    // (12 × 250 ms = 3 s, longer than `hung_after_ms`, so the checks that
    // time out meanwhile would take it down if silence were not required).
    let config = "[concurrency]\nadaptive = false\ninitial = 1\nmin = 1\nmax = 1\n\
                  [queue]\ntimeout_ms = 10000\n[timeouts]\nupstream_ms = 5000\n";
    let (gateway, _dir) = gateway(&addr, config).await;
    let started = Instant::now();
    let mut requests = Vec::new();
    for seq in 0..REQUESTS {
        let url = format!("{}/work", gateway.url);
        requests.push(tokio::spawn(async move {
            let response = client()
                .get(url)
                .header("x-seq", seq.to_string())
                .send()
                .await
                .unwrap();
            response.status().as_u16()
        }));
        // Each arrives clearly after the one before.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for request in requests {
        assert_eq!(request.await.unwrap(), 200, "every request is served");
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250 * REQUESTS),
        "one at a time"
    );
    let order = seen.lock().unwrap().clone();
    assert_eq!(
        order,
        (0..REQUESTS).collect::<Vec<_>>(),
        "served in the order they came"
    );
    let backend = gateway.backend("slow").await;
    assert_eq!(backend["state"], "up", "{backend}");
    let events = gateway.events().await;
    let downs: Vec<&Value> = events.iter().filter(|e| e["state"] == "down").collect();
    assert!(
        downs.is_empty(),
        "a busy backend was marked down: {downs:?}"
    );
    let metrics = gateway.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "gateway_queue_wait_seconds_count",
            &["result=\"granted\""]
        ) >= (REQUESTS - 1) as f64,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wait_that_runs_out_gets_503_with_retry_after() {
    let (addr, _seen) = slow_backend(Duration::from_millis(1500)).await;
    let config = "[concurrency]\nadaptive = false\ninitial = 1\nmin = 1\nmax = 1\n\
                  [queue]\ntimeout_ms = 300\n";
    let (gateway, _dir) = gateway(&addr, config).await;
    let first = tokio::spawn({
        let url = format!("{}/work", gateway.url);
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waited = client()
        .get(format!("{}/work", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(waited.status(), 503);
    assert!(waited.headers().contains_key("retry-after"));
    let body: Value = waited.json().await.unwrap();
    assert_eq!(body["error"], "queue_timeout", "{body}");
    assert_eq!(
        first.await.unwrap(),
        200,
        "the one that had the slot is served"
    );
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(
            &metrics,
            "gateway_shed_total",
            &["reason=\"queue_timeout\""]
        ),
        1.0,
        "{metrics}"
    );
}
