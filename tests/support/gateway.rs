//! A gateway process for the end-to-end tests, and the load they send
//! through it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Value};

use super::{client, wait_for_status, Part, ADMIN_TOKEN};

/// The size of `/big`'s answer: many reads and writes on each side.
pub const BIG: usize = 3 * 1024 * 1024 + 7;

/// Answers `/echo` with the headers and body length it received, `/slow`
/// after 600 ms, `/stream` with a chunked body, `/big` with `BIG` bytes of
/// a known pattern, `/endless` with a body that never ends, `/stall` with
/// one chunk of body and then nothing, `/readyz` with 200.
pub async fn echo_backend() -> SocketAddr {
    async fn echo(headers: HeaderMap, body: Bytes) -> Json<Value> {
        let headers: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or(""))))
            .collect();
        Json(json!({ "headers": headers, "body_len": body.len() }))
    }
    let app = Router::new()
        .route("/echo", any(echo))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(600)).await;
                "slow"
            }),
        )
        .route(
            "/stream",
            get(|| async {
                let chunks =
                    (0..50).map(|i| Ok::<_, std::io::Error>(Bytes::from(format!("chunk-{i};"))));
                axum::body::Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        .route(
            "/big",
            get(|| async { (0..=255u8).cycle().take(BIG).collect::<Vec<u8>>() }),
        )
        .route(
            "/endless",
            get(|| async {
                let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                let chunks =
                    futures::stream::repeat_with(move || Ok::<_, std::io::Error>(chunk.clone()));
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            "/stall",
            get(|| async {
                let first = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("first;"))]);
                axum::body::Body::from_stream(futures::StreamExt::chain(
                    first,
                    futures::stream::pending(),
                ))
            }),
        )
        .route("/readyz", get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// Sends raw bytes to `addr` and reads until the gateway closes the
/// connection.
pub async fn exchange(addr: &str, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    String::from_utf8_lossy(&answer).into_owned()
}

/// `flashguard gateway ARGS` on free ports, its lines unread.
pub fn launch(args: &[&str]) -> Part {
    let mut all = vec![
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ];
    all.extend_from_slice(args);
    Part::launch(&all, Some(ADMIN_TOKEN))
}

pub struct Gateway {
    pub part: Part,
    pub url: String,
    pub admin_url: String,
}

impl Gateway {
    /// Starts `flashguard gateway ARGS` on free ports and waits for its
    /// admin `/readyz`.
    pub async fn start(args: &[&str]) -> Gateway {
        let mut part = launch(args);
        let url = part.expect_line("listening on ").await;
        let admin_url = part.expect_line("admin on ").await;
        wait_for_status(&format!("{admin_url}/readyz"), 200, Duration::from_secs(30)).await;
        Gateway {
            part,
            url,
            admin_url,
        }
    }

    /// A gateway with `toml` as its config file (kept while the returned
    /// directory lives), and `args`.
    pub async fn start_with_config(toml: &str, args: &[&str]) -> (Gateway, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, toml).unwrap();
        let config = config.display().to_string();
        let mut all = vec!["--config", config.as_str()];
        all.extend_from_slice(args);
        (Gateway::start(&all).await, dir)
    }

    /// `GET` an admin path, with the token, as JSON.
    pub async fn admin_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        client()
            .get(format!("{}{path}", self.admin_url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("admin answers")
            .json()
            .await
            .expect("the admin answers JSON")
    }

    pub async fn backends(&self) -> Vec<Value> {
        self.admin_json("/admin/backends").await
    }

    /// A backend's row from `/admin/backends`.
    pub async fn backend(&self, name: &str) -> Value {
        self.backends()
            .await
            .into_iter()
            .find(|b| b["name"] == name)
            .unwrap_or_else(|| panic!("no backend {name}"))
    }

    /// Waits until the gateway reports `name` in `state`.
    pub async fn wait_state(&self, name: &str, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if self.backend(name).await["state"] == state {
                return;
            }
            assert!(Instant::now() < deadline, "{name} never became {state}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `GET /admin/events`: every state change the gateway recorded.
    pub async fn events(&self) -> Vec<Value> {
        self.admin_json("/admin/events").await
    }

    pub async fn metrics(&self) -> String {
        client()
            .get(format!("{}/metrics", self.admin_url))
            .send()
            .await
            .expect("metrics answer")
            .text()
            .await
            .expect("metrics text")
    }
}

/// Sums the samples of `family` whose labels contain every `label` given.
pub fn metric_sum(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(family) && !line.starts_with('#'))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls the gateway's `/metrics` until what `read` takes from it is
/// `done`, for at most 20 s; returns it. The panic names `what` and
/// shows the last reading.
pub async fn wait_for_metrics<T: std::fmt::Debug>(
    gateway: &Gateway,
    what: &str,
    read: impl Fn(&str) -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = read(&gateway.metrics().await);
        if done(&seen) {
            return seen;
        }
        assert!(Instant::now() < deadline, "{what}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the backends' answers waiting on their clients and their
/// slots held (`gateway_backend_answers_waiting_on_clients`,
/// `gateway_backend_in_flight_requests`) are `waiting` and `in_flight`.
pub async fn wait_for_slots(gateway: &Gateway, waiting: f64, in_flight: f64) {
    let what = format!("(answers waiting on clients, slots held) not {waiting}, {in_flight}");
    let read = |metrics: &str| {
        (
            metric_sum(metrics, "gateway_backend_answers_waiting_on_clients", &[]),
            metric_sum(metrics, "gateway_backend_in_flight_requests", &[]),
        )
    };
    wait_for_metrics(gateway, &what, read, |seen| *seen == (waiting, in_flight)).await;
}

/// One client request's outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub at: Instant,
    pub took: Duration,
    /// The status, or `None` for a network error or timeout.
    pub status: Option<u16>,
    pub kind: &'static str,
    /// The idempotency key and order id of an acknowledged order.
    pub order: Option<(String, String)>,
}

impl Outcome {
    /// An answer the shop gives by design (2xx, sold out, limit...) as
    /// opposed to an error.
    pub fn is_error(&self) -> bool {
        !matches!(self.status, Some(status) if status < 500)
    }
}

/// Steady customer traffic through the gateway: each worker alternates a
/// product read and an order with a fresh idempotency key.
pub struct Load {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(url: &str, sku: &str, workers: usize) -> Load {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client builds");
        Load::start_with(http, url, sku, workers)
    }

    /// The same load through `http` (an HTTPS or HTTP/2 client): its
    /// workers share its connections.
    pub fn start_with(http: reqwest::Client, url: &str, sku: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let workers = (0..workers)
            .map(|worker| {
                let (stop, outcomes) = (Arc::clone(&stop), Arc::clone(&outcomes));
                let (url, sku) = (url.to_string(), sku.to_string());
                let http = http.clone();
                tokio::spawn(async move {
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        n += 1;
                        let outcome = if n.is_multiple_of(2) {
                            read(&http, &url, &sku).await
                        } else {
                            let key = format!("w{worker}-{n}-{}", uuid::Uuid::new_v4().simple());
                            buy(&http, &url, &sku, &format!("c{worker}"), &key).await
                        };
                        outcomes.lock().unwrap().push(outcome);
                    }
                })
            })
            .collect();
        Load {
            stop,
            outcomes,
            workers,
        }
    }

    pub fn snapshot(&self) -> Vec<Outcome> {
        self.outcomes.lock().unwrap().clone()
    }

    pub async fn stop(self) -> Vec<Outcome> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.await.expect("load worker");
        }
        Arc::try_unwrap(self.outcomes)
            .expect("workers are done")
            .into_inner()
            .unwrap()
    }
}

async fn read(http: &reqwest::Client, url: &str, sku: &str) -> Outcome {
    let at = Instant::now();
    let result = http.get(format!("{url}/api/products/{sku}")).send().await;
    let status = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            response.bytes().await.ok().map(|_| status)
        }
        Err(_) => None,
    };
    Outcome {
        at,
        took: at.elapsed(),
        status,
        kind: "read",
        order: None,
    }
}

async fn buy(http: &reqwest::Client, url: &str, sku: &str, customer: &str, key: &str) -> Outcome {
    let at = Instant::now();
    let result = http
        .post(format!("{url}/api/orders"))
        .header("Idempotency-Key", key)
        .json(&json!({ "sku": sku, "quantity": 1, "customer": customer }))
        .send()
        .await;
    let (status, order) = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            match response.json::<Value>().await {
                Ok(body) => {
                    let order = (status == 201).then(|| {
                        let id = body["order_id"].as_str().unwrap_or_default().to_string();
                        (key.to_string(), id)
                    });
                    (Some(status), order)
                }
                Err(_) => (None, None),
            }
        }
        Err(_) => (None, None),
    };
    Outcome {
        at,
        took: at.elapsed(),
        status,
        kind: "order",
        order,
    }
}

/// The longest stretch from the first to the last error of a run of
/// errors (requests that started within `window` of each other).
pub fn longest_error_gap(outcomes: &[Outcome], window: Duration) -> Duration {
    let mut errors: Vec<Instant> = outcomes
        .iter()
        .filter(|o| o.is_error())
        .map(|o| o.at)
        .collect();
    errors.sort();
    let mut longest = Duration::ZERO;
    let mut run_start = None::<Instant>;
    let mut last = None::<Instant>;
    for at in errors {
        match (run_start, last) {
            (Some(start), Some(previous)) if at.duration_since(previous) <= window => {
                longest = longest.max(at.duration_since(start));
            }
            _ => run_start = Some(at),
        }
        last = Some(at);
    }
    longest
}

/// A listener whose accept queue is full: the kernel drops further SYNs,
/// so a connect to it neither succeeds nor fails until its timeout. Kept
/// while the returned connections and listener live.
pub fn accept_queue_full() -> (std::net::TcpListener, Vec<std::net::TcpStream>) {
    let hole = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = hole.local_addr().unwrap();
    let mut filling = Vec::new();
    for _ in 0..4_096 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(stream) => filling.push(stream),
            Err(_) => break,
        }
    }
    (hole, filling)
}

/// `POST /admin/reload` on the admin API at `admin_url`, which must
/// answer `status`; its JSON.
pub async fn reload(admin_url: &str, status: u16) -> Value {
    let answer = client()
        .post(format!("{admin_url}/admin/reload"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), status);
    answer.json().await.unwrap()
}
