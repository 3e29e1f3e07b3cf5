//! The monitor with the rest of the system and with the real Prometheus
//! tools: alert latency with a shop behind a gateway, an Alertmanager that
//! sees an alert fire and resolve, and a Prometheus that scrapes our parts.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::gateway::Gateway;
use support::{poll_json, sqlite_db, Part, Shop, ADMIN_TOKEN};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A webhook receiver in the test: the alert names it got, with arrival times.
async fn webhook() -> (String, Arc<Mutex<Vec<(Instant, String, String)>>>) {
    let got = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let kept = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let kept = Arc::clone(&kept);
            async move {
                for alert in body["alerts"].as_array().cloned().unwrap_or_default() {
                    let name = alert["labels"]["alertname"]
                        .as_str()
                        .unwrap_or("")
                        .to_string();
                    let status = alert["status"].as_str().unwrap_or("").to_string();
                    kept.lock().unwrap().push((Instant::now(), name, status));
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unhealthy_backend_is_alerted_within_three_seconds() {
    let db = sqlite_db();
    let (victim, other) = (Shop::start(&db.url).await, Shop::start(&db.url).await);
    let victim_flag = format!("victim={}", victim.addr());
    let other_flag = format!("other={}", other.addr());
    let gateway = Gateway::start(&["--backend", &victim_flag, "--backend", &other_flag]).await;
    let (hook, got) = webhook().await;
    let gateway_target = format!("gateway={}", gateway.admin_url);
    let victim_target = format!("victim={}", victim.url);
    // Default rules and the default 1 s interval.
    let mut monitor = Part::launch(
        &[
            "monitor",
            "--listen",
            "127.0.0.1:0",
            "--webhook",
            &hook,
            "--target",
            &gateway_target,
            "--target",
            &victim_target,
        ],
        None,
    );
    let url = monitor.expect_line("listening on ").await;
    poll_json(
        &format!("{url}/api/query?metric=up&target=victim"),
        Duration::from_secs(10),
        |v| v[0]["points"][0][1] == 1.0,
    )
    .await;

    let unhealthy = Instant::now();
    victim.signal("KILL");
    let deadline = unhealthy + Duration::from_secs(10);
    let arrived = loop {
        let first = got
            .lock()
            .unwrap()
            .iter()
            .find(|(_, name, status)| {
                (name == "BackendDown" || name == "TargetDown") && status == "firing"
            })
            .map(|(at, _, _)| *at);
        if let Some(at) = first {
            break at;
        }
        assert!(Instant::now() < deadline, "no alert within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let latency = arrived.duration_since(unhealthy);
    assert!(
        latency < Duration::from_secs(3),
        "alerted after {latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_sees_an_alert_fire_and_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: none\nreceivers:\n  - name: none\n",
    )
    .unwrap();
    let port = free_port();
    let am = format!("http://127.0.0.1:{port}");
    let _alertmanager = tokio::process::Command::new("prometheus-alertmanager")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!("--storage.path={}", dir.path().display()))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus-alertmanager is installed (.ci/run installs it)");
    poll_json(
        &format!("{am}/api/v2/status"),
        Duration::from_secs(20),
        |v| v["cluster"].is_object(),
    )
    .await;

    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let addr = shop.addr().to_string();
    let target = format!("shop={}", shop.url);
    let mut monitor = Part::launch(
        &[
            "monitor",
            "--listen",
            "127.0.0.1:0",
            "--interval-ms",
            "300",
            "--alertmanager",
            &am,
            "--target",
            &target,
        ],
        None,
    );
    monitor.expect_line("listening on ").await;
    let firing = |v: &Value| {
        v.as_array().is_some_and(|a| {
            a.iter().any(|x| {
                x["labels"]["alertname"] == "TargetDown" && x["labels"]["target"] == "shop"
            })
        })
    };
    shop.signal("KILL");
    poll_json(
        &format!("{am}/api/v2/alerts?active=true"),
        Duration::from_secs(10),
        firing,
    )
    .await;
    // The shop comes back on its address: the alert resolves, with endsAt.
    let _back = Shop::launch(&db.url, &addr, &[], Some(ADMIN_TOKEN)).await;
    poll_json(
        &format!("{am}/api/v2/alerts?active=true"),
        Duration::from_secs(15),
        |v| !firing(v),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_a_shop_and_a_gateway() {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let backend = format!("shop={}", shop.addr());
    let gateway = Gateway::start(&["--backend", &backend]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: flashguard\n    static_configs:\n      - targets: [\"{}\", \"{}\"]\n",
            shop.addr(),
            gateway.admin_url.trim_start_matches("http://")
        ),
    )
    .unwrap();
    let port = free_port();
    let _prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus is installed (.ci/run installs it)");
    let api = format!("http://127.0.0.1:{port}/api/v1/query?query=");
    let up = poll_json(&format!("{api}up"), Duration::from_secs(30), |v| {
        v["data"]["result"]
            .as_array()
            .is_some_and(|r| r.len() == 2 && r.iter().all(|s| s["value"][1] == "1"))
    })
    .await;
    assert_eq!(up["data"]["result"].as_array().unwrap().len(), 2);
    for family in [
        "shop_http_requests_total",
        "gateway_backend_state",
        "process_resident_memory_bytes",
    ] {
        poll_json(&format!("{api}{family}"), Duration::from_secs(10), |v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        })
        .await;
    }
}
