//! Shared by the end-to-end tests: real `flashguard` processes on loopback,
//! fresh PostgreSQL databases, and an HTTP client.
#![allow(dead_code, unreachable_pub)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

pub const ADMIN_TOKEN: &str = "test-admin-token";

pub mod gateway;
pub mod h2;
pub mod stack;
pub mod tls;

/// A `flashguard` process and its stdout; SIGKILLed when dropped so no test
/// leaves one behind.
pub struct Part {
    pub child: Child,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Part {
    /// Starts `flashguard ARGS`, with the admin token in its environment.
    pub fn launch(args: &[&str], admin_token: Option<&str>) -> Part {
        let mut command = Command::new(env!("CARGO_BIN_EXE_flashguard"));
        command
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("FLASHGUARD_ADMIN_TOKEN")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        if let Some(token) = admin_token {
            command.env("FLASHGUARD_ADMIN_TOKEN", token);
        }
        let mut child = command.spawn().expect("the flashguard binary starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        Part {
            child,
            lines: BufReader::new(stdout).lines(),
        }
    }

    /// Reads the next stdout line, which must start with `prefix`, and
    /// returns the rest.
    pub async fn expect_line(&mut self, prefix: &str) -> String {
        let line = tokio::time::timeout(Duration::from_secs(30), self.lines.next_line())
            .await
            .expect("the process printed a line within 30 s")
            .expect("stdout is readable")
            .expect("the process printed a line before exiting");
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("expected a line starting {prefix:?}, got {line:?}"))
            .to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("the process is still running")
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }
}

/// Polls `url` until it answers `status`; fails the test after `within`.
pub async fn wait_for_status(url: &str, status: u16, within: Duration) {
    let client = client();
    let deadline = Instant::now() + within;
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status() == status {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never answered {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether the other side closes `stream` (or resets it) within `within`,
/// whatever it sends first.
pub async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    within: Duration,
) -> bool {
    use tokio::io::AsyncReadExt;
    let mut rest = [0; 64];
    let read_to_end = async {
        loop {
            match stream.read(&mut rest).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_end).await.is_ok()
}

/// A process's resident memory, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc")
}

/// A shop process.
pub struct Shop {
    pub part: Part,
    pub url: String,
}

impl Shop {
    /// Starts `flashguard shop` on a free port and waits for its
    /// `listening on` line, then for `/readyz`.
    pub async fn start(db_url: &str) -> Shop {
        Shop::start_with(db_url, &[], Some(ADMIN_TOKEN)).await
    }

    pub async fn start_with(db_url: &str, extra_args: &[&str], admin_token: Option<&str>) -> Shop {
        let shop = Shop::launch(db_url, "127.0.0.1:0", extra_args, admin_token).await;
        shop.wait_ready().await;
        shop
    }

    /// Starts a shop on `listen` without waiting for it to be ready.
    pub async fn launch(
        db_url: &str,
        listen: &str,
        extra_args: &[&str],
        admin_token: Option<&str>,
    ) -> Shop {
        let mut args = vec!["shop", "--listen", listen, "--db", db_url];
        args.extend_from_slice(extra_args);
        let mut part = Part::launch(&args, admin_token);
        let url = part.expect_line("listening on ").await;
        Shop { part, url }
    }

    /// `IP:PORT` of the shop.
    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub async fn wait_ready(&self) {
        self.wait_readyz(200, Duration::from_secs(30)).await;
    }

    /// Polls `/readyz` until it answers `status`; fails the test after `within`.
    pub async fn wait_readyz(&self, status: u16, within: Duration) {
        wait_for_status(&format!("{}/readyz", self.url), status, within).await;
    }

    pub fn pid(&self) -> u32 {
        self.part.pid()
    }

    pub fn signal(&self, signal: &str) {
        self.part.signal(signal);
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(64)
        .build()
        .expect("client builds")
}

/// A fresh SQLite file in its own temporary folder.
pub struct SqliteDb {
    pub dir: tempfile::TempDir,
    pub url: String,
}

pub fn sqlite_db() -> SqliteDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("shop.db").display());
    SqliteDb { dir, url }
}

/// The PostgreSQL server the tests use. CI always sets FLASHGUARD_TEST_PG;
/// a missing variable fails loudly rather than skipping tests quietly.
pub fn pg_admin_url() -> String {
    std::env::var("FLASHGUARD_TEST_PG").expect(
        "FLASHGUARD_TEST_PG must name a PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/test \
         (scripts/test sets it)",
    )
}

/// A new, empty PostgreSQL database; dropped by `drop_pg_database`.
pub async fn pg_database() -> String {
    use sqlx::Connection;
    let admin = pg_admin_url();
    let name = format!("fg_test_{}", uuid::Uuid::new_v4().simple());
    let mut connection = sqlx::PgConnection::connect(&admin)
        .await
        .expect("connect to FLASHGUARD_TEST_PG");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut connection)
        .await
        .expect("create test database");
    let (base, _) = admin.rsplit_once('/').expect("the URL names a database");
    format!("{base}/{name}")
}

pub async fn drop_pg_database(url: &str) {
    use sqlx::Connection;
    let name = url
        .rsplit('/')
        .next()
        .expect("the URL names a database")
        .to_string();
    assert!(
        name.starts_with("fg_test_"),
        "only test databases are dropped"
    );
    if let Ok(mut connection) = sqlx::PgConnection::connect(&pg_admin_url()).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut connection)
            .await;
    }
}

/// Polls a JSON URL until `ok` holds; fails the test after `within`.
pub async fn poll_json(url: &str, within: Duration, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(response) = client().get(url).send().await {
            if let Ok(body) = response.json::<Value>().await {
                if ok(&body) {
                    return body;
                }
            }
        }
        assert!(Instant::now() < deadline, "{url} never satisfied the check");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The monitor with its default rules, as a store runs it, watching the
/// gateway whose admin API is at `gateway_admin_url`; its incidents go to
/// `dir`. The process and its URL.
pub async fn monitor_with_default_rules(
    gateway_admin_url: &str,
    dir: &std::path::Path,
) -> (Part, String) {
    let mut monitor = Part::launch(
        &[
            "monitor",
            "--listen",
            "127.0.0.1:0",
            "--target",
            &format!("gateway={gateway_admin_url}"),
            "--incidents-db",
            &dir.join("incidents.sqlite").display().to_string(),
        ],
        Some(ADMIN_TOKEN),
    );
    let url = monitor.expect_line("listening on ").await;
    (monitor, url)
}

/// Waits up to 30 s for the monitor at `url` to fire the alert `name`;
/// the alert.
pub async fn firing_alert(url: &str, name: &str) -> Value {
    let is_it = |x: &Value| x["labels"]["alertname"] == name && x["state"] == "firing";
    let alerts = poll_json(&format!("{url}/api/alerts"), Duration::from_secs(30), |v| {
        v.as_array().is_some_and(|a| a.iter().any(is_it))
    })
    .await;
    let found = alerts.as_array().into_iter().flatten().find(|x| is_it(x));
    found.cloned().unwrap_or_default()
}

/// GETs a URL and returns its body as text.
pub async fn get_text(client: &reqwest::Client, url: &str) -> String {
    client
        .get(url)
        .send()
        .await
        .expect("GET is answered")
        .text()
        .await
        .expect("the body is text")
}

/// GETs a URL and parses its JSON body.
pub async fn get_json<T: serde::de::DeserializeOwned>(client: &reqwest::Client, url: &str) -> T {
    client
        .get(url)
        .send()
        .await
        .expect("GET is answered")
        .json()
        .await
        .expect("the body is JSON")
}

/// Creates or replaces a product through the admin API.
pub async fn put_product(shop_url: &str, sku: &str, body: Value) -> reqwest::Response {
    client()
        .put(format!("{shop_url}/admin/products/{sku}"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("admin PUT is answered")
}

/// Places an order; answers (status, headers, body as JSON).
pub async fn order(
    client: &reqwest::Client,
    shop_url: &str,
    key: &str,
    body: Value,
) -> Result<(u16, reqwest::header::HeaderMap, Value), reqwest::Error> {
    let response = client
        .post(format!("{shop_url}/api/orders"))
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.json::<Value>().await?;
    Ok((status, headers, body))
}

/// Every order in the store, from the admin export.
pub async fn export(shop_url: &str) -> Vec<Value> {
    let text = client()
        .get(format!("{shop_url}/admin/orders"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("export is answered")
        .text()
        .await
        .expect("export body");
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each export line is JSON"))
        .collect()
}

pub async fn inventory(shop_url: &str) -> Vec<Value> {
    client()
        .get(format!("{shop_url}/admin/inventory"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("inventory is answered")
        .json()
        .await
        .expect("inventory is JSON")
}

/// `flashguard rehearse ARGS --report-dir DIR`, run to its end: its stdout.
/// Fails the test with both outputs when the rehearsal does not pass.
pub fn rehearse(args: &[&str], dir: &std::path::Path) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .arg("rehearse")
        .args(args)
        .arg("--report-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("PASSED"), "{stdout}");
    stdout
}

/// What a script printed as its last line, as JSON (the Node checks end
/// with their findings there); panics with all it printed if that is not
/// JSON or the script failed.
pub fn last_json_line(output: &std::process::Output) -> Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let seen: Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "the check printed no result: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "{seen}");
    seen
}

/// The document Debian's Chromium (headless) made of `url` once loaded.
pub fn chromium_dom(url: &str) -> String {
    let output = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--dump-dom",
            url,
        ])
        .output()
        .expect("chromium is installed (.ci/run installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Python test server from `tests/` (run with the venv scripts/test
/// fills: dnslib, aiosmtpd), killed when dropped, once it printed
/// `listening on PORT`; its stdin stays open (it stops when it closes) and
/// the rest of its stdout is the caller's.
pub struct PythonServer {
    pub child: Child,
    pub port: u16,
    pub lines: Lines<BufReader<ChildStdout>>,
}

pub async fn python_server(script: &str, args: &[&std::path::Path]) -> PythonServer {
    let python = std::env::var("FLASHGUARD_PYTHON").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/target/schemathesis/bin/python"
        )
        .to_string()
    });
    let script = format!("{}/tests/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new(&python)
        .arg(&script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{python}: {e} (scripts/test installs its packages there)"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{script} starts"))
        .unwrap()
        .unwrap_or_else(|| panic!("{script} printed its port"));
    let port = line
        .strip_prefix("listening on ")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line: {line}"));
    PythonServer { child, port, lines }
}

/// A monitor with `config` as its file, scraping `target` (`NAME=URL`),
/// with one rule only — `TargetDown` (`up < 1` for 1 s, severity
/// critical): the default host rules would fire on a busy machine and
/// open incidents of their own. Its incidents go to a file in `dir`.
pub async fn monitor_watching(
    dir: &std::path::Path,
    config: &str,
    target: &str,
    admin_token: Option<&str>,
) -> (Part, String) {
    let file = dir.join("monitor.toml");
    std::fs::write(&file, config).unwrap();
    let rules = dir.join("rules.toml");
    std::fs::write(
        &rules,
        "[[rule]]\nname = \"TargetDown\"\nmetric = \"up\"\nop = \"<\"\nthreshold = 1\n\
         for_s = 1\nlabels = { severity = \"critical\" }\n\
         annotations = { summary = \"{{ $labels.target }} is down\" }\n",
    )
    .unwrap();
    let mut part = Part::launch(
        &[
            "monitor",
            "--config",
            &file.display().to_string(),
            "--listen",
            "127.0.0.1:0",
            "--target",
            target,
            "--incidents-db",
            &dir.join("incidents.sqlite").display().to_string(),
            "--rules",
            &rules.display().to_string(),
        ],
        admin_token,
    );
    let url = part.expect_line("listening on ").await;
    (part, url)
}

/// Every JSON body POSTed to a receiver, with the path's name.
pub type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>;

/// An HTTP server that keeps every JSON body POSTed to `/{name}` (a
/// webhook, Slack or PagerDuty stand-in); its URL.
pub async fn json_receiver() -> (String, Received) {
    use axum::extract::{Path, State};
    let received: Received = Default::default();
    let app = axum::Router::new()
        .route(
            "/{name}",
            axum::routing::post(
                |State(seen): State<Received>,
                 Path(name): Path<String>,
                 axum::Json(body): axum::Json<Value>| async move {
                    seen.lock().unwrap().push((name, body));
                    axum::http::StatusCode::ACCEPTED
                },
            ),
        )
        .with_state(std::sync::Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}
