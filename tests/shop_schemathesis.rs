//! The shop against its own OpenAPI document, by schemathesis (PyPI, pinned
//! in scripts/test, installed into target/schemathesis): every operation,
//! every check, the admin token, a fixed seed, bounded in time, on SQLite
//! and on PostgreSQL. Any failure fails the test. Afterwards the store must
//! still add up: its inventory equals its exported orders.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use support::{export, inventory, Shop, ADMIN_TOKEN};

/// Each store's share of the run, in seconds.
const SECONDS: u64 = 30;
const SEED: u64 = 20261201;

fn schemathesis() -> String {
    let default = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/target/schemathesis/bin/schemathesis"
    );
    let path = std::env::var("FLASHGUARD_SCHEMATHESIS").unwrap_or_else(|_| default.to_string());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: scripts/test installs schemathesis (or set FLASHGUARD_SCHEMATHESIS)"
    );
    path
}

async fn conforms_to_its_document(db_url: &str) {
    let shop = Shop::start(db_url).await;
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/schemathesis/schemathesis.toml"
    );
    // Its cache and reports go to a directory of the test's own.
    let workdir = tempfile::tempdir().unwrap();
    let run = tokio::process::Command::new(schemathesis())
        .args(["--config-file", config, "--no-color", "run"])
        .arg(format!("{}/api/openapi.json", shop.url))
        .args(["--checks", "all", "--workers", "1"])
        .args(["--seed", &SEED.to_string()])
        .args(["--max-time", &SECONDS.to_string()])
        .args(["--request-timeout", "10"])
        .arg("-H")
        .arg(format!("Authorization: Bearer {ADMIN_TOKEN}"))
        .current_dir(workdir.path())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(SECONDS + 120), run)
        .await
        .expect("schemathesis ends after its time budget")
        .expect("schemathesis runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found failures ({}):\n{text}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("passed"), "{text}");

    // Whatever it did, the books balance.
    let mut sold: BTreeMap<String, i64> = BTreeMap::new();
    for order in export(&shop.url).await {
        let sku = order["sku"].as_str().unwrap().to_string();
        *sold.entry(sku).or_default() += order["quantity"].as_i64().unwrap();
    }
    for line in inventory(&shop.url).await {
        let sku = line["sku"].as_str().unwrap();
        let (initial, counted) = (
            line["initial"].as_i64().unwrap(),
            line["sold"].as_i64().unwrap(),
        );
        assert_eq!(
            counted,
            sold.get(sku).copied().unwrap_or(0),
            "{sku}: units sold equal the units in its orders"
        );
        assert_eq!(
            line["remaining"].as_i64().unwrap(),
            (initial - counted).max(0)
        );
        assert!(counted <= initial, "{sku}: never oversold");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shop_conforms_to_its_openapi_document() {
    let db = support::sqlite_db();
    conforms_to_its_document(&db.url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shop_conforms_to_its_openapi_document() {
    let url = support::pg_database().await;
    conforms_to_its_document(&url).await;
    support::drop_pg_database(&url).await;
}
