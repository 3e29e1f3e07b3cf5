//! A shop's life outside the happy path: SIGTERM drains and exits 0; a
//! database that goes away is answered with 503 at once, and the shop
//! recovers by itself when it comes back.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{client, order, put_product, Shop};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[tokio::test]
async fn sigterm_turns_readyz_503_then_exits_zero() {
    let db = support::sqlite_db();
    let config = db.dir.path().join("shop.toml");
    std::fs::write(&config, "[shutdown]\ndrain_delay_ms = 1500\n").unwrap();
    let mut shop = Shop::start_with(
        &db.url,
        &["--config", config.to_str().unwrap()],
        Some(support::ADMIN_TOKEN),
    )
    .await;
    put_product(
        &shop.url,
        "hot",
        json!({ "name": "Hot", "price_cents": 1, "stock": 5 }),
    )
    .await;
    shop.signal("TERM");
    let c = client();
    shop.wait_readyz(503, Duration::from_secs(5)).await;
    // While draining, requests already on their way are still served.
    let (status, _, body) = order(
        &c,
        &shop.url,
        "late",
        json!({ "sku": "hot", "quantity": 1, "customer": "a" }),
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    let exit = tokio::time::timeout(Duration::from_secs(15), shop.part.child.wait())
        .await
        .expect("exits")
        .unwrap();
    assert_eq!(exit.code(), Some(0), "SIGTERM ends the shop with status 0");
}

/// A TCP forwarder to PostgreSQL that the test can cut and restore, so the
/// shop sees its real database vanish and come back.
struct Cable {
    addr: std::net::SocketAddr,
    cut: Arc<Notify>,
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl Cable {
    async fn to(target: String) -> Cable {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(Notify::new());
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (cut2, up2) = (cut.clone(), up.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(std::sync::atomic::Ordering::SeqCst) {
                    continue; // dropped: connection refused-ish (reset)
                }
                let target = target.clone();
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        Cable { addr, cut, up }
    }

    fn unplug(&self) {
        self.up.store(false, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn plug(&self) {
        self.up.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

#[tokio::test]
async fn an_unreachable_database_is_answered_fast_and_recovered_from() {
    let db_url = support::pg_database().await;
    let rest = db_url
        .split_once("@")
        .map(|(_, rest)| rest)
        .expect("URL has a host");
    let (host_port, database) = rest.split_once('/').unwrap();
    let cable = Cable::to(host_port.to_string()).await;
    let user = db_url
        .split("://")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap();
    let through_cable = format!("postgres://{user}@{}/{database}", cable.addr);
    let shop = Shop::start(&through_cable).await;
    put_product(
        &shop.url,
        "hot",
        json!({ "name": "Hot", "price_cents": 1, "stock": 50 }),
    )
    .await;
    let c = client();
    let buy = |key: &'static str| {
        order(
            &c,
            &shop.url,
            key,
            json!({ "sku": "hot", "quantity": 1, "customer": "a" }),
        )
    };
    assert_eq!(buy("before").await.unwrap().0, 201);

    cable.unplug();
    shop.wait_readyz(503, Duration::from_secs(10)).await;
    let started = Instant::now();
    let (status, headers, body): (u16, _, Value) = buy("during").await.unwrap();
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("unavailable")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "fails fast, took {:?}",
        started.elapsed()
    );

    cable.plug();
    shop.wait_ready().await;
    assert_eq!(
        buy("during").await.unwrap().0,
        201,
        "the same key succeeds once the store is back"
    );
    drop(shop);
    support::drop_pg_database(&db_url).await;
}
