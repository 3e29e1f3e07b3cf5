//! On call by email: a page goes through a real SMTP server on loopback
//! (aiosmtpd, tests/smtp/server.py), and the message it received has the
//! incident in its subject and a working acknowledgement link in its body.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{client, get_json, python_server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_reaches_a_real_mail_server_with_a_link_that_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let mut smtp = python_server("smtp/server.py", &[]).await;
    // Nothing listens on port 1: TargetDown fires.
    let (_monitor, url) = support::monitor_watching(
        dir.path(),
        &format!(
            r#"incident_quiet_s = 600
[oncall]
public_url = "http://127.0.0.1:8003"
[oncall.smtp]
server = "127.0.0.1"
port = {}
from = "flashguard on call <oncall@flashguard.test>"
[[oncall.person]]
name = "ana"
email = "ana@shop.test"
[[oncall.policy]]
name = "everything"
[[oncall.policy.level]]
targets = ["person:ana"]
"#,
            smtp.port
        ),
        "ghost=http://127.0.0.1:1",
        None,
    )
    .await;
    let line = tokio::time::timeout(Duration::from_secs(15), smtp.lines.next_line())
        .await
        .expect("a page reached the mail server within 15 s")
        .unwrap()
        .expect("the mail server printed the message");
    let mail: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(mail["from"], "oncall@flashguard.test");
    assert_eq!(mail["to"], serde_json::json!(["ana@shop.test"]));
    let data = mail["data"].as_str().unwrap();
    assert!(
        data.contains("Subject: [flashguard] incident 1: TargetDown: ghost is down (level 1 of 1)"),
        "{data}"
    );
    // The link, as the body gives it (quoted-printable may fold lines).
    let body = data.replace("=\r\n", "").replace("=\n", "");
    let link = body
        .split_whitespace()
        .find(|w| w.contains("/oncall/ack/"))
        .unwrap_or_else(|| panic!("no link in {body}"))
        .replace("http://127.0.0.1:8003", &url);
    let acked = client().post(&link).send().await.unwrap();
    assert_eq!(acked.status(), 200);
    let status: Value = get_json(&client(), &format!("{url}/api/oncall")).await;
    assert_eq!(
        status["escalations"][0]["acknowledged"]["by"], "ana",
        "{status}"
    );
    assert_eq!(status["escalations"][0]["acknowledged"]["via"], "link");
    // The CLI acknowledges too (renewing it), through the same API.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_flashguard"))
        .args(["incident", "ack", "1", "--as", "ben", "--monitor", &url])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("incident 1 acknowledged by ben"));
    let status: Value = get_json(&client(), &format!("{url}/api/oncall")).await;
    assert_eq!(
        status["escalations"][0]["acknowledged"]["by"], "ben",
        "{status}"
    );
    assert_eq!(status["escalations"][0]["acknowledged"]["via"], "cli");
}
