//! A flood of TLS client hellos (a sale's opening, or an attack: each
//! costs the gateway a full handshake's key exchange and signature, and
//! the sender nothing) must not take the CPU from the customers already
//! connected. One serving thread, so the turns are the only thing between
//! the two; the share is asserted in counts of requests per handshake, not
//! in time.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::gateway::{echo_backend, metric_sum};
use support::tls::TestCa;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Hellos sent at once.
const FLOOD: usize = 400;

/// A browser-like ClientHello (rustls's, ALPN h2 and http/1.1), the same
/// bytes for every connection.
fn client_hello(ca: &TestCa) -> Vec<u8> {
    let name = rustls::pki_types::ServerName::try_from("shop.test").unwrap();
    let mut conn =
        rustls::ClientConnection::new(ca.rustls_client(&[b"h2", b"http/1.1"]), name).unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Sends `hello` on a new connection and waits for the server's first
/// byte; whether it came.
async fn answered(addr: String, hello: Arc<Vec<u8>>) -> bool {
    let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
        return false;
    };
    if tcp.write_all(&hello).await.is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(60), tcp.read(&mut first)).await;
    matches!(read, Ok(Ok(1)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_client_hellos_leaves_connected_customers_a_turn_per_handshake() {
    let backend = echo_backend().await;
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let (gateway, _dir) = support::tls::gateway_with_config(
        &leaf,
        "workers = 1\n",
        &["--backend", &format!("echo={backend}")],
    )
    .await;
    let addr = gateway.url.trim_start_matches("https://").to_string();

    // A connected customer: one kept HTTP/1.1 connection, a request after
    // another, counted.
    let served = Arc::new(AtomicU64::new(0));
    let customer = {
        let (client, url, served) = (ca.client(false), gateway.url.clone(), Arc::clone(&served));
        tokio::spawn(async move {
            loop {
                let answer = client.get(format!("{url}/echo")).send().await.unwrap();
                assert_eq!(answer.status(), 200);
                answer.bytes().await.unwrap();
                served.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while served.load(Ordering::Relaxed) < 10 {
        assert!(!customer.is_finished(), "the customer's requests failed");
        assert!(
            tokio::time::Instant::now() < deadline,
            "the customer is not served"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let hello = Arc::new(client_hello(&ca));
    let before = served.load(Ordering::Relaxed);
    let flood: Vec<_> = (0..FLOOD)
        .map(|_| tokio::spawn(answered(addr.clone(), Arc::clone(&hello))))
        .collect();
    let mut hellos_answered = 0;
    for hello in flood {
        hellos_answered += usize::from(hello.await.unwrap());
    }
    let during = served.load(Ordering::Relaxed) - before;
    assert!(!customer.is_finished(), "the customer's requests failed");
    customer.abort();

    // Every hello was answered, in turns: the customer's request had one
    // turn after each handshake (two wake-ups a request, so about one
    // request per two handshakes). Served as they came, the hellos took
    // the thread in one block and the customer got a few requests through
    // all of them.
    assert_eq!(hellos_answered, FLOOD);
    assert!(
        during as usize >= FLOOD / 10,
        "the connected customer got {during} requests through {FLOOD} handshakes"
    );
    // The hellos beyond the line (64 a thread) waited in the kernel's
    // accept queue, not in the gateway; and every place in the line was
    // given back.
    let metrics = gateway.metrics().await;
    assert!(metric_sum(&metrics, "gateway_tls_accept_pauses_total", &[]) >= 1.0);
    assert_eq!(metric_sum(&metrics, "gateway_tls_hellos_waiting", &[]), 0.0);
}
