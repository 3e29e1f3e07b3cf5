//! Open-loop order load at a fixed rate, for the "latency at half of peak"
//! figure in BENCHMARKS.md. Requests are sent at their intended times whether
//! or not earlier ones came back, and latency counts from the intended time,
//! so queueing is not hidden (no coordinated omission).
//!
//! usage: order_load URL RATE_PER_S SECONDS [SKU]
//! prints one JSON line: {"rate","sent","created","errors","p50_ms","p99_ms","max_ms"}

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

/// Requests allowed in flight before new ones count as errors (bounded memory).
const MAX_IN_FLIGHT: usize = 4096;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: order_load URL RATE_PER_S SECONDS [SKU]");
        std::process::exit(2);
    }
    let url = format!("{}/api/orders", args[1]);
    let rate: f64 = args[2].parse().expect("RATE_PER_S is a number");
    let seconds: f64 = args[3].parse().expect("SECONDS is a number");
    let sku = args.get(4).cloned().unwrap_or_else(|| "hot".to_string());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client builds");
    let total = (rate * seconds) as u64;
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let created = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let run = uuid::Uuid::new_v4().simple().to_string();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let intended = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(intended.into()).await;
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            continue;
        };
        let (client, url, latencies, errors, created) = (
            client.clone(),
            url.clone(),
            latencies.clone(),
            errors.clone(),
            created.clone(),
        );
        let body = format!(
            r#"{{"sku":"{sku}","quantity":1,"customer":"c{}"}}"#,
            i % 5000
        );
        let key = format!("{run}-{i}");
        tasks.push(tokio::spawn(async move {
            let outcome = client
                .post(&url)
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(body)
                .send()
                .await;
            let elapsed = intended.elapsed();
            match outcome {
                Ok(response) if response.status().as_u16() == 201 => {
                    created.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                _ => {
                    errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            latencies.lock().await.push(elapsed);
            drop(permit);
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let mut latencies = latencies.lock().await.clone();
    latencies.sort();
    let pick = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    println!(
        r#"{{"rate":{rate},"sent":{total},"created":{},"errors":{},"p50_ms":{:.2},"p99_ms":{:.2},"max_ms":{:.2}}}"#,
        created.load(std::sync::atomic::Ordering::Relaxed),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        pick(0.5),
        pick(0.99),
        pick(1.0)
    );
}
