//! An answer whose bytes stop moving is cut off, and the backend's slot
//! its request held is freed: a client that stops reading
//! (`timeouts.client_send_ms`), a shop that stops mid-body
//! (`timeouts.upstream_ms`). A request whose HTTP/2 client resets it is
//! given up, at the shop or in the queue. Real gateway process, real
//! sockets; the one backend takes one request at a time, so a slot held
//! for good would keep every later request waiting.

mod support;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use support::gateway::{echo_backend, metric_sum, wait_for_metrics, wait_for_slots, Gateway};
use support::tls::{CertFiles, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CONFIG: &str = "\
[concurrency]
adaptive = false
initial = 1
min = 1
max = 1

[timeouts]
client_send_ms = 500
upstream_ms = 1000
";

/// The gateway with one slot at its one backend; over TLS when `leaf`
/// is given.
async fn one_slot_gateway(leaf: Option<&CertFiles>) -> (Gateway, tempfile::TempDir) {
    gateway_with(CONFIG, leaf).await
}

/// The gateway in front of an echo backend with `config` as its
/// gateway.toml, in a directory of its own (returned with it).
async fn gateway_with(config: &str, leaf: Option<&CertFiles>) -> (Gateway, tempfile::TempDir) {
    let backend = echo_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, config).unwrap();
    let backend = format!("echo={backend}");
    let args = ["--backend", &backend, "--config", path.to_str().unwrap()];
    let gateway = match leaf {
        Some(leaf) => support::tls::gateway(leaf, &args).await,
        None => Gateway::start(&args).await,
    };
    (gateway, dir)
}

/// Waits until `gateway_answers_cut` for `reason` is at least 1.
async fn wait_for_cut(gateway: &Gateway, reason: &str) {
    let label = format!("reason=\"{reason}\"");
    let read = |metrics: &str| metric_sum(metrics, "gateway_answers_cut_total", &[&label]);
    let what = format!("no answer was cut for {reason}");
    wait_for_metrics(gateway, &what, read, |cut| *cut >= 1.0).await;
}

/// A client that asks for an answer that never ends and reads none of it.
async fn endless_reader(addr: &str) -> tokio::net::TcpStream {
    let mut reader = tokio::net::TcpStream::connect(addr).await.unwrap();
    reader
        .write_all(b"GET /endless HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    reader
}

async fn echo_status(gateway: &Gateway) -> u16 {
    echo_status_with(&support::client(), gateway).await
}

async fn echo_status_with(client: &reqwest::Client, gateway: &Gateway) -> u16 {
    client
        .get(format!("{}/echo", gateway.url))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_its_slot_freed() {
    let (gateway, _dir) = one_slot_gateway(None).await;
    assert_eq!(echo_status(&gateway).await, 200);
    let addr = gateway.url.trim_start_matches("http://").to_string();
    // An answer that never ends, to a client that reads none of it: the
    // socket's buffers fill, whatever their size, and the gateway waits.
    let mut reader = endless_reader(&addr).await;
    wait_for_cut(&gateway, "client_stalled").await;
    // The one slot is free again.
    assert_eq!(echo_status(&gateway).await, 200);
    // And the stalled client's connection was closed: what it has left to
    // read ends.
    let mut sink = vec![0u8; 1 << 20];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the stalled client's connection stayed open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_gives_its_slot_back_long_before_it_is_cut() {
    // One slot, and a client may take nothing of its answer for 60 s.
    let config = CONFIG.replace("client_send_ms = 500", "client_send_ms = 60000");
    let (gateway, _dir) = gateway_with(&config, None).await;
    let addr = gateway.url.trim_start_matches("http://").to_string();
    let reader = endless_reader(&addr).await;
    // Once its socket is full, the answer waits on the client, not the
    // shop: it keeps its connection to the shop but gives back the slot.
    wait_for_slots(&gateway, 1.0, 0.0).await;
    // The one slot serves others while the reader is still connected and
    // its answer not cut.
    for _ in 0..5 {
        assert_eq!(echo_status(&gateway).await, 200);
    }
    let cut = metric_sum(&gateway.metrics().await, "gateway_answers_cut_total", &[]);
    assert_eq!(cut, 0.0, "the reader's answer was cut");
    drop(reader);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_that_stops_mid_body_is_cut_off_and_its_slot_freed() {
    let (gateway, _dir) = one_slot_gateway(None).await;
    let addr = gateway.url.trim_start_matches("http://").to_string();
    let started = Instant::now();
    let answer =
        support::gateway::exchange(&addr, b"GET /stall HTTP/1.1\r\nHost: shop\r\n\r\n").await;
    // The head and the first chunk came; then the connection was closed
    // without the body's end (a chunked body's last chunk), so the client
    // knows its copy is cut short.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("first;"), "{answer}");
    assert!(!answer.ends_with("0\r\n\r\n"), "{answer}");
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "cut before upstream_ms: {:?}",
        started.elapsed()
    );
    wait_for_cut(&gateway, "backend_stalled").await;
    assert_eq!(echo_status(&gateway).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_stream_whose_client_opens_no_window_is_cut_off_and_its_slot_freed() {
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let (gateway, _dir) = one_slot_gateway(Some(&leaf)).await;
    let customer = ca.client(true);
    assert_eq!(echo_status_with(&customer, &gateway).await, 200);
    let addr = gateway.url.trim_start_matches("https://").to_string();
    let tls = support::tls::connect(ca.rustls_client(&[b"h2"]), &addr, "shop.test")
        .await
        .unwrap();
    let (mut sender, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    let request = http::Request::get("https://shop.test/endless")
        .body(())
        .unwrap();
    let (answer, _) = sender.send_request(request, true).unwrap();
    // The head comes; the body is never read, so the client's window (64
    // KiB) is never opened again and the stream waits for it.
    let answer = answer.await.unwrap();
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    wait_for_cut(&gateway, "client_stalled").await;
    // The one slot is free again, and the stalled stream was reset.
    assert_eq!(echo_status_with(&customer, &gateway).await, 200);
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match body.data().await {
                Some(Ok(data)) => {
                    let _ = body.flow_control().release_capacity(data.len());
                }
                Some(Err(err)) => return err.is_reset(),
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(ended, Ok(true), "the stalled stream was not reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_that_stop_reading_raise_the_default_alert() {
    let config = "[concurrency]\nadaptive = false\ninitial = 32\nmax = 32\n\n\
                  [timeouts]\nclient_send_ms = 300\n";
    let (gateway, dir) = gateway_with(config, None).await;
    let (_monitor, url) = support::monitor_with_default_rules(&gateway.admin_url, dir.path()).await;
    // The monitor has seen the count at 0 (the gateway exports it from
    // the start), so the burst below is an increase it can see.
    support::poll_json(
        &format!("{url}/api/query?metric=gateway_answers_cut_total&reason=client_stalled"),
        Duration::from_secs(30),
        |v| v.as_array().is_some_and(|a| !a.is_empty()),
    )
    .await;
    // Twelve clients at once ask for an endless answer and read none of it.
    let addr = gateway.url.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for _ in 0..12 {
        let mut client = tokio::net::TcpStream::connect(&addr).await.unwrap();
        client
            .write_all(b"GET /endless HTTP/1.1\r\nHost: shop\r\n\r\n")
            .await
            .unwrap();
        stalled.push(client);
    }
    let alert = support::firing_alert(&url, "AnswersCut").await;
    assert_eq!(alert["labels"]["reason"], "client_stalled", "{alert}");
    drop(stalled);
}

/// What a holding shop saw: requests for `/hold` that arrived, and those
/// it stopped working on because their connection closed.
#[derive(Default)]
struct Holds {
    arrived: AtomicUsize,
    dropped: AtomicUsize,
}

/// Counts a held request dropped, when its handler's future is.
struct Dropped(Arc<Holds>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

/// A shop that never answers `/hold` (until its connection closes, when
/// hyper drops the handler), and answers `/echo` and `/readyz`.
async fn holding_shop() -> (SocketAddr, Arc<Holds>) {
    let holds = Arc::new(Holds::default());
    let seen = Arc::clone(&holds);
    let hold = move || {
        let holds = Arc::clone(&seen);
        async move {
            holds.arrived.fetch_add(1, Ordering::SeqCst);
            let _dropped = Dropped(holds);
            std::future::pending::<&'static str>().await
        }
    };
    let app = axum::Router::new()
        .route("/hold", axum::routing::get(hold))
        .route("/echo", axum::routing::get(|| async { "echo" }))
        .route("/readyz", axum::routing::get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, holds)
}

/// One slot at the holding shop over TLS; the shop's answer and a queued
/// request would each wait far longer than any test does.
async fn holding_gateway(leaf: &CertFiles) -> (Gateway, Arc<Holds>, tempfile::TempDir) {
    let (shop, holds) = holding_shop().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let config = "[concurrency]\nadaptive = false\ninitial = 1\nmin = 1\nmax = 1\n\n\
                  [timeouts]\nupstream_ms = 120000\n\n[queue]\ntimeout_ms = 120000\n";
    std::fs::write(&path, config).unwrap();
    let backend = format!("hold={shop}");
    let args = ["--backend", &backend, "--config", path.to_str().unwrap()];
    (support::tls::gateway(leaf, &args).await, holds, dir)
}

/// Polls `done` until it holds, for at most 20 s.
async fn eventually<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn metric(gateway: &Gateway, family: &str, labels: &[&str]) -> f64 {
    metric_sum(&gateway.metrics().await, family, labels)
}

/// An HTTP/2 connection to the gateway, driven in the background.
async fn h2_sender(ca: &TestCa, gateway: &Gateway) -> h2::client::SendRequest<Bytes> {
    let addr = gateway.url.trim_start_matches("https://").to_string();
    let tls = support::tls::connect(ca.rustls_client(&[b"h2"]), &addr, "shop.test")
        .await
        .unwrap();
    let (sender, connection) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(connection);
    sender
}

/// Opens a stream for `/hold`; its handle, to reset it.
async fn hold(sender: &h2::client::SendRequest<Bytes>) -> h2::SendStream<Bytes> {
    let request = http::Request::get("https://shop.test/hold")
        .body(())
        .unwrap();
    let mut ready = sender.clone().ready().await.unwrap();
    ready.send_request(request, true).unwrap().1
}

/// The holding gateway, an HTTP/2 connection to it, and a first request
/// for `/hold` at the shop, holding the one slot.
struct HeldAtShop {
    ca: TestCa,
    gateway: Gateway,
    holds: Arc<Holds>,
    sender: h2::client::SendRequest<Bytes>,
    first: h2::SendStream<Bytes>,
    _dir: tempfile::TempDir,
}

impl HeldAtShop {
    async fn start() -> HeldAtShop {
        let ca = TestCa::new();
        let leaf = ca.leaf("shop", &["shop.test"]);
        let (gateway, holds, dir) = holding_gateway(&leaf).await;
        let sender = h2_sender(&ca, &gateway).await;
        let first = hold(&sender).await;
        eventually("the shop has the first request", || async {
            holds.arrived.load(Ordering::SeqCst) == 1
        })
        .await;
        HeldAtShop {
            ca,
            gateway,
            holds,
            sender,
            first,
            _dir: dir,
        }
    }

    /// Resets the first request; the shop sees its connection closed and
    /// stops working on it, long before the upstream timeout of two
    /// minutes.
    async fn reset_first(&mut self) {
        self.first.send_reset(h2::Reason::CANCEL);
        eventually("the shop stopped on the reset request", || async {
            self.holds.dropped.load(Ordering::SeqCst) == 1
        })
        .await;
    }

    /// The one slot is free: the next customer is served.
    async fn next_customer_is_served(&self) {
        let echoed = self
            .ca
            .client(true)
            .get(format!("{}/echo", self.gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_reset_at_the_shop_is_given_up_and_its_slot_freed() {
    let mut held = HeldAtShop::start().await;
    held.reset_first().await;
    eventually("the answer is counted as the client's 499", || async {
        let labels = ["backend=\"gateway\"", "status=\"499\""];
        metric(&held.gateway, "gateway_requests_total", &labels).await == 1.0
    })
    .await;
    held.next_customer_is_served().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_request_reset_in_the_queue_leaves_it_and_never_reaches_the_shop() {
    let mut held = HeldAtShop::start().await;
    // The first holds the one slot; the second waits in the queue.
    let mut queued = hold(&held.sender).await;
    eventually("the second request waits in the queue", || async {
        metric(&held.gateway, "gateway_queue_waiting", &[]).await == 1.0
    })
    .await;
    queued.send_reset(h2::Reason::CANCEL);
    eventually("the reset request left the queue", || async {
        let text = held.gateway.metrics().await;
        let abandoned = ["result=\"abandoned\""];
        metric_sum(&text, "gateway_queue_wait_seconds_count", &abandoned) == 1.0
            && metric_sum(&text, "gateway_queue_waiting", &[]) == 0.0
    })
    .await;
    // Its place took no slot: once the first is reset too, the slot is
    // free, and the queued request never reached the shop.
    held.reset_first().await;
    held.next_customer_is_served().await;
    assert_eq!(held.holds.arrived.load(Ordering::SeqCst), 1);
}
