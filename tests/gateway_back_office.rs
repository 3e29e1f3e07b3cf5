//! The shops' back office through the gateway's public port: a client
//! bound to 127.0.0.2, against an allow-list of 127.0.0.1/32, gets 404 for
//! `/admin/orders` however it spells it (and whatever `X-Forwarded-For` it
//! sends), and 200 for the storefront; an allowed client reaches it.

mod support;

use support::gateway::Gateway;
use support::{sqlite_db, Shop, ADMIN_TOKEN};

fn from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<std::net::IpAddr>().unwrap())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_back_office_is_closed_outside_the_allow_list() {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        "admin_allow = [\"127.0.0.1/32\"]\ntrusted_proxies = [\"127.0.0.2\"]\n",
    )
    .unwrap();
    let gateway = Gateway::start(&[
        "--config",
        &config.display().to_string(),
        "--backend",
        &format!("shop-1={}", shop.addr()),
    ])
    .await;
    let outsider = from("127.0.0.2");
    for path in [
        "/admin/orders",
        "//admin/orders",
        "/%61dmin/orders",
        "/admin/inventory",
    ] {
        let answer = outsider
            .get(format!("{}{path}", gateway.url))
            .bearer_auth(ADMIN_TOKEN)
            // Claiming to be an allowed client changes nothing: the peer
            // decides.
            .header("x-forwarded-for", "127.0.0.1")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 404, "{path}");
    }
    let storefront = outsider
        .get(format!("{}/", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(storefront.status(), 200);
    let insider = from("127.0.0.1")
        .get(format!("{}/admin/orders", gateway.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(insider.status(), 200);
    let refused = support::gateway::metric_sum(
        &gateway.metrics().await,
        "gateway_shed_total",
        &["admin_not_allowed"],
    );
    assert_eq!(refused, 4.0);
}
