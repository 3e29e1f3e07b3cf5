//! A rolling restart of the gateway that its clients do not notice: two
//! gateways share a port (SO_REUSEPORT), the old one is sent SIGTERM while
//! keep-alive clients keep reading, twice over. The clients here never
//! retry — they speak HTTP/1.1 by hand and count any request that gets no
//! answer — because a retrying client (reqwest retries a request a closed
//! pooled connection could not carry) would hide exactly what is tested.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use support::{Part, ADMIN_TOKEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Clients reading at once, each on its own keep-alive connection.
const CLIENTS: usize = 8;

async fn hello_backend() -> String {
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/readyz", get(|| async { "ready" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr.to_string()
}

async fn gateway_on(listen: &str, backend: &str) -> Part {
    let backend = format!("hello={backend}");
    let mut part = Part::launch(
        &[
            "gateway",
            "--listen",
            listen,
            "--admin-listen",
            "127.0.0.1:0",
            "--backend",
            &backend,
        ],
        Some(ADMIN_TOKEN),
    );
    let url = part.expect_line("listening on ").await;
    assert!(url.ends_with(listen.rsplit(':').next().unwrap()), "{url}");
    part
}

/// What the clients saw.
#[derive(Default)]
struct Tally {
    answered: AtomicU64,
    closed_by_gateway: AtomicU64,
    failed: AtomicU64,
}

/// One answer on `stream`, or why none came: `Ok(close)` says whether the
/// gateway asked for the connection to close.
async fn one_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<bool, String> {
    stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .map_err(|e| format!("write: {e}"))?;
    buffer.clear();
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                return Err(format!("answered {head}"));
            }
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("no content-length")?;
            while buffer.len() < end + 4 + length {
                let mut chunk = [0u8; 4096];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return Err("body cut off".into()),
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            return Ok(head.contains("connection: close"));
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk).await {
            Ok(0) => return Err("closed without an answer".into()),
            Err(e) => return Err(format!("read: {e}")),
            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Reads in a loop on one keep-alive connection, reconnecting only when
/// the gateway said `Connection: close`.
async fn client(addr: String, tally: Arc<Tally>, running: Arc<AtomicBool>) {
    let mut buffer = Vec::new();
    let mut stream: Option<TcpStream> = None;
    while running.load(Ordering::Relaxed) {
        let conn = match &mut stream {
            Some(conn) => conn,
            None => match TcpStream::connect(&addr).await {
                Ok(conn) => stream.insert(conn),
                Err(e) => {
                    eprintln!("connect refused: {e}");
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        match one_request(conn, &mut buffer).await {
            Ok(close) => {
                tally.answered.fetch_add(1, Ordering::Relaxed);
                if close {
                    tally.closed_by_gateway.fetch_add(1, Ordering::Relaxed);
                    stream = None;
                }
            }
            Err(why) => {
                eprintln!("a request failed: {why}");
                tally.failed.fetch_add(1, Ordering::Relaxed);
                stream = None;
            }
        }
        // A few hundred requests a second per client: busy, not flooding.
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Sends SIGTERM and waits for a clean exit.
async fn stop(mut gateway: Part) {
    gateway.signal("TERM");
    let exit = tokio::time::timeout(Duration::from_secs(20), gateway.child.wait())
        .await
        .expect("the gateway exits after draining")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_keep_alive_load_fails_no_request() {
    let backend = hello_backend().await;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut old = gateway_on(&listen, &backend).await;

    let tally = Arc::new(Tally::default());
    let running = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            tokio::spawn(client(
                listen.clone(),
                Arc::clone(&tally),
                Arc::clone(&running),
            ))
        })
        .collect();
    let answered_by = |min: u64| {
        let tally = Arc::clone(&tally);
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while tally.answered.load(Ordering::Relaxed) < min {
                assert!(
                    Instant::now() < deadline,
                    "the clients are not being answered"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    answered_by(200).await;
    for _ in 0..2 {
        let new = gateway_on(&listen, &backend).await;
        let before = tally.answered.load(Ordering::Relaxed);
        stop(old).await;
        old = new;
        answered_by(before + 200).await;
    }
    running.store(false, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    stop(old).await;

    let failed = tally.failed.load(Ordering::Relaxed);
    let closed = tally.closed_by_gateway.load(Ordering::Relaxed);
    let answered = tally.answered.load(Ordering::Relaxed);
    assert_eq!(failed, 0, "{failed} of {answered} requests got no answer");
    assert!(
        closed >= CLIENTS as u64,
        "each client's connection to a stopping gateway ends with Connection: close ({closed})"
    );
}
