//! Wrong admin tokens are limited per client on every admin API: after
//! six, the gateway's and the shop's answer 429 with `Retry-After` and do
//! not check the token (the right one is refused too, until the hold
//! ends); health checks and scrapes from the same address keep working;
//! the failures are counted for the default `AdminAuthFailures` rule.

mod support;

use support::gateway::{metric_sum, Gateway};
use support::{client, sqlite_db, Shop, ADMIN_TOKEN};

/// Sends `n` calls with a wrong token; the statuses.
async fn guess(url: &str, n: usize) -> Vec<u16> {
    let mut seen = Vec::new();
    for _ in 0..n {
        let answer = client()
            .get(url)
            .bearer_auth("wrong-token")
            .send()
            .await
            .unwrap();
        seen.push(answer.status().as_u16());
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_admin_tokens_is_slowed_down_on_the_gateway_and_the_shop() {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let gateway = Gateway::start(&["--backend", &format!("shop-1={}", shop.addr())]).await;
    for (name, url, metrics) in [
        (
            "gateway",
            format!("{}/admin/backends", gateway.admin_url),
            format!("{}/metrics", gateway.admin_url),
        ),
        (
            "shop",
            format!("{}/admin/orders", shop.url),
            format!("{}/metrics", shop.url),
        ),
    ] {
        // Five are forgiven; the sixth is answered and starts the hold.
        let seen = guess(&url, 9).await;
        assert_eq!(&seen[..6], &[401; 6], "{name}: {seen:?}");
        assert_eq!(&seen[6..], &[429; 3], "{name}: {seen:?}");
        // Held back: not even the right token is checked.
        let held = client()
            .get(&url)
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(held.status(), 429, "{name}");
        let wait: u64 = held.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=300).contains(&wait), "{name}: Retry-After {wait}");
        // Probes and scrapes without a token still work.
        let scraped = client().get(&metrics).send().await.unwrap();
        assert_eq!(scraped.status(), 200, "{name}");
        let text = scraped.text().await.unwrap();
        assert!(
            metric_sum(&text, "admin_auth_failures_total", &[]) >= 6.0,
            "{name}: {text}"
        );
        assert!(
            metric_sum(&text, "admin_auth_refused_total", &[]) >= 3.0,
            "{name}"
        );
    }
}
