//! HTTP/2 customers at ten times what the shop can serve, through the TLS
//! edge: the shop keeps serving at its capacity, every customer beyond it
//! gets a clear 503 with `Retry-After` on its own stream (no reset, no
//! GOAWAY, no connection lost), and the gateway's memory stays bounded.
//! The HTTP/1.1 side of the same promise is in gateway_overload.rs and the
//! rehearsal beyond capacity.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use support::gateway::metric_sum;
use support::tls::TestCa;
use tokio::sync::Semaphore;

/// Requests the shop works on at once, and how long each takes: a
/// capacity of 40 answers a second.
const SHOP_WORKERS: usize = 2;
const WORK: Duration = Duration::from_millis(50);
const CAPACITY_PER_S: f64 = SHOP_WORKERS as f64 / 0.050;

/// Customers, each with one request in flight at a time, over this many
/// HTTP/2 connections (a browser's tab shares one).
const CUSTOMERS: usize = 400;
const CONNECTIONS: usize = 4;

/// A shop that works on `SHOP_WORKERS` requests at a time and queues the
/// rest itself, as a real one with a fixed pool does. Returns its address
/// and the most requests it ever held at once.
async fn limited_shop() -> (String, Arc<AtomicUsize>) {
    let workers = Arc::new(Semaphore::new(SHOP_WORKERS));
    let held = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/work",
            get({
                let most = Arc::clone(&most);
                move || {
                    let (workers, held, most) =
                        (Arc::clone(&workers), Arc::clone(&held), Arc::clone(&most));
                    async move {
                        let now = held.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        let permit = workers.acquire().await.unwrap();
                        tokio::time::sleep(WORK).await;
                        drop(permit);
                        held.fetch_sub(1, Ordering::SeqCst);
                        "done"
                    }
                }
            }),
        )
        .route("/readyz", get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, most)
}

/// What one customer's request came to, and when.
enum Outcome {
    Served,
    /// 503 with `Retry-After`: the deliberate answer to too many.
    Shed,
    /// Anything else: another status, a 503 without `Retry-After`, or the
    /// request failed on the wire (a reset stream, a lost connection).
    Failed(String),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_customers_at_ten_times_capacity_get_the_shop_at_capacity_and_a_clear_503() {
    let (shop, most_held) = limited_shop().await;
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    // Defaults but a shorter wait in the queue than the default 5 s, so
    // that a run of a few seconds sees customers turned away.
    let (gateway, _dir) = support::tls::gateway_with_config(
        &leaf,
        "[queue]\ntimeout_ms = 1000\n",
        &["--backend", &format!("shop={shop}")],
    )
    .await;
    let pid = gateway.part.pid();
    let rss_before = support::rss_kib(pid);

    // One client per connection: reqwest multiplexes a client's requests
    // on one HTTP/2 connection.
    let url = format!("{}/work", gateway.url);
    let mut customers = Vec::new();
    for _ in 0..CONNECTIONS {
        customers.push((ca.connected_client(&url).await, Vec::new()));
    }

    // The first two seconds are the gateway learning the shop's limit;
    // the four after are counted.
    let started = Instant::now();
    let (counted_from, stop_at) = (
        started + Duration::from_secs(2),
        started + Duration::from_secs(6),
    );
    for n in 0..CUSTOMERS {
        let (client, tasks) = &mut customers[n % CONNECTIONS];
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while Instant::now() < stop_at {
                let outcome = match client.get(&url).send().await {
                    Ok(answer) => match answer.status().as_u16() {
                        200 => Outcome::Served,
                        503 if answer.headers().contains_key("retry-after") => Outcome::Shed,
                        status => Outcome::Failed(format!("status {status}")),
                    },
                    Err(err) => Outcome::Failed(format!("{err:?}")),
                };
                seen.push((Instant::now(), outcome));
            }
            seen
        }));
    }
    let mut peak_rss = 0;
    while Instant::now() < stop_at {
        peak_rss = peak_rss.max(support::rss_kib(pid));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut outcomes = Vec::new();
    for (_, tasks) in customers {
        for task in tasks {
            outcomes.extend(task.await.unwrap());
        }
    }

    let failed: Vec<&str> = outcomes
        .iter()
        .filter_map(|(_, outcome)| match outcome {
            Outcome::Failed(why) => Some(why.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} answers were neither 200 nor 503 with Retry-After, first {:?}",
        failed.len(),
        outcomes.len(),
        failed.first()
    );
    // Answers that came within the counted seconds (the last requests
    // of each customer end after them).
    let counted: Vec<&Outcome> = outcomes
        .iter()
        .filter(|(at, _)| (counted_from..stop_at).contains(at))
        .map(|(_, outcome)| outcome)
        .collect();
    let seconds = stop_at.duration_since(counted_from).as_secs_f64();
    let served = counted
        .iter()
        .filter(|o| matches!(o, Outcome::Served))
        .count() as f64;
    let answered_per_s = counted.len() as f64 / seconds;
    let goodput = served / seconds;
    println!(
        "capacity {CAPACITY_PER_S}/s; answered {answered_per_s:.0}/s, served {goodput:.1}/s; \
         the shop held at most {} at once; gateway RSS {} -> {} KiB at peak",
        most_held.load(Ordering::SeqCst),
        rss_before,
        peak_rss
    );
    // Beyond capacity: the customers asked far more than the shop serves.
    assert!(
        answered_per_s >= 5.0 * CAPACITY_PER_S,
        "only {answered_per_s:.0} answers a second: the test did not overload the shop"
    );
    // And the shop still served at its capacity: the gateway neither
    // starved it (a backend wrongly marked down, slots lost) nor let
    // the overload collapse it.
    assert!(
        goodput >= 0.75 * CAPACITY_PER_S,
        "goodput {goodput:.1}/s against a capacity of {CAPACITY_PER_S}/s"
    );
    let grown_mib = peak_rss.saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 64,
        "the gateway grew by {grown_mib} MiB for {CUSTOMERS} customers"
    );
    // The shop was never handed all 400 at once: the gateway held the
    // rest in its queue.
    assert!(
        most_held.load(Ordering::SeqCst) <= 64,
        "the shop held {} requests at once",
        most_held.load(Ordering::SeqCst)
    );

    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_h2_goaways_total", &[]),
        0.0,
        "no connection was told to go away"
    );
    assert_eq!(
        metric_sum(&metrics, "gateway_tls_handshakes_total", &["alpn=\"h2\""]),
        CONNECTIONS as f64,
        "every customer kept its connection"
    );
    let backend = gateway.backend("shop").await;
    assert_eq!(backend["state"], "up", "the busy shop stayed up: {backend}");
    // Once the surge has passed, a customer is served at once.
    let answer = ca
        .client(true)
        .get(format!("{}/work", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
}
