//! The gateway's HTTPS judged by outside tools: testssl.sh (Debian's)
//! checks protocols, ciphers and known vulnerabilities, and Chromium loads
//! the storefront over HTTP/2 trusting only the test CA.

mod support;

use std::process::Command;

use serde_json::Value;
use support::tls::TestCa;
use support::{sqlite_db, Shop};

/// A shop with a product, behind a TLS gateway; the gateway's URL.
async fn storefront(ca: &TestCa) -> (Shop, support::gateway::Gateway, support::SqliteDb) {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let created = support::put_product(
        &shop.url,
        "tee",
        serde_json::json!({ "name": "Tee", "price_cents": 1500, "stock": 10 }),
    )
    .await;
    assert_eq!(created.status(), 201);
    let leaf = ca.leaf("shop", &["localhost"]);
    let gateway =
        support::tls::gateway(&leaf, &["--backend", &format!("shop-1={}", shop.addr())]).await;
    (shop, gateway, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_no_old_protocol_no_weak_cipher_and_no_known_vulnerability() {
    let ca = TestCa::new();
    let (_shop, gateway, _db) = storefront(&ca).await;
    let report = ca.dir.path().join("testssl.json");
    // Protocols, cipher categories and vulnerabilities only: well under a
    // minute.
    let output = Command::new("testssl")
        .args(["--quiet", "--color", "0", "--warnings", "off", "--add-ca"])
        .arg(ca.ca_path())
        .args(["--protocols", "--std", "--vulnerable", "--jsonfile"])
        .arg(&report)
        .arg(&gateway.url)
        .output()
        .expect("testssl runs (.ci/run installs testssl.sh)");
    let said = String::from_utf8_lossy(&output.stdout);
    let findings: Vec<Value> = serde_json::from_slice(
        &std::fs::read(&report).unwrap_or_else(|_| panic!("testssl wrote no report: {said}")),
    )
    .unwrap();
    let finding = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .unwrap_or_else(|| panic!("testssl reported no {id}: {said}"))["finding"]
            .as_str()
            .unwrap()
            .to_string()
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(
            finding(old).contains("not offered"),
            "{old}: {}",
            finding(old)
        );
    }
    for current in ["TLS1_2", "TLS1_3"] {
        assert!(
            finding(current).starts_with("offered"),
            "{current}: {}",
            finding(current)
        );
    }
    // Vulnerabilities checked, by name (so a check testssl skipped would
    // show here, not pass unseen).
    for id in [
        "heartbleed",
        "CCS",
        "ticketbleed",
        "ROBOT",
        "secure_renego",
        "CRIME_TLS",
        "BREACH",
        "POODLE_SSL",
        "SWEET32",
        "FREAK",
        "LOGJAM",
        "BEAST",
        "LUCKY13",
        "RC4",
    ] {
        let _ = finding(id);
    }
    let serious: Vec<&Value> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .collect();
    assert!(serious.is_empty(), "testssl found: {serious:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_loads_the_storefront_over_http2_trusting_the_test_ca() {
    let ca = TestCa::new();
    let (_shop, gateway, _db) = storefront(&ca).await;
    // Chromium trusts what the NSS database in $HOME trusts: the test CA
    // goes there, and nothing is ignored.
    let home = tempfile::tempdir().unwrap();
    let nssdb = home.path().join(".pki/nssdb");
    std::fs::create_dir_all(&nssdb).unwrap();
    let db = format!("sql:{}", nssdb.display());
    for args in [
        vec!["-N", "-d", &db, "--empty-password"],
        vec![
            "-A",
            "-d",
            &db,
            "-t",
            "C,,",
            "-n",
            "flashguard-test-ca",
            "-i",
            ca.ca_path().to_str().unwrap(),
        ],
    ] {
        let status = Command::new("certutil")
            .args(&args)
            .status()
            .expect("certutil runs (.ci/run installs libnss3-tools)");
        assert!(status.success(), "certutil {args:?}");
    }
    // By name, as a customer would: the certificate is for localhost.
    let url = gateway.url.replace("127.0.0.1", "localhost");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/dashboard/storefront.mjs"
    );
    let output = Command::new("node")
        .arg(script)
        .arg(format!("{url}/"))
        .env("HOME", home.path())
        .env(
            "NODE_PATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dashboard/node_modules"),
        )
        .output()
        .expect("node runs");
    let seen = support::last_json_line(&output);
    assert_eq!(seen["status"], 200, "{seen}");
    assert_eq!(seen["protocol"], "h2", "{seen}");
    assert!(!seen["title"].as_str().unwrap_or("").is_empty(), "{seen}");
    assert_eq!(seen["consoleErrors"], serde_json::json!([]), "{seen}");
}
