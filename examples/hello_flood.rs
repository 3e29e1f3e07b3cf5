//! Open-loop flood of TLS client hellos, for the "handshakes beyond
//! capacity" figures in BENCHMARKS.md. Each connection sends one
//! ClientHello and waits for the server's first answer, then resets: the
//! server does a full handshake's costly step (key exchange and signature)
//! while this side does almost nothing, so one process can offer many times
//! what a CPU-capped proxy can answer. Connections are opened at their
//! intended times whether or not earlier ones were answered.
//!
//! usage: hello_flood ADDR RATE_PER_S SECONDS
//! prints one JSON line: {"offered","sent","answered","refused","unanswered"}
//! (per second; refused: no connection within 3 s; unanswered: no answer
//! within 5 s, or a close)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connections allowed open at once; beyond it a connection due is
/// counted refused (bounded memory).
const MAX_OPEN: usize = 20_000;

#[derive(Default)]
struct Counts {
    sent: AtomicU64,
    answered: AtomicU64,
    refused: AtomicU64,
    unanswered: AtomicU64,
}

/// A ClientHello as a browser's would be (TLS 1.3 and 1.2, ALPN h2 and
/// http/1.1, SNI localhost), the same bytes for every connection.
fn client_hello() -> Vec<u8> {
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls's default versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("a DNS name");
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).expect("a client");
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).expect("a hello");
    hello
}

async fn one(addr: SocketAddr, hello: Arc<Vec<u8>>, counts: Arc<Counts>) {
    let connected = tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr)).await;
    let Ok(Ok(mut tcp)) = connected else {
        counts.refused.fetch_add(1, Ordering::Relaxed);
        return;
    };
    // A reset, not a FIN, at the end: no TIME_WAIT here for tens of
    // thousands of connections.
    let _ = tcp.set_zero_linger();
    if tcp.write_all(&hello).await.is_err() {
        counts.unanswered.fetch_add(1, Ordering::Relaxed);
        return;
    }
    counts.sent.fetch_add(1, Ordering::Relaxed);
    let mut first = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut first)).await {
        Ok(Ok(1)) => counts.answered.fetch_add(1, Ordering::Relaxed),
        _ => counts.unanswered.fetch_add(1, Ordering::Relaxed),
    };
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: hello_flood ADDR RATE_PER_S SECONDS");
        std::process::exit(2);
    }
    let addr: SocketAddr = args[1].parse().expect("ADDR is IP:PORT");
    let rate: f64 = args[2].parse().expect("RATE_PER_S is a number");
    let seconds: f64 = args[3].parse().expect("SECONDS is a number");
    let hello = Arc::new(client_hello());
    let counts = Arc::new(Counts::default());
    let start = Instant::now();
    let total = (rate * seconds) as u64;
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..total {
        let due = start + Duration::from_secs_f64(n as f64 / rate);
        tokio::time::sleep_until(due.into()).await;
        // Finished connections are reaped first: what is left is open.
        while tasks.try_join_next().is_some() {}
        if tasks.len() >= MAX_OPEN {
            counts.refused.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        tasks.spawn(one(addr, Arc::clone(&hello), Arc::clone(&counts)));
    }
    while tasks.join_next().await.is_some() {}
    let per_s = |count: &AtomicU64| count.load(Ordering::Relaxed) as f64 / seconds;
    println!(
        "{}",
        serde_json::json!({
            "offered": rate,
            "sent": per_s(&counts.sent),
            "answered": per_s(&counts.answered),
            "refused": per_s(&counts.refused),
            "unanswered": per_s(&counts.unanswered),
        })
    );
}
