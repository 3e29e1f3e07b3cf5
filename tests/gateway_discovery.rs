//! The gateway finding its shops in DNS (`--backend-dns NAME:PORT`), as a
//! Kubernetes headless Service gives them: a real DNS server on loopback
//! (dnslib's, tests/dns/server.py) whose answers change during the test.
//! A shop that appears is added and takes traffic, one that leaves is
//! drained, and a DNS server that stops answering changes nothing.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::gateway::Gateway;
use support::{client, sqlite_db, Shop, ADMIN_TOKEN};

/// The DNS server (tests/dns/server.py), killed when dropped.
async fn dns_server(answers: &std::path::Path) -> support::PythonServer {
    support::python_server("dns/server.py", &[answers]).await
}

fn answer(path: &std::path::Path, ips: &[&str]) {
    let text = serde_json::json!({ "shops.test.": ips }).to_string();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The backends' names and states, until `done` holds (or fails).
async fn wait_for(gateway: &Gateway, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = gateway.backends().await;
        if done(&list) {
            return list;
        }
        assert!(Instant::now() < deadline, "{what}: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn up(list: &[Value], name: &str) -> bool {
    list.iter().any(|b| b["name"] == name && b["state"] == "up")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shops_found_in_dns_are_added_and_drained_as_the_answers_change() {
    // Two shops on one port, on two loopback addresses: DNS gives
    // addresses, the port is the Service's.
    let db = sqlite_db();
    let probe = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let first = Shop::launch(
        &db.url,
        &format!("127.0.0.2:{port}"),
        &[],
        Some(ADMIN_TOKEN),
    )
    .await;
    let second = Shop::launch(
        &db.url,
        &format!("127.0.0.3:{port}"),
        &[],
        Some(ADMIN_TOKEN),
    )
    .await;
    first.wait_ready().await;
    second.wait_ready().await;

    let dir = tempfile::tempdir().unwrap();
    let answers = dir.path().join("answers.json");
    answer(&answers, &["127.0.0.2"]);
    let mut dns = dns_server(&answers).await;
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[discovery]\ninterval_ms = 200\n").unwrap();
    let gateway = Gateway::start(&[
        "--config",
        &config.display().to_string(),
        "--backend-dns",
        &format!("shops.test:{port}"),
        "--dns-server",
        &format!("127.0.0.1:{}", dns.port),
    ])
    .await;
    let (a, b) = (
        format!("shops-127.0.0.2-{port}"),
        format!("shops-127.0.0.3-{port}"),
    );
    wait_for(&gateway, "the first shop found", |l| {
        up(l, &a) && l.len() == 1
    })
    .await;
    let http = client();
    let read = || async {
        http.get(format!("{}/api/products", gateway.url))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(read().await, 200);

    // A second pod: added, and given traffic.
    answer(&answers, &["127.0.0.2", "127.0.0.3"]);
    wait_for(&gateway, "the second shop found", |l| {
        up(l, &a) && up(l, &b)
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert_eq!(read().await, 200);
        let list = gateway.backends().await;
        if list
            .iter()
            .any(|x| x["name"] == b.as_str() && x["requests"].as_u64() > Some(0))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the second shop got nothing: {list:?}"
        );
    }

    // The first leaves the answer: drained, then gone; reads go on.
    answer(&answers, &["127.0.0.3"]);
    wait_for(&gateway, "the first shop drained", |l| {
        l.len() == 1 && up(l, &b)
    })
    .await;
    for _ in 0..20 {
        assert_eq!(read().await, 200);
    }
    let events: Vec<Value> = gateway.events().await;
    assert!(
        events
            .iter()
            .any(|e| e["backend"] == a.as_str() && e["state"] == "draining"),
        "{events:?}"
    );

    // DNS stops answering: the shop found stays.
    dns.child.kill().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let list = gateway.backends().await;
    assert!(up(&list, &b) && list.len() == 1, "{list:?}");
    assert_eq!(read().await, 200);
    drop((first, second));
}
