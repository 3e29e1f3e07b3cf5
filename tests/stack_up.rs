//! `flashguard up`: the whole stack supervised, chaos through its control
//! API, and no process left behind however it ends.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::client;
use support::stack::Up;

async fn up() -> Up {
    Up::start(2, 1, "").await
}

async fn parts(stack: &Up) -> Vec<Value> {
    client()
        .get(format!("{}/parts", stack.control))
        .bearer_auth(&stack.token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn pids(parts: &[Value]) -> Vec<u32> {
    parts
        .iter()
        .map(|p| p["pid"].as_u64().expect("every part runs") as u32)
        .collect()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

async fn all_gone(pids: &[u32], within: Duration) {
    let deadline = Instant::now() + within;
    while pids.iter().any(|pid| alive(*pid)) {
        let left: Vec<_> = pids.iter().filter(|pid| alive(**pid)).collect();
        assert!(Instant::now() < deadline, "still running: {left:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_part_is_restarted_and_sigkill_of_up_leaves_nothing() {
    let stack = up().await;
    let before = parts(&stack).await;
    let names: Vec<&str> = before.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["shop-1", "shop-2", "backup-1", "gateway", "monitor"]
    );
    assert!(before.iter().all(|p| p["state"] == "running"), "{before:?}");
    let products = client()
        .get(format!("{}/api/products", stack.storefront))
        .send()
        .await
        .unwrap();
    assert_eq!(
        products.status(),
        200,
        "the storefront answers through the gateway"
    );

    // Without the admin token the control API refuses, and nothing dies.
    let refused = client()
        .post(format!("{}/parts/shop-1/kill", stack.control))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let listed = client()
        .get(format!("{}/parts", stack.control))
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 401);
    let killed = client()
        .post(format!("{}/parts/shop-1/kill", stack.control))
        .bearer_auth(&stack.token)
        .send()
        .await
        .unwrap();
    assert_eq!(killed.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    let shop = loop {
        let now = parts(&stack).await;
        let shop = now[0].clone();
        if shop["state"] == "running" && shop["pid"] != before[0]["pid"] {
            break shop;
        }
        assert!(
            Instant::now() < deadline,
            "shop-1 was not restarted: {shop}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(shop["last_exit"], "killed by SIGKILL");
    assert_eq!(
        shop["addr"], before[0]["addr"],
        "it comes back where the gateway expects it"
    );
    assert_eq!(shop["restarts"], 1);

    // Each part's log goes to a file of its own, up's too (the tests run
    // every process with RUST_LOG=warn, so up's warning about the crash is
    // there, the shops' info lines are not).
    let logs = stack.dir.path().join("logs");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up_log = std::fs::read_to_string(logs.join("up.log")).unwrap_or_default();
        if up_log.contains("killed by SIGKILL") {
            break;
        }
        assert!(Instant::now() < deadline, "up.log: {up_log}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for part in ["shop-1", "shop-2", "backup-1", "gateway", "monitor"] {
        let log = logs.join(format!("{part}.log"));
        assert!(log.exists(), "{} is missing", log.display());
    }

    let running = pids(&parts(&stack).await);
    stack.part.signal("KILL");
    all_gone(&running, Duration::from_secs(10)).await;
}

async fn stops_every_part_and_exits_zero_on(signal: &str) {
    let mut stack = up().await;
    let running = pids(&parts(&stack).await);
    stack.part.signal(signal);
    let exit = tokio::time::timeout(Duration::from_secs(30), stack.part.child.wait())
        .await
        .expect("up exits")
        .unwrap();
    assert!(exit.success(), "{exit:?}");
    all_gone(&running, Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_part_and_exits_zero() {
    stops_every_part_and_exits_zero_on("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_every_part_and_exits_zero() {
    stops_every_part_and_exits_zero_on("INT").await;
}

#[tokio::test]
async fn a_bad_stack_config_is_refused_naming_the_field() {
    let stderr = up_refuses("shops = 0\n").await;
    assert!(stderr.contains("shops: must be 1 to 32"), "{stderr}");
}

/// `[tls]` in stack.toml as a gateway.toml has it.
fn tls_section(cert: &Path, key: &Path) -> String {
    format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    )
}

#[tokio::test]
async fn up_with_tls_serves_over_https_and_a_drill_through_it_keeps_every_invariant() {
    let ca = support::tls::TestCa::new();
    let leaf = ca.leaf("storefront", &["localhost"]);
    let stack = Up::start(1, 0, &tls_section(&leaf.cert, &leaf.key)).await;
    assert!(
        stack.storefront.starts_with("https://"),
        "storefront on {}",
        stack.storefront
    );
    for (h2, version) in [
        (true, http::Version::HTTP_2),
        (false, http::Version::HTTP_11),
    ] {
        let answer = ca
            .client(h2)
            .get(format!("{}/api/products", stack.storefront))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.version(), version);
        let products: Value = answer.json().await.unwrap();
        assert!(
            products.as_array().is_some_and(|list| !list.is_empty()),
            "the demo catalogue through the gateway: {products}"
        );
    }
    // The admin API stays plain HTTP on loopback: the stack's probes and
    // its monitor's scrapes reach it so.
    let ready = client()
        .get(format!("{}/readyz", stack.gateway_admin))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);

    // A drill over HTTPS, trusting the store's CA: its customers order
    // through the TLS edge and the oracle finds every invariant kept.
    let ca_path = ca.ca_path().display().to_string();
    let mut drill = stack.drill_with("https", SHORT_SALE, &["--ca-cert", &ca_path]);
    let exit = tokio::time::timeout(Duration::from_secs(90), drill.child.wait())
        .await
        .expect("the drill ends");
    assert!(exit.unwrap().success(), "the drill over HTTPS failed");
    let report = std::fs::read_to_string(stack.dir.path().join("https/report.json")).unwrap();
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert!(
        report["orders_acknowledged"].as_u64().unwrap() > 10,
        "{}",
        report["orders_acknowledged"]
    );
    // Its customers spoke HTTP/2, as browsers do: the gateway served
    // their requests as streams.
    let metrics = support::get_text(&client(), &format!("{}/metrics", stack.gateway_admin)).await;
    let streams = support::gateway::metric_sum(&metrics, "gateway_h2_streams_total", &[]);
    let acknowledged = report["orders_acknowledged"].as_f64().unwrap();
    assert!(streams >= acknowledged, "{streams} HTTP/2 streams");
}

/// A few seconds of a sale, for a drill that must only get through.
const SHORT_SALE: &str = r#"
name = "a short sale over HTTPS"

[[item]]
sku = "https-item"
stock = 100000
limit_per_customer = 2

[[phase]]
duration_s = 4
rate = 20
"#;

async fn up_refuses(config_text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stack.toml");
    let logs = dir.path().join("logs");
    std::fs::write(
        &config,
        format!("logs_dir = \"{}\"\n{config_text}", logs.display()),
    )
    .unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args(["up", "--config", &config.display().to_string()])
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    // Refused before anything started: no part wrote a log.
    let started = std::fs::read_dir(&logs).map_or(0, |dir| dir.count());
    assert_eq!(started, 0, "logs of parts that started: {}", logs.display());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn bad_tls_for_up_is_refused_before_any_part_starts() {
    let ca = support::tls::TestCa::new();
    let leaf = ca.leaf("storefront", &["localhost"]);
    let missing = ca.dir.path().join("missing.pem");
    let stderr = up_refuses(&tls_section(&missing, &leaf.key)).await;
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
    let other = ca.leaf("other", &["example.test"]);
    let stderr = up_refuses(&tls_section(&leaf.cert, &other.key)).await;
    assert!(stderr.contains("does not fit"), "{stderr}");
    assert!(
        stderr.contains(&leaf.cert.display().to_string()),
        "{stderr}"
    );
    let admin = tls_section(&leaf.cert, &leaf.key).replace("[tls]", "[tls.admin]");
    let stderr = up_refuses(&format!("{}{admin}", tls_section(&leaf.cert, &leaf.key))).await;
    assert!(stderr.contains("tls.admin: is not for a stack"), "{stderr}");
}
