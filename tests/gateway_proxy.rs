//! The gateway as a proxy and as an operator sees it: headers, bodies,
//! limits, client timeouts, the admin API, reload, SIGTERM, SO_REUSEPORT.
//! The backend here is a small echo server in the test process (it reports
//! what the gateway sent it), on loopback like any backend.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::gateway::{accept_queue_full, echo_backend, exchange, metric_sum, Gateway, BIG};
use support::{client, Part, ADMIN_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn gateway_for(
    addr: SocketAddr,
    config: Option<&str>,
) -> (Gateway, Option<tempfile::TempDir>) {
    let backend = format!("echo={addr}");
    let mut args = vec!["--backend".to_string(), backend];
    let dir = config.map(|text| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(&path, text).unwrap();
        args.extend(["--config".to_string(), path.display().to_string()]);
        dir
    });
    let gateway = Gateway::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    (gateway, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_hop_by_hop_ones_dropped() {
    let (gateway, _dir) = gateway_for(echo_backend().await, None).await;
    let response = client()
        .post(format!("{}/echo", gateway.url))
        .header("Host", "shop.example")
        .header("Connection", "keep-alive, x-hop")
        .header("X-Hop", "secret")
        .header("Keep-Alive", "timeout=5")
        .header("X-Forwarded-For", "203.0.113.7")
        .body(vec![b'x'; 3000])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let seen: Value = response.json().await.unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["host"], "shop.example", "Host is preserved");
    assert_eq!(headers["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-request-id"], request_id.as_str());
    assert!(
        headers.get("x-hop").is_none() && headers.get("keep-alive").is_none(),
        "{headers}"
    );
    assert_eq!(seen["body_len"], 3000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_large_bodies_stream_through_both_ways() {
    let (gateway, _dir) = gateway_for(echo_backend().await, None).await;
    // A chunked upload larger than the retry buffer streams to the backend.
    let addr = gateway.url.trim_start_matches("http://").to_string();
    let mut upload = tokio::net::TcpStream::connect(&addr).await.unwrap();
    upload
        .write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .unwrap();
    for _ in 0..100 {
        upload.write_all(b"400\r\n").await.unwrap();
        upload.write_all(&[b'y'; 1024]).await.unwrap();
        upload.write_all(b"\r\n").await.unwrap();
    }
    upload.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    upload.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body_len\":102400"), "{answer}");
    let streamed = client()
        .get(format!("{}/stream", gateway.url))
        .send()
        .await
        .unwrap();
    let text = streamed.text().await.unwrap();
    assert!(
        text.starts_with("chunk-0;") && text.ends_with("chunk-49;"),
        "{text}"
    );
    // A large answer of known length, twice on the same connections: the
    // second finds the first's backend connection back in the pool.
    let http = client();
    for _ in 0..2 {
        let big = http
            .get(format!("{}/big", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(big.content_length(), Some(BIG as u64));
        let body = big.bytes().await.unwrap();
        assert_eq!(body.len(), BIG);
        assert!(body.iter().enumerate().all(|(i, b)| *b == (i % 256) as u8));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_and_old_and_waiting_clients_are_understood() {
    let (gateway, _dir) = gateway_for(echo_backend().await, None).await;
    let addr = gateway.url.trim_start_matches("http://").to_string();

    // The request-smuggling shapes: refused, the connection closed, nothing
    // sent on (no answer from the backend is counted).
    for smuggled in [
        &b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"[..],
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd",
    ] {
        let answer = exchange(&addr, smuggled).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("\"error\":\"bad_request\""), "{answer}");
    }
    // Chunked is not the final coding: the length cannot be known (RFC
    // 9112 §6.3), so 400, not 501 as it was.
    let answer = exchange(
        &addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_requests_total", &["backend=\"echo\""]),
        0.0,
        "{metrics}"
    );

    // An HTTP/1.0 client gets a body of unknown length without chunks,
    // ended by the close.
    let answer = exchange(&addr, b"GET /stream HTTP/1.0\r\nHost: x\r\n\r\n").await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding"),
        "{head}"
    );
    assert!(
        body.starts_with("chunk-0;") && body.ends_with("chunk-49;"),
        "{body}"
    );

    // A client that waits for 100 Continue gets it before sending its body.
    let mut waiting = tokio::net::TcpStream::connect(&addr).await.unwrap();
    waiting
        .write_all(b"PUT /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
        .await
        .unwrap();
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), waiting.read_exact(&mut interim))
        .await
        .expect("100 Continue arrives before the body is sent")
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    waiting.write_all(b"hello").await.unwrap();
    let mut answer = String::new();
    waiting.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"body_len\":5"), "{answer}");
    assert!(
        !answer.contains("\"expect\""),
        "the backend is not asked to wait: {answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_connections_are_spread_evenly_over_the_serving_threads() {
    let (gateway, _dir) = gateway_for(echo_backend().await, Some("workers = 4\n")).await;
    // One client per connection, each kept open after its request. Dealt by
    // the kernel alone, 16 connections land 4 per thread about 1.5 % of
    // the time.
    let mut clients = Vec::new();
    for _ in 0..16 {
        let kept = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let answer = kept
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        answer.bytes().await.unwrap();
        clients.push(kept);
    }
    let metrics = gateway.metrics().await;
    let per_thread: Vec<f64> = (0..4)
        .map(|n| {
            let label = format!("thread=\"{n}\"");
            metric_sum(&metrics, "gateway_client_connections", &[label.as_str()])
        })
        .collect();
    assert_eq!(per_thread, [4.0; 4], "{metrics}");
    drop(clients);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_shed_with_a_clear_answer() {
    let config = "[limits]\nmax_body_bytes = 1000\nmax_concurrent_requests = 1\n[retry]\nbuffer_bytes = 1000\n";
    let (gateway, _dir) = gateway_for(echo_backend().await, Some(config)).await;
    let http = client();
    let too_big = http
        .post(format!("{}/echo", gateway.url))
        .body(vec![0u8; 2000])
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 413);
    let body: Value = too_big.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");

    let slow = tokio::spawn({
        let url = format!("{}/slow", gateway.url);
        async move { client().get(url).send().await.unwrap().status() }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let shed = http
        .get(format!("{}/echo", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    assert_eq!(shed.json::<Value>().await.unwrap()["error"], "overloaded");
    assert_eq!(slow.await.unwrap(), 200, "the request in flight finishes");
}

/// Sends a keep-alive GET on a new connection to `gateway`; the
/// connection, and its answer's first bytes if they come within `wait`.
async fn get_kept(gateway: &Gateway, wait: Duration) -> (tokio::net::TcpStream, Option<String>) {
    let addr = gateway.url.trim_start_matches("http://");
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    let read = tokio::time::timeout(wait, tcp.read_exact(&mut answer)).await;
    let head = read
        .ok()
        .map(|_| String::from_utf8_lossy(&answer).into_owned());
    (tcp, head)
}

/// Writes `text` as the gateway's config at `path` and reloads it, which
/// must be taken; the answer.
async fn reload_with(gateway: &Gateway, path: &std::path::Path, text: &str) -> Value {
    std::fs::write(path, text).unwrap();
    let (status, reloaded) = admin(reqwest::Method::POST, gateway, "/admin/reload", None).await;
    assert_eq!(status, 200, "{reloaded}");
    reloaded
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_raises_max_connections_while_they_are_open() {
    let (gateway, dir) = gateway_for(
        echo_backend().await,
        Some("workers = 1\n[limits]\nmax_connections = 1\n[timeouts]\nclient_idle_ms = 60000\n"),
    )
    .await;
    let (_first, answer) = get_kept(&gateway, Duration::from_secs(10)).await;
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 200"));
    // The one connection allowed is open (and not idle long enough to be
    // closed): a second waits in the kernel's queue, unanswered.
    let (mut second, answer) = get_kept(&gateway, Duration::from_millis(300)).await;
    assert_eq!(answer, None, "a second connection was served");

    let path = dir.as_ref().unwrap().path().join("gateway.toml");
    let reloaded = reload_with(
        &gateway,
        &path,
        "workers = 1\n[limits]\nmax_connections = 2\n[timeouts]\nclient_idle_ms = 60000\n",
    )
    .await;
    assert_eq!(reloaded["until_restart"], json!([]), "{reloaded}");
    // Accepted now, without a restart, and answered.
    let mut answer = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(10), second.read_exact(&mut answer))
        .await
        .expect("the second connection is served after the reload")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
}

/// A backend whose `/hold` answers only once `release` is notified, and
/// whose `/echo` answers at once.
async fn holding_backend(release: Arc<tokio::sync::Notify>) -> SocketAddr {
    use axum::routing::get;
    let app = axum::Router::new()
        .route(
            "/hold",
            get(move || async move {
                release.notified().await;
                "released"
            }),
        )
        .route("/echo", get(|| async { "echo" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_max_concurrent_requests_while_requests_are_in_flight() {
    let release = Arc::new(tokio::sync::Notify::new());
    let backend = holding_backend(Arc::clone(&release)).await;
    let config = |most: u32| format!("[limits]\nmax_concurrent_requests = {most}\n");
    let (gateway, dir) = gateway_for(backend, Some(&config(2))).await;
    let path = dir.as_ref().unwrap().path().join("gateway.toml");
    let status = || {
        let url = format!("{}/echo", gateway.url);
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    };
    // One request stays in the gateway, its answer held back by the shop.
    let held = tokio::spawn({
        let url = format!("{}/hold", gateway.url);
        async move { client().get(url).send().await.unwrap().status().as_u16() }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_sum(&gateway.metrics().await, "gateway_in_flight_requests", &[]) < 1.0 {
        assert!(Instant::now() < deadline, "the held request never arrived");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status().await, 200, "one of two is free");

    // Lowered to one while it is in flight: it goes on, and the free one
    // is taken back, so the next is shed.
    let reloaded = reload_with(&gateway, &path, &config(1)).await;
    assert_eq!(reloaded["until_restart"], json!([]), "{reloaded}");
    assert_eq!(status().await, 503, "shed: the one allowed is held");
    // Raised: admitted at once.
    reload_with(&gateway, &path, &config(3)).await;
    assert_eq!(status().await, 200);
    release.notify_one();
    assert_eq!(held.await.unwrap(), 200, "the held request was not cut");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_the_backend_connect_timeout() {
    let (hole, _filling) = accept_queue_full();
    // Only the hole, kept in rotation: no health check or ejection takes
    // it out, so each request tries to connect to it.
    let config = |connect_ms: u32| {
        format!(
            "[health]\ninterval_ms = 60000\nhung_after_ms = 600000\n\
             [outlier]\nconsecutive_connect_failures = 1000\n\
             [timeouts]\nconnect_ms = {connect_ms}\n"
        )
    };
    let (gateway, dir) = gateway_for(hole.local_addr().unwrap(), Some(&config(1500))).await;
    let path = dir.as_ref().unwrap().path().join("gateway.toml");
    let detail = || {
        let url = format!("{}/echo", gateway.url);
        async move {
            let answer = client().get(url).send().await.unwrap();
            assert_eq!(answer.status(), 503, "no backend took the request");
            answer.json::<Value>().await.unwrap()["detail"]
                .as_str()
                .unwrap()
                .to_string()
        }
    };
    assert!(detail().await.ends_with("within 1500 ms"));
    let reloaded = reload_with(&gateway, &path, &config(100)).await;
    assert_eq!(reloaded["until_restart"], json!([]), "{reloaded}");
    let after = detail().await;
    assert!(after.ends_with("within 100 ms"), "{after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_holding_its_share_of_connections_gets_no_more() {
    let config = |most: u32| {
        format!(
            "[limits]\nmax_connections_per_client = {most}\n\
             [timeouts]\nclient_idle_ms = 60000\n"
        )
    };
    let (gateway, dir) = gateway_for(echo_backend().await, Some(&config(3))).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (kept, answer) = get_kept(&gateway, Duration::from_secs(10)).await;
        assert_eq!(answer.as_deref(), Some("HTTP/1.1 200"));
        held.push(kept);
    }
    // A fourth from the same address is closed unanswered.
    let addr = gateway.url.trim_start_matches("http://");
    let mut fourth = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = fourth
        .write_all(b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await;
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), fourth.read_to_end(&mut answer))
        .await
        .expect("the gateway closed it");
    assert!(
        closed.is_err() || answer.is_empty(),
        "a fourth connection was answered: {}",
        String::from_utf8_lossy(&answer)
    );
    let refused = || async {
        metric_sum(
            &gateway.metrics().await,
            "gateway_client_connections_refused_total",
            &[],
        )
    };
    assert_eq!(refused().await, 1.0);
    // One closes: its place comes back.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (kept, answer) = get_kept(&gateway, Duration::from_secs(10)).await;
        if answer.as_deref() == Some("HTTP/1.1 200") {
            held.push(kept);
            break;
        }
        assert!(Instant::now() < deadline, "the place never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Turned off by a reload: the same client may open more.
    let path = dir.as_ref().unwrap().path().join("gateway.toml");
    let reloaded = reload_with(&gateway, &path, &config(0)).await;
    assert_eq!(reloaded["until_restart"], json!([]), "{reloaded}");
    let (_fourth, answer) = get_kept(&gateway, Duration::from_secs(10)).await;
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_shortens_the_idle_timeout_for_connections_after_it() {
    let (gateway, dir) = gateway_for(
        echo_backend().await,
        Some("[timeouts]\nclient_idle_ms = 60000\n"),
    )
    .await;
    let path = dir.as_ref().unwrap().path().join("gateway.toml");
    let reloaded = reload_with(&gateway, &path, "[timeouts]\nclient_idle_ms = 300\n").await;
    assert_eq!(reloaded["until_restart"], json!([]), "{reloaded}");
    // A connection after the reload, idle once answered, is closed after
    // 300 ms, not 60 s.
    let (mut idle, answer) = get_kept(&gateway, Duration::from_secs(10)).await;
    assert_eq!(answer.as_deref(), Some("HTTP/1.1 200"));
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest))
        .await
        .expect("closed by the idle timeout the reload set")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_disconnected() {
    let config = "[timeouts]\nclient_header_ms = 400\nclient_idle_ms = 300\n";
    let (gateway, _dir) = gateway_for(echo_backend().await, Some(config)).await;
    let addr = gateway.url.trim_start_matches("http://").to_string();

    let mut slowloris = tokio::net::TcpStream::connect(&addr).await.unwrap();
    slowloris
        .write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), slowloris.read(&mut buf)).await;
    assert!(
        read.is_ok(),
        "a client that never finishes its headers is cut off"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    let mut idle = tokio::net::TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let n = idle.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let started = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if idle.read(&mut buf).await.unwrap_or(0) == 0 {
                break;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an idle keep-alive connection is closed");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

async fn admin(
    method: reqwest::Method,
    gateway: &Gateway,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client()
        .request(method, format!("{}{path}", gateway.admin_url))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_add_drain_and_remove_backends() {
    let (first, second) = (echo_backend().await, echo_backend().await);
    let (gateway, _dir) = gateway_for(first, None).await;
    let unauthorized = client()
        .get(format!("{}/admin/backends", gateway.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let lowercase = client()
        .get(format!("{}/admin/backends", gateway.admin_url))
        .header("authorization", format!("bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(lowercase.status(), 200, "the scheme is case-insensitive");

    let add = |body: Value| {
        admin(
            reqwest::Method::POST,
            &gateway,
            "/admin/backends",
            Some(body),
        )
    };
    let (status, added) = add(json!({ "name": "second", "addr": second.to_string() })).await;
    assert_eq!(status, 201, "{added}");
    assert_eq!(added["pool"], "primary");
    let (status, _) = add(json!({ "name": "second", "addr": second.to_string() })).await;
    assert_eq!(status, 409);
    let (status, refused) = add(json!({ "name": "third", "addr": "nowhere" })).await;
    assert_eq!(status, 422);
    assert!(
        refused["detail"].as_str().unwrap().starts_with("addr:"),
        "{refused}"
    );
    let spare = json!({ "name": "third", "addr": "127.0.0.1:1", "pool": "spare" });
    let (status, refused) = add(spare).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap().contains("pool"),
        "{refused}"
    );

    for _ in 0..20 {
        let ok = client()
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
    }
    let (status, draining) = admin(
        reqwest::Method::POST,
        &gateway,
        "/admin/backends/echo/drain",
        None,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(draining["state"], "draining");
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.backends().await.len() != 1 {
        assert!(
            Instant::now() < deadline,
            "the drained backend was never removed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = gateway.backend("second").await["requests"]
        .as_u64()
        .unwrap();
    for _ in 0..10 {
        client()
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(
        gateway.backend("second").await["requests"]
            .as_u64()
            .unwrap(),
        before + 10
    );

    let (status, _) = admin(
        reqwest::Method::DELETE,
        &gateway,
        "/admin/backends/second",
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = admin(
        reqwest::Method::DELETE,
        &gateway,
        "/admin/backends/second",
        None,
    )
    .await;
    assert_eq!(status, 404);
    let none = client()
        .get(format!("{}/echo", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), 503);
    assert!(none.headers().contains_key("retry-after"));
    let (status, events) = admin(reqwest::Method::GET, &gateway, "/admin/events", None).await;
    assert_eq!(status, 200);
    let states: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert!(
        states.contains(&"draining") && states.contains(&"removed"),
        "{states:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_bad_config_changes_nothing() {
    let (first, second) = (echo_backend().await, echo_backend().await);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    let write = |text: String| std::fs::write(&path, text).unwrap();
    write(format!(
        "[[backend]]\nname = \"first\"\naddr = \"{first}\"\n"
    ));
    let path_text = path.display().to_string();
    let gateway = Gateway::start(&["--config", &path_text]).await;
    assert_eq!(gateway.backends().await.len(), 1);

    write(format!(
        "[[backend]]\nname = \"first\"\naddr = \"{first}\"\n[[backend]]\nname = \"second\"\naddr = \"{second}\"\npool = \"backup\"\n"
    ));
    gateway.part.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.backends().await.len() != 2 {
        assert!(Instant::now() < deadline, "SIGHUP did not reload");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(gateway.backend("second").await["pool"], "backup");

    write("[retry]\nattempts = 0\n".to_string());
    let (status, refused) = admin(reqwest::Method::POST, &gateway, "/admin/reload", None).await;
    assert_eq!(status, 422);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("retry.attempts"),
        "{refused}"
    );
    assert_eq!(
        gateway.backends().await.len(),
        2,
        "a refused reload changes nothing"
    );
}

/// The names of the gateway's backends.
async fn backend_names(gateway: &Gateway) -> Vec<String> {
    let backends = gateway.backends().await;
    let names = backends.iter().filter_map(|b| b["name"].as_str());
    names.map(str::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_flagged_and_added_backends_and_drains_only_what_the_file_dropped() {
    let (flagged, filed, added) = (
        echo_backend().await,
        echo_backend().await,
        echo_backend().await,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!("[[backend]]\nname = \"filed\"\naddr = \"{filed}\"\n"),
    )
    .unwrap();
    let flag = format!("flagged={flagged}");
    let path_text = path.display().to_string();
    let gateway = Gateway::start(&["--config", &path_text, "--backend", &flag]).await;
    let body = json!({ "name": "added", "addr": added.to_string() });
    let (status, _) = admin(
        reqwest::Method::POST,
        &gateway,
        "/admin/backends",
        Some(body),
    )
    .await;
    assert_eq!(status, 201);

    // The file no longer names `filed`; the flag and the admin API still
    // stand for theirs (before, a reload drained the flagged shops: what
    // `flashguard up` gives its gateway).
    reload_with(&gateway, &path, "access_log = true\n").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend_names(&gateway).await.contains(&"filed".to_string()) {
        assert!(
            Instant::now() < deadline,
            "the dropped backend was not drained"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut names = backend_names(&gateway).await;
    names.sort();
    assert_eq!(names, ["added", "flagged"]);
    for _ in 0..4 {
        let echoed = client()
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(echoed.status(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_requests_in_flight_and_a_second_gateway_keeps_the_port() {
    let backend = echo_backend().await;
    let (mut first, _dir) = gateway_for(backend, None).await;
    let port = first.url.rsplit(':').next().unwrap().to_string();
    let listen = format!("127.0.0.1:{port}");
    let backend_flag = format!("echo={backend}");
    let mut second = Part::launch(
        &[
            "gateway",
            "--listen",
            &listen,
            "--admin-listen",
            "127.0.0.1:0",
            "--backend",
            &backend_flag,
        ],
        Some(ADMIN_TOKEN),
    );
    assert_eq!(
        second.expect_line("listening on ").await,
        format!("http://{listen}")
    );

    let in_flight = tokio::spawn({
        let url = format!("{}/slow", first.url);
        async move { client().get(url).send().await.map(|r| r.status().as_u16()) }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    first.part.signal("TERM");
    let exit = tokio::time::timeout(Duration::from_secs(10), first.part.child.wait())
        .await
        .expect("the gateway exits after draining")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    assert_eq!(
        in_flight.await.unwrap().unwrap(),
        200,
        "the slow request finished"
    );
    for _ in 0..20 {
        let fresh = reqwest::Client::new();
        let response = fresh
            .get(format!("http://{listen}/echo"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            200,
            "the other gateway answers on the same port"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_rate_gets_429() {
    let config = "[limits]\nper_client_rps = 5\nper_client_burst = 5\n";
    let (gateway, _dir) = gateway_for(echo_backend().await, Some(config)).await;
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let response = http
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert!(response.headers().contains_key("retry-after"));
            assert_eq!(
                response.json::<Value>().await.unwrap()["error"],
                "rate_limited"
            );
            statuses.push(429);
        } else {
            statuses.push(response.status().as_u16());
        }
    }
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| **s == 429).count() >= 10,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_stats_count_clients_from_trusted_forwarded_for() {
    let config = "trusted_proxies = [\"127.0.0.1\"]\n";
    let (gateway, _dir) = gateway_for(echo_backend().await, Some(config)).await;
    let http = client();
    for n in 0..60 {
        let client_ip = format!("10.1.0.{}", n % 20);
        let response = http
            .get(format!("{}/echo", gateway.url))
            .header("X-Forwarded-For", client_ip)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let summary = loop {
        let (status, summary) = admin(
            reqwest::Method::GET,
            &gateway,
            "/admin/traffic?seconds=30",
            None,
        )
        .await;
        assert_eq!(status, 200);
        if summary["requests_per_s"].as_f64().unwrap_or(0.0)
            * summary["seconds"].as_f64().unwrap_or(0.0)
            >= 60.0
        {
            break summary;
        }
        assert!(
            Instant::now() < deadline,
            "traffic never counted: {summary}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let distinct = summary["distinct_clients"].as_f64().unwrap();
    assert!((18.0..=22.0).contains(&distinct), "{summary}");
    assert_eq!(summary["paths"]["other"], 1.0, "{summary}");
    let busiest = summary["busiest"].as_array().unwrap();
    assert!(
        busiest
            .iter()
            .all(|b| b[0].as_str().unwrap().starts_with("10.1.0.")),
        "{summary}"
    );
}
