//! An answer whose bytes stop moving is cut off, and the backend's slot
//! its request held is freed: a client that stops reading
//! (`timeouts.client_send_ms`), a shop that stops mid-body
//! (`timeouts.upstream_ms`). Real gateway process, real sockets; the one
//! backend takes one request at a time, so a slot held for good would
//! keep every later request waiting.

mod support;

use std::time::{Duration, Instant};

use support::gateway::{echo_backend, metric_sum, Gateway};
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cut = metric_sum(
            &gateway.metrics().await,
            "gateway_answers_cut_total",
            &[&label],
        );
        if cut >= 1.0 {
            return;
        }
        assert!(Instant::now() < deadline, "no answer was cut for {reason}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let mut reader = tokio::net::TcpStream::connect(&addr).await.unwrap();
    reader
        .write_all(b"GET /endless HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
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
