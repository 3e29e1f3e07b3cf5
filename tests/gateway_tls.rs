//! HTTPS at the gateway, on real sockets: curl and a Rust client over
//! HTTP/1.1 and HTTP/2 through to a real shop, TLS 1.1 refused, SNI,
//! certificates reloaded under load with no failed request, a bad file
//! that changes nothing, the redirect listener and HSTS, and client
//! certificates on the admin listener.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::gateway::{metric_sum, reload, Gateway};
use support::tls::{connect, TestCa};
use support::{sqlite_db, Shop};

fn curl(args: &[&str]) -> (bool, String, String) {
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// gateway.toml with `toml` in a directory of its own (kept while the
/// returned guard lives).
fn config_file(toml: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    (dir, path.display().to_string())
}

/// `flashguard gateway --config PATH ARGS` on free ports, its lines unread.
fn launch(config: &str, args: &[&str]) -> support::Part {
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    support::gateway::launch(&all)
}

/// curl with `who`'s client certificate.
fn curl_as(who: &support::tls::CertFiles, cacert: &str, url: &str) -> (bool, String, String) {
    curl(&[
        "--cacert",
        cacert,
        "--cert",
        &who.cert.display().to_string(),
        "--key",
        &who.key.display().to_string(),
        url,
    ])
}

/// The DER of the certificate the gateway presents for `sni`.
async fn presented(ca: &TestCa, addr: &str, sni: &str) -> Vec<u8> {
    let tls = connect(ca.rustls_client(&[b"http/1.1"]), addr, sni)
        .await
        .expect("the handshake succeeds");
    let certs = tls.get_ref().1.peer_certificates().unwrap();
    certs[0].as_ref().to_vec()
}

fn der_of(pem: &str) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_over_http1_and_http2_reaches_the_shop_and_old_tls_is_refused() {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let gateway =
        support::tls::gateway(&leaf, &["--backend", &format!("shop-1={}", shop.addr())]).await;
    assert!(gateway.url.starts_with("https://"), "{}", gateway.url);
    let url = format!("{}/api/products", gateway.url);
    let cacert = ca.ca_path().display().to_string();
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let (ok, out, err) = curl(&[
            flag,
            "--cacert",
            &cacert,
            "--write-out",
            "\n%{http_code} %{http_version}",
            &url,
        ]);
        assert!(ok, "curl {flag}: {err}");
        assert!(
            out.ends_with(&format!("\n200 {version}")),
            "curl {flag}: {out}"
        );
        assert!(out.starts_with('['), "the shop's product list: {out}");
    }
    let (ok, out, err) = curl(&[
        "--tlsv1.2",
        "--tls-max",
        "1.2",
        "--cacert",
        &cacert,
        "--write-out",
        "%{http_code}",
        "--output",
        "/dev/null",
        &url,
    ]);
    assert!(ok && out == "200", "TLS 1.2: {out} {err}");
    let (ok, _, err) = curl(&["--tls-max", "1.1", "--cacert", &cacert, &url]);
    assert!(!ok, "TLS 1.1 must be refused");
    assert!(!err.is_empty());

    // A Rust client, both ways; the answer's version is what ALPN chose.
    for h2 in [true, false] {
        let answer = ca.client(h2).get(&url).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        let expected = if h2 {
            reqwest::Version::HTTP_2
        } else {
            reqwest::Version::HTTP_11
        };
        assert_eq!(answer.version(), expected);
        assert!(answer.headers().contains_key("x-request-id"));
    }

    let metrics = gateway.metrics().await;
    let handshakes = |labels: &[&str]| metric_sum(&metrics, "gateway_tls_handshakes_total", labels);
    assert!(
        handshakes(&["version=\"TLSv1.3\"", "alpn=\"h2\""]) >= 2.0,
        "{metrics}"
    );
    assert!(handshakes(&["version=\"TLSv1.3\"", "alpn=\"http/1.1\""]) >= 2.0);
    assert!(handshakes(&["version=\"TLSv1.2\""]) >= 1.0);
    assert_eq!(handshakes(&["TLSv1.1"]), 0.0);
    assert!(metric_sum(&metrics, "gateway_h2_streams_total", &[]) >= 2.0);
    let left = metric_sum(
        &metrics,
        "gateway_tls_certificate_expiry_seconds",
        &["name=\"shop.test\""],
    );
    let day = 86_400.0;
    assert!((88.0 * day..=89.0 * day).contains(&left), "{left}");
    // The same shop answers through both: a request id per stream, logged
    // and counted as an HTTP/1.1 request is.
    assert!(metric_sum(&metrics, "gateway_requests_total", &["status=\"200\""]) >= 5.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_chooses_the_certificate_and_a_reload_serves_one_added_to_the_file() {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let ca = TestCa::new();
    let main = ca.leaf("main", &["shop.test"]);
    let other = ca.leaf("other", &["other.test", "*.other.test"]);
    let (_dir, config) = config_file(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n[[tls.certificate]]\ncert = {:?}\nkey = {:?}\n",
        main.cert, main.key, other.cert, other.key
    ));
    let gateway = Gateway::start(&[
        "--config",
        &config,
        "--backend",
        &format!("shop-1={}", shop.addr()),
    ])
    .await;
    let addr = gateway.url.trim_start_matches("https://").to_string();
    assert_eq!(
        presented(&ca, &addr, "other.test").await,
        der_of(&other.cert_pem)
    );
    assert_eq!(
        presented(&ca, &addr, "www.other.test").await,
        der_of(&other.cert_pem)
    );
    assert_eq!(
        presented(&ca, &addr, "shop.test").await,
        der_of(&main.cert_pem)
    );
    // An IP address sends no SNI: the default answers.
    assert_eq!(
        presented(&ca, &addr, "127.0.0.1").await,
        der_of(&main.cert_pem)
    );

    // A certificate added to the file is served after a reload, without
    // a restart (a new domain for the store).
    let third = ca.leaf("third", &["third.test"]);
    let three = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n[[tls.certificate]]\ncert = {:?}\nkey = {:?}\n\
         [[tls.certificate]]\ncert = {:?}\nkey = {:?}\n",
        main.cert, main.key, other.cert, other.key, third.cert, third.key
    );
    replace(std::path::Path::new(&config), &three);
    assert_eq!(reload(&gateway.admin_url, 200).await["certificates"], 3);
    assert_eq!(
        presented(&ca, &addr, "third.test").await,
        der_of(&third.cert_pem)
    );
    // A file without [tls] would turn HTTPS off: refused, naming the
    // field, and the certificates keep serving.
    replace(std::path::Path::new(&config), "access_log = true\n");
    let refused = reload(&gateway.admin_url, 422).await;
    assert!(
        refused["detail"].as_str().unwrap().starts_with("tls:"),
        "{refused}"
    );
    assert_eq!(
        presented(&ca, &addr, "third.test").await,
        der_of(&third.cert_pem)
    );
}

/// Requests through new and kept connections, over both protocols, until
/// stopped; counts failures.
fn load(
    ca: &TestCa,
    url: String,
    stop: Arc<AtomicBool>,
) -> (
    Arc<AtomicUsize>,
    Arc<AtomicUsize>,
    Vec<tokio::task::JoinHandle<()>>,
) {
    let (done, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers = (0..6)
        .map(|n| {
            // Half keep their connection; half make a new one each time, so
            // handshakes happen across the swap.
            let keep = n % 2 == 0;
            let (h2, kept) = (n % 3 == 0, ca.client(n % 3 == 0));
            let ca_pem = ca.ca_pem.clone();
            let (url, stop, done, failed) = (
                url.clone(),
                Arc::clone(&stop),
                Arc::clone(&done),
                Arc::clone(&failed),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let client = if keep {
                        kept.clone()
                    } else {
                        let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
                        let builder = reqwest::Client::builder()
                            .use_rustls_tls()
                            .tls_built_in_root_certs(false)
                            .add_root_certificate(ca);
                        let builder = if h2 {
                            builder.http2_prior_knowledge()
                        } else {
                            builder.http1_only()
                        };
                        builder.build().unwrap()
                    };
                    match client.get(&url).send().await {
                        Ok(answer) if answer.status() == 200 => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(answer) => {
                            eprintln!("failed: {} {:?}", answer.status(), answer.text().await);
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            eprintln!("failed: {other:?}");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    (done, failed, workers)
}

/// Writes a file whole (a rename), as deployment tools do.
fn replace(path: &std::path::Path, contents: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, contents).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_are_swapped_under_load_with_no_failed_request_and_a_bad_one_changes_nothing()
{
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let ca = TestCa::new();
    let first = ca.leaf("first", &["shop.test"]);
    let served = ca.leaf("served", &["shop.test"]);
    std::fs::copy(&first.cert, &served.cert).unwrap();
    std::fs::copy(&first.key, &served.key).unwrap();
    let (_dir, config) = config_file(&format!(
        // The backend is in the file: a reload applies the file.
        "[[backend]]\nname = \"shop-1\"\naddr = {:?}\n[tls]\ncert = {:?}\nkey = {:?}\nwatch_ms = 200\n",
        shop.addr(),
        served.cert,
        served.key
    ),);
    let gateway = Gateway::start(&["--config", &config]).await;
    let addr = gateway.url.trim_start_matches("https://").to_string();
    assert_eq!(
        presented(&ca, &addr, "shop.test").await,
        der_of(&first.cert_pem)
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (done, failed, workers) = load(
        &ca,
        format!("{}/api/products", gateway.url),
        Arc::clone(&stop),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;

    // A new certificate on disk: noticed and served, by the watch.
    let second = ca.leaf("second", &["shop.test"]);
    replace(&served.key, &std::fs::read_to_string(&second.key).unwrap());
    replace(&served.cert, &second.cert_pem);
    let deadline = Instant::now() + Duration::from_secs(20);
    while presented(&ca, &addr, "shop.test").await != der_of(&second.cert_pem) {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A third by the admin call, then by SIGHUP.
    for (n, by_signal) in [(3, false), (4, true)] {
        let next = ca.leaf(&format!("leaf-{n}"), &["shop.test"]);
        // Written in place this time, the key first, and reloaded on
        // demand.
        std::fs::write(&served.key, std::fs::read_to_string(&next.key).unwrap()).unwrap();
        std::fs::write(&served.cert, &next.cert_pem).unwrap();
        if by_signal {
            gateway.part.signal("HUP");
        } else {
            let body = reload(&gateway.admin_url, 200).await;
            assert_eq!(body["certificates"], 1);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while presented(&ca, &addr, "shop.test").await != der_of(&next.cert_pem) {
            assert!(
                Instant::now() < deadline,
                "certificate {n} was never served"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let serving = presented(&ca, &addr, "shop.test").await;

    // A bad file: refused with the reason, and the old one keeps serving.
    let key_before = std::fs::read_to_string(&served.key).unwrap();
    std::fs::write(&served.cert, "-----BEGIN CERTIFICATE-----\nnot base64\n").unwrap();
    let body = reload(&gateway.admin_url, 422).await;
    assert_eq!(body["error"], "invalid_certificate", "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("served.pem"),
        "{body}"
    );
    // A key that does not fit the certificate: refused too.
    std::fs::write(&served.cert, &ca.leaf("mismatch", &["shop.test"]).cert_pem).unwrap();
    let body = reload(&gateway.admin_url, 422).await;
    assert!(
        body["detail"].as_str().unwrap().contains("does not fit"),
        "{body}"
    );
    // The watch sees the same bad files and refuses them too.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(presented(&ca, &addr, "shop.test").await, serving);
    assert_eq!(std::fs::read_to_string(&served.key).unwrap(), key_before);

    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    let (done, failed) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert!(done > 50, "the load ran: {done}");
    assert_eq!(
        failed, 0,
        "{failed} of {done} requests failed across the swaps"
    );
}

/// GET `url` on a new connection trusting `ca`, over HTTP/2 or HTTP/1.1.
async fn get_new(ca: &TestCa, h2: bool, url: &str) -> reqwest::Response {
    ca.client(h2).get(url).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_is_redirected_and_https_answers_carry_hsts() {
    let db = sqlite_db();
    let shop = Shop::start(&db.url).await;
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let (_dir, config) = config_file(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nredirect_listen = \"127.0.0.1:0\"\nhsts_max_age_s = 600\n",
        leaf.cert, leaf.key
    ));
    let mut part = launch(&config, &["--backend", &format!("shop-1={}", shop.addr())]);
    let url = part.expect_line("listening on ").await;
    let admin_url = part.expect_line("admin on ").await;
    let redirect_url = part.expect_line("redirecting to https on ").await;
    support::wait_for_status(&format!("{admin_url}/readyz"), 200, Duration::from_secs(30)).await;
    let https_port = url.rsplit(':').next().unwrap();
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let answer = plain
        .post(format!("{redirect_url}/cart?item=7"))
        .header("host", "shop.test")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 308);
    assert_eq!(
        answer.headers()["location"],
        format!("https://shop.test:{https_port}/cart?item=7").as_str()
    );
    for h2 in [true, false] {
        let answer = get_new(&ca, h2, &format!("{url}/api/products")).await;
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["strict-transport-security"], "max-age=600");
        // The shop's answer keeps its own fields and gains the request id.
        assert_eq!(answer.headers()["content-type"], "application/json");
        assert!(answer.headers().contains_key("x-request-id"));
        // The gateway's own answers carry it too.
        let answer = get_new(&ca, h2, &format!("{url}/status.json")).await;
        assert_eq!(answer.headers()["strict-transport-security"], "max-age=600");
    }

    // A reload changes HSTS for the connections after it. The redirect
    // listener and the shutdown grace are read only at start: they keep
    // their running values, and the answer names them.
    replace(
        std::path::Path::new(&config),
        &format!(
            "[tls]\ncert = {:?}\nkey = {:?}\nredirect_listen = \"127.0.0.1:1\"\n\
             hsts_max_age_s = 60\nhsts_include_subdomains = true\n\
             [timeouts]\nshutdown_grace_ms = 7000\n",
            leaf.cert, leaf.key
        ),
    );
    let reloaded = reload(&admin_url, 200).await;
    assert_eq!(
        reloaded["until_restart"],
        serde_json::json!(["timeouts.shutdown_grace_ms", "tls.redirect_listen"]),
        "{reloaded}"
    );
    for h2 in [true, false] {
        let answer = get_new(&ca, h2, &format!("{url}/api/products")).await;
        assert_eq!(answer.status(), 200);
        assert_eq!(
            answer.headers()["strict-transport-security"],
            "max-age=60; includeSubDomains"
        );
    }
    let answer = plain.get(&redirect_url).send().await.unwrap();
    assert_eq!(
        answer.status(),
        308,
        "the redirect listener stays where it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listener_can_require_client_certificates_with_a_name_on_its_list() {
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let admin_leaf = ca.leaf("admin", &["admin.test"]);
    let operator = ca.leaf("operator", &["operator.test"]);
    // Signed by the same CA, but not a name on the admin list.
    let intern = ca.leaf("intern", &["intern.test"]);
    let (_dir, config) = config_file(&format!(
        "[tls]\ncert = {:?}\nkey = {:?}\n[tls.admin]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\n\
         client_names = [\"Operator.test\", \"ops\"]\n",
        leaf.cert,
        leaf.key,
        admin_leaf.cert,
        admin_leaf.key,
        ca.ca_path()
    ));
    let mut part = launch(&config, &[]);
    let _url = part.expect_line("listening on ").await;
    let admin_url = part.expect_line("admin on ").await;
    assert!(admin_url.starts_with("https://"), "{admin_url}");
    let cacert = ca.ca_path().display().to_string();
    let readyz = format!("{admin_url}/readyz");
    // Without a client certificate, no handshake.
    let deadline = Instant::now() + Duration::from_secs(20);
    let with_cert = loop {
        let (ok, out, err) = curl_as(&operator, &cacert, &readyz);
        if ok {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "the admin listener never answered: {err}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(with_cert.contains("ready"), "{with_cert}");
    let (ok, _, _) = curl(&["--cacert", &cacert, &readyz]);
    assert!(
        !ok,
        "the admin listener must refuse a client without a certificate"
    );
    // A certificate from another CA is refused too.
    let stranger = TestCa::new().leaf("stranger", &["stranger.test"]);
    let (ok, _, _) = curl_as(&stranger, &cacert, &readyz);
    assert!(!ok, "a certificate from another CA must be refused");
    let (ok, _, _) = curl_as(&intern, &cacert, &readyz);
    assert!(
        !ok,
        "a certificate not named in client_names must be refused"
    );
    let (ok, metrics, _) = curl_as(&operator, &cacert, &format!("{admin_url}/metrics"));
    assert!(ok);
    let refused_certificates = ["reason=\"client_certificate\""];
    assert!(
        metric_sum(
            &metrics,
            "gateway_tls_handshake_failures_total",
            &refused_certificates
        ) >= 2.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_stops_the_gateway_before_it_listens_naming_the_file() {
    let ca = TestCa::new();
    let expired = ca.leaf_valid("expired", &["shop.test"], 30, 10);
    let good = ca.leaf("good", &["shop.test"]);
    let cases = [
        (expired.cert.clone(), expired.key.clone(), "has expired"),
        (good.cert.clone(), expired.key.clone(), "does not fit"),
        (good.key.clone(), good.key.clone(), "holds no certificate"),
    ];
    for (cert, key, why) in cases {
        let output = Command::new(env!("CARGO_BIN_EXE_flashguard"))
            .args(["gateway", "--check-config", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(&key)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{why}");
        assert!(stderr.contains(why), "{why}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_warns_of_a_certificate_that_expires_within_14_days() {
    let ca = TestCa::new();
    // Valid for 10 days from yesterday: 9 left.
    let soon = ca.leaf_valid("soon", &["soon.test"], 1, 10);
    let gateway = support::tls::gateway(&soon, &[]).await;
    let dir = tempfile::tempdir().unwrap();
    let (_monitor, url) = support::monitor_with_default_rules(&gateway.admin_url, dir.path()).await;
    let alert = support::firing_alert(&url, "CertificateExpiresSoon").await;
    assert_eq!(alert["labels"]["name"], "soon.test", "{alert}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shop_killed_under_http2_load_costs_no_request() {
    let db = sqlite_db();
    let shops = [Shop::start(&db.url).await, Shop::start(&db.url).await];
    let created = support::put_product(
        &shops[0].url,
        "hot",
        serde_json::json!({ "name": "Hot", "price_cents": 100, "stock": 1_000_000 }),
    )
    .await;
    assert_eq!(created.status(), 201);
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let gateway = support::tls::gateway(
        &leaf,
        &[
            "--backend",
            &format!("p1={}", shops[0].addr()),
            "--backend",
            &format!("p2={}", shops[1].addr()),
        ],
    )
    .await;
    // Twelve customers multiplexed on one HTTP/2 connection: reads and
    // orders with idempotency keys.
    let client = ca
        .connected_client(&format!("{}/api/products/hot", gateway.url))
        .await;
    let load = support::gateway::Load::start_with(client, &gateway.url, "hot", 12);
    tokio::time::sleep(Duration::from_millis(800)).await;
    shops[0].signal("KILL");
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    let outcomes = load.stop().await;
    let errors: Vec<_> = outcomes.iter().filter(|o| o.is_error()).collect();
    assert!(outcomes.len() > 100, "the load ran: {}", outcomes.len());
    assert!(
        errors.is_empty(),
        "a dying shop failed requests over HTTP/2: {errors:?}"
    );
    let metrics = gateway.metrics().await;
    assert!(metric_sum(&metrics, "gateway_h2_streams_total", &[]) >= outcomes.len() as f64);
    assert_eq!(
        metric_sum(&metrics, "gateway_tls_handshakes_total", &["alpn=\"h2\""]),
        1.0,
        "one connection carried them all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_streams_carry_large_chunked_and_unannounced_bodies_both_ways() {
    use support::gateway::{echo_backend, BIG};
    let backend = echo_backend().await;
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let gateway = support::tls::gateway(&leaf, &["--backend", &format!("echo={backend}")]).await;
    let h2 = ca.client(true);
    // 3 MiB down, far more than a stream's window: sent as the client reads.
    let big = h2.get(format!("{}/big", gateway.url)).send().await.unwrap();
    assert_eq!(big.version(), reqwest::Version::HTTP_2);
    let bytes = big.bytes().await.unwrap();
    assert_eq!(bytes.len(), BIG);
    assert!(bytes.iter().zip((0..=255u8).cycle()).all(|(a, b)| *a == b));
    // A chunked answer arrives unframed and whole.
    let streamed = h2
        .get(format!("{}/stream", gateway.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        streamed,
        (0..50).map(|i| format!("chunk-{i};")).collect::<String>()
    );
    // HEAD: the headers only.
    let head = h2
        .head(format!("{}/big", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    // Request bodies: announced, and streamed without a length (chunked to
    // the backend); the request id and the forwarded headers are set.
    let body = vec![7u8; 200_000];
    let echo = |body: reqwest::Body| {
        h2.post(format!("{}/echo", gateway.url))
            .header("cookie", "a=1")
            .body(body)
            .send()
    };
    let announced: serde_json::Value = echo(body.clone().into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(announced["body_len"], 200_000, "{announced}");
    let chunks = futures::stream::iter(
        body.chunks(10_000)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let unannounced: serde_json::Value = echo(reqwest::Body::wrap_stream(chunks))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unannounced["body_len"], 200_000, "{unannounced}");
    let headers = &unannounced["headers"];
    assert_eq!(headers["transfer-encoding"], "chunked", "{headers}");
    assert_eq!(
        headers["host"],
        gateway.url.trim_start_matches("https://"),
        "{headers}"
    );
    assert!(
        headers["x-request-id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "{headers}"
    );
    assert_eq!(headers["cookie"], "a=1");
}

/// What a new HTTP/2 connection to `addr` is told: the ALPN protocol the
/// gateway chose, and (when it chose `h2`) its SETTINGS as (id, value).
async fn new_connection_told(ca: &TestCa, addr: &str) -> (Option<Vec<u8>>, Vec<(u16, u32)>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = connect(ca.rustls_client(&[b"h2", b"http/1.1"]), addr, "shop.test")
        .await
        .unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    if alpn.as_deref() != Some(b"h2") {
        return (alpn, Vec::new());
    }
    // The preface and an empty SETTINGS; the server's SETTINGS comes first.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let mut head = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut head))
        .await
        .expect("the server's SETTINGS in time")
        .unwrap();
    assert_eq!(head[3], 0x4, "SETTINGS first: {head:?}");
    let mut payload = vec![0u8; u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize];
    tls.read_exact(&mut payload).await.unwrap();
    let settings = payload
        .chunks_exact(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    (alpn, settings)
}

const MAX_CONCURRENT_STREAMS: u16 = 0x3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_http2_for_new_connections_and_keeps_the_open_ones() {
    let backend = support::gateway::echo_backend().await;
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let tls = format!("[tls]\ncert = {:?}\nkey = {:?}\n", leaf.cert, leaf.key);
    let (_dir, config) = config_file(&tls);
    let gateway =
        Gateway::start(&["--config", &config, "--backend", &format!("echo={backend}")]).await;
    let addr = gateway.url.trim_start_matches("https://").to_string();
    let (alpn, settings) = new_connection_told(&ca, &addr).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 100)),
        "{settings:?}"
    );
    // A customer whose connection stays open across the reloads.
    let kept = ca.client(true);
    let url = format!("{}/echo", gateway.url);
    assert_eq!(kept.get(&url).send().await.unwrap().status(), 200);

    // Under an HTTP/2 flood an operator tightens the limits: new
    // connections get them at once, without a restart.
    replace(
        std::path::Path::new(&config),
        &format!("{tls}[http2]\nmax_concurrent_streams = 7\n"),
    );
    let reloaded = reload(&gateway.admin_url, 200).await;
    assert_eq!(
        reloaded["until_restart"],
        serde_json::json!([]),
        "{reloaded}"
    );
    let (_, settings) = new_connection_told(&ca, &addr).await;
    assert!(
        settings.contains(&(MAX_CONCURRENT_STREAMS, 7)),
        "{settings:?}"
    );

    // And may turn HTTP/2 off: new connections are offered HTTP/1.1 only.
    replace(
        std::path::Path::new(&config),
        &format!("{tls}[http2]\nenabled = false\n"),
    );
    reload(&gateway.admin_url, 200).await;
    let (alpn, _) = new_connection_told(&ca, &addr).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let http1 = get_new(&ca, false, &url).await;
    assert_eq!(http1.status(), 200);
    assert_eq!(http1.version(), reqwest::Version::HTTP_11);

    // The customer's HTTP/2 connection went on through both reloads.
    let answer = kept.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_tls_handshakes_total", &["alpn=\"h2\""]),
        3.0,
        "the two probes before the last reload and the kept customer, once"
    );
}
