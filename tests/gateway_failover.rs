//! The gateway with real shops on loopback: failover with no failed
//! request, a hung backend, the safe retry rule, the retry budget.

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::json;
use support::gateway::{longest_error_gap, metric_sum, Gateway, Load};
use support::{client, export, put_product, sqlite_db, Shop, ADMIN_TOKEN};

async fn hot_item(shop: &Shop) {
    let created = put_product(
        &shop.url,
        "hot",
        json!({ "name": "Hot", "price_cents": 100, "stock": 1_000_000 }),
    )
    .await;
    assert_eq!(created.status(), 201);
}

fn backend_flags(primaries: &[&Shop], backups: &[&Shop]) -> Vec<String> {
    let mut flags = Vec::new();
    for (i, shop) in primaries.iter().enumerate() {
        flags.push("--backend".to_string());
        flags.push(format!("p{}={}", i + 1, shop.addr()));
    }
    for (i, shop) in backups.iter().enumerate() {
        flags.push("--backup".to_string());
        flags.push(format!("b{}={}", i + 1, shop.addr()));
    }
    flags
}

fn write_config(dir: &tempfile::TempDir, text: &str) -> String {
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, text).expect("config written");
    path.display().to_string()
}

async fn requests_of(gateway: &Gateway, name: &str) -> u64 {
    gateway.backend(name).await["requests"]
        .as_u64()
        .expect("requests is a number")
}

/// Order requests a shop has answered, from its own metrics.
async fn orders_answered(shop: &Shop) -> f64 {
    let text = client()
        .get(format!("{}/metrics", shop.url))
        .send()
        .await
        .expect("shop metrics answer")
        .text()
        .await
        .expect("metrics text");
    metric_sum(
        &text,
        "shop_http_requests_total",
        &["route=\"/api/orders\""],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dying_primary_costs_no_request_and_the_backup_takes_over() {
    let db = sqlite_db();
    let mut primaries = Vec::new();
    for _ in 0..3 {
        primaries.push(Shop::start(&db.url).await);
    }
    let backup = Shop::start(&db.url).await;
    hot_item(&backup).await;
    let addrs: Vec<String> = primaries.iter().map(|s| s.addr().to_string()).collect();
    let flags = backend_flags(&primaries.iter().collect::<Vec<_>>(), &[&backup]);
    let gateway = Gateway::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let load = Load::start(&gateway.url, "hot", 12);
    tokio::time::sleep(Duration::from_millis(800)).await;
    primaries[0].signal("KILL");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let one_down = load.snapshot();
    let errors: Vec<_> = one_down.iter().filter(|o| o.is_error()).collect();
    assert!(
        errors.is_empty(),
        "a dying primary failed requests: {errors:?}"
    );
    assert_eq!(
        requests_of(&gateway, "b1").await,
        0,
        "backup idle while primaries serve"
    );

    let all_dead = Instant::now();
    primaries[1].signal("KILL");
    primaries[2].signal("KILL");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        requests_of(&gateway, "b1").await > 20,
        "the backup serves once every primary is gone"
    );

    drop(primaries);
    let mut restarted = Vec::new();
    for addr in &addrs {
        restarted.push(Shop::launch(&db.url, addr, &[], Some(ADMIN_TOKEN)).await);
    }
    for name in ["p1", "p2", "p3"] {
        gateway.wait_state(name, "up", Duration::from_secs(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup_before = requests_of(&gateway, "b1").await;
    let primaries_before = requests_of(&gateway, "p1").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(
        requests_of(&gateway, "b1").await,
        backup_before,
        "traffic moved back to the primaries"
    );
    assert!(requests_of(&gateway, "p1").await > primaries_before);
    let outcomes = load.stop().await;

    assert!(outcomes.len() > 200, "only {} requests", outcomes.len());
    let before_all_dead = outcomes
        .iter()
        .filter(|o| o.at < all_dead && o.is_error())
        .count();
    assert_eq!(before_all_dead, 0);
    let gap = longest_error_gap(&outcomes, Duration::from_secs(1));
    assert!(gap <= Duration::from_secs(1), "errors for {gap:?}");

    let orders = export(&backup.url).await;
    let keys: HashSet<&str> = orders
        .iter()
        .map(|o| o["idempotency_key"].as_str().expect("key"))
        .collect();
    assert_eq!(
        keys.len(),
        orders.len(),
        "an idempotency key has two orders"
    );
    let ids: HashSet<&str> = orders
        .iter()
        .map(|o| o["order_id"].as_str().expect("id"))
        .collect();
    let acknowledged: Vec<_> = outcomes.iter().filter_map(|o| o.order.as_ref()).collect();
    assert!(acknowledged.len() > 50);
    for (key, id) in acknowledged {
        assert!(
            ids.contains(id.as_str()),
            "order {id} (key {key}) was acknowledged but lost"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_backend_is_routed_around_within_the_upstream_timeout() {
    let db = sqlite_db();
    let (hung, healthy) = (Shop::start(&db.url).await, Shop::start(&db.url).await);
    hot_item(&healthy).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(&dir, "[timeouts]\nupstream_ms = 1000\n");
    let mut args = vec!["--config".to_string(), config];
    args.extend(backend_flags(&[&hung, &healthy], &[]));
    let gateway = Gateway::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;

    // Stopped while idle, so it holds no lock in the shared store.
    hung.signal("STOP");
    let stopped = Instant::now();
    let load = Load::start(&gateway.url, "hot", 8);
    gateway
        .wait_state("p1", "down", Duration::from_secs(6))
        .await;
    let detected = stopped.elapsed();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let outcomes = load.stop().await;
    hung.signal("CONT");

    // Hung means silent: no byte on any of its connections for
    // `hung_after_ms` (2 s), then two failed checks (issue 13: a busy shop
    // that answers slowly is no longer taken for a hung one; before, any
    // two timed-out checks took it down, within 1.5 s).
    assert!(
        detected < Duration::from_millis(3_500),
        "down after {detected:?}"
    );
    let errors: Vec<_> = outcomes.iter().filter(|o| o.is_error()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let slowest = outcomes.iter().map(|o| o.took).max().unwrap();
    // One try waits out the 1 s upstream timeout, the retry is quick: no
    // request waits it out twice.
    assert!(
        slowest < Duration::from_millis(2000),
        "a request took {slowest:?}"
    );
    // Once it is down, no request is sent to it: one that were would wait
    // out the whole upstream timeout before its retry. The bound is that
    // timeout, not a tighter margin: on a busy CI machine an order at the
    // healthy shop alone once took 523 ms.
    let late = outcomes
        .iter()
        .filter(|o| o.at > stopped + detected + Duration::from_millis(100))
        .map(|o| o.took)
        .max()
        .unwrap();
    assert!(
        late < Duration::from_millis(1000),
        "still waiting on the hung backend: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_that_may_have_reached_a_backend_is_retried_only_with_a_key() {
    let db = sqlite_db();
    let (first, backup) = (Shop::start(&db.url).await, Shop::start(&db.url).await);
    hot_item(&backup).await;
    let dir = tempfile::tempdir().unwrap();
    // Health checks far apart: the gateway learns about the hang only from
    // the request itself.
    let config = write_config(
        &dir,
        "[health]\ninterval_ms = 60000\n[timeouts]\nupstream_ms = 500\n",
    );
    let mut args = vec!["--config".to_string(), config];
    args.extend(backend_flags(&[&first], &[&backup]));
    let gateway = Gateway::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    first.signal("STOP");

    let http = client();
    let order = json!({ "sku": "hot", "quantity": 1, "customer": "alice" });
    let unkeyed = http
        .post(format!("{}/api/orders", gateway.url))
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(
        unkeyed.status(),
        504,
        "not sent again: the client hears the timeout"
    );
    assert_eq!(
        orders_answered(&backup).await,
        0.0,
        "the POST went to one backend only"
    );

    let keyed = http
        .post(format!("{}/api/orders", gateway.url))
        .header("Idempotency-Key", "retry-me")
        .json(&order)
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 201, "a keyed POST is retried on the backup");
    assert_eq!(orders_answered(&backup).await, 1.0);

    // The hung shop wakes up; whatever it makes of the copies it received,
    // the key has one order.
    first.signal("CONT");
    first.wait_ready().await;
    let orders = export(&backup.url).await;
    let for_key = orders
        .iter()
        .filter(|o| o["idempotency_key"] == "retry-me")
        .count();
    assert_eq!(for_key, 1, "one order for the retried key: {orders:?}");
    assert_eq!(orders.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_stay_within_the_budget_when_every_backend_fails() {
    // Shops whose database is unreachable answer their own /readyz with 503
    // at once (the gateway's checks are far apart, so it keeps them up).
    let dead_db = "postgres://postgres@127.0.0.1:9/nowhere";
    let a = Shop::launch(dead_db, "127.0.0.1:0", &[], Some(ADMIN_TOKEN)).await;
    let b = Shop::launch(dead_db, "127.0.0.1:0", &[], Some(ADMIN_TOKEN)).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        "[health]\ninterval_ms = 60000\n[retry]\nattempts = 3\nbudget_percent = 10\nbudget_min_per_s = 1\n",
    );
    let mut args = vec!["--config".to_string(), config];
    args.extend(backend_flags(&[&a, &b], &[]));
    let gateway = Gateway::start(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;

    const REQUESTS: usize = 100;
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..REQUESTS {
        let response = http
            .get(format!("{}/readyz", gateway.url))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    let sent = requests_of(&gateway, "p1").await + requests_of(&gateway, "p2").await;
    // 10 % of requests plus a reserve of 1 per second over tower's 10 s
    // window; without a budget every request would be tried on both.
    let allowed = REQUESTS as u64 + REQUESTS as u64 / 10 + 10;
    assert!(sent >= REQUESTS as u64, "{sent}");
    assert!(
        sent <= allowed,
        "{sent} tries for {REQUESTS} requests, budget allows {allowed}"
    );
    let exhausted = metric_sum(
        &gateway.metrics().await,
        "gateway_retry_budget_exhausted_total",
        &[],
    );
    assert!(exhausted > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tries_that_never_reached_a_backend_are_not_charged_to_the_retry_budget() {
    // A backend whose accept queue is full: the kernel drops the gateway's
    // SYNs, so every connect to it times out and nothing is ever sent.
    // Health checks, hung detection and ejection are kept out of the way,
    // so it stays in rotation and round-robin sends it every other request.
    let (hole, filling) = support::gateway::accept_queue_full();
    let hole_addr = hole.local_addr().unwrap();
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        &dir,
        "[balance]\npolicy = \"round-robin\"\nslow_start_ms = 0\n\
         [health]\ninterval_ms = 60000\nhung_after_ms = 600000\n\
         [outlier]\nconsecutive_connect_failures = 1000\n\
         [retry]\nattempts = 3\nbudget_percent = 1\nbudget_min_per_s = 1\n\
         [timeouts]\nconnect_ms = 100\n",
    );
    let hole_flag = format!("hole={hole_addr}");
    let live_flag = format!("live={}", shop.addr());
    let gateway = Gateway::start(&[
        "--config",
        &config,
        "--backend",
        &hole_flag,
        "--backend",
        &live_flag,
    ])
    .await;
    let http = client();
    let mut statuses = Vec::new();
    for _ in 0..40 {
        let response = http
            .get(format!("{}/healthz", gateway.url))
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    // Half of them found the hole first: far beyond a budget of about 10
    // retries, yet each went on to the live shop.
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(
        gateway.backend("hole").await["failures"].as_u64().unwrap() >= 15,
        "the hole was tried: {}",
        gateway.backend("hole").await
    );
    assert_eq!(
        metric_sum(
            &gateway.metrics().await,
            "gateway_retry_budget_exhausted_total",
            &[]
        ),
        0.0
    );
    drop(filling);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_item_is_ordered_at_its_owner_and_moves_only_when_it_dies() {
    // Three shops on one database; an item small enough to sell out, so
    // that overselling would show.
    let db = sqlite_db();
    let mut shops = Vec::new();
    for _ in 0..3 {
        shops.push(Shop::start(&db.url).await);
    }
    let stock = 600;
    let created = put_product(
        &shops[0].url,
        "hot",
        json!({ "name": "Hot", "price_cents": 100, "stock": stock }),
    )
    .await;
    assert_eq!(created.status(), 201);
    let flags = backend_flags(&shops.iter().collect::<Vec<_>>(), &[]);
    let gateway = Gateway::start(&flags.iter().map(String::as_str).collect::<Vec<_>>()).await;

    // Reads spread over the shops; every order goes to the item's owner.
    let load = Load::start(&gateway.url, "hot", 12);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut orders = Vec::new();
    for shop in &shops {
        orders.push(orders_answered(shop).await);
    }
    let owners: Vec<usize> = (0..3).filter(|&i| orders[i] > 0.0).collect();
    assert_eq!(
        owners.len(),
        1,
        "orders for one item at one shop: {orders:?}"
    );
    let owner = owners[0];
    for name in ["p1", "p2", "p3"] {
        assert!(
            requests_of(&gateway, name).await > 0,
            "{name} got no request: reads are balanced over every shop"
        );
    }

    // The owner dies mid-load: the item moves to one other shop, at once.
    shops[owner].signal("KILL");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let outcomes = load.stop().await;
    let errors: Vec<_> = outcomes.iter().filter(|o| o.is_error()).collect();
    assert!(
        errors.is_empty(),
        "the owner's death failed requests: {errors:?}"
    );
    let mut after = Vec::new();
    for (i, shop) in shops.iter().enumerate() {
        after.push(if i == owner {
            0.0
        } else {
            orders_answered(shop).await
        });
    }
    let heirs: Vec<usize> = (0..3).filter(|&i| after[i] > 0.0).collect();
    assert_eq!(heirs.len(), 1, "the item moved to one shop: {after:?}");

    // The first owner comes back mid-sale: the item stays with its heir.
    let heir = heirs[0];
    let addr = shops[owner].addr().to_string();
    shops[owner] = Shop::launch(&db.url, &addr, &[], Some(ADMIN_TOKEN)).await;
    let name = format!("p{}", owner + 1);
    gateway
        .wait_state(&name, "up", Duration::from_secs(5))
        .await;
    let heir_before = orders_answered(&shops[heir]).await;
    let more = Load::start(&gateway.url, "hot", 6);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let more = more.stop().await;
    assert!(more.iter().all(|o| !o.is_error()), "{more:?}");
    assert_eq!(
        orders_answered(&shops[owner]).await,
        0.0,
        "the item went back to its first owner mid-sale"
    );
    assert!(orders_answered(&shops[heir]).await > heir_before);

    // Correct whoever sold it.
    let survivor = &shops[heir];
    let exported = export(&survivor.url).await;
    let sold: i64 = exported
        .iter()
        .map(|o| o["quantity"].as_i64().unwrap())
        .sum();
    assert!(sold <= stock, "{sold} sold of {stock}");
    let acknowledged = outcomes
        .iter()
        .chain(&more)
        .filter(|o| o.order.is_some())
        .count();
    assert!(acknowledged > 20, "only {acknowledged} orders");
    assert!(acknowledged <= exported.len());
}
