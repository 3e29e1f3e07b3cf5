//! An idle keep-alive connection closed by the gateway just as its client
//! reuses it fails the request sent on it. Answers over HTTP/1.1 tell the
//! client the idle timeout (`keep-alive: timeout=N`, a second under
//! `client_idle_ms`) so that a client that reads it stops first; HTTP/2,
//! where the header is malformed, closes with a GOAWAY instead.

mod support;

use std::process::Command;

use support::gateway::{echo_backend, Gateway};
use support::tls::TestCa;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http11_answers_tell_the_idle_timeout_and_http2_answers_do_not() {
    let backend = echo_backend().await;
    // One request a second per client, so that the gateway answers the
    // second itself (429), on the same connection.
    let (plain, _dir) = Gateway::start_with_config(
        "[limits]\nper_client_rps = 1\nper_client_burst = 1\n",
        &["--backend", &format!("echo={backend}")],
    )
    .await;
    let client = support::client();
    let url = format!("{}/echo", plain.url);
    let forwarded = client.get(&url).send().await.unwrap();
    assert_eq!(forwarded.status(), 200);
    assert_eq!(
        forwarded.headers()["keep-alive"],
        "timeout=4",
        "the default, 5 s, less one"
    );
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 429, "the gateway's own answer");
    assert_eq!(refused.headers()["keep-alive"], "timeout=4", "{refused:?}");

    let ca = TestCa::new();
    let (tls, _dir, _) =
        support::tls::echo_gateway_with(&ca, "[timeouts]\nclient_idle_ms = 60000\n").await;
    let url = format!("{}/echo", tls.url);
    let http11 = ca.client(false).get(&url).send().await.unwrap();
    assert_eq!(http11.version(), reqwest::Version::HTTP_11);
    assert_eq!(http11.headers()["keep-alive"], "timeout=59");
    // HTTP/2 clients must treat a `keep-alive` field as malformed (RFC 9113,
    // 8.2.2): h2 under reqwest would reset the stream.
    let http2 = ca.client(true).get(&url).send().await.unwrap();
    assert_eq!(http2.status(), 200);
    assert_eq!(http2.version(), reqwest::Version::HTTP_2);
    assert!(!http2.headers().contains_key("keep-alive"), "{http2:?}");
}

/// Node's http agent as Node 20 makes its default one (keep-alive, idle
/// sockets kept 5 s): two GETs, the milliseconds given apart; prints each
/// answer's status, `keep-alive` header and the client port it came on.
const TWO_GETS: &str = r#"
const http = require('http');
const [url, wait] = [process.argv[1], Number(process.argv[2])];
const agent = new http.Agent({ keepAlive: true, scheduling: 'lifo', timeout: 5000 });
const get = () => new Promise((done, fail) => {
  http.get(url, { agent }, (res) => {
    const port = res.socket.localPort;
    res.resume();
    res.on('end', () => done({ status: res.statusCode, keepAlive: res.headers['keep-alive'] ?? null, port }));
  }).on('error', fail);
});
(async () => {
  const first = await get();
  await new Promise((r) => setTimeout(r, wait));
  const second = await get();
  console.log(JSON.stringify({ node: process.versions.node, first, second }));
  agent.destroy();
})().catch((err) => { console.log(JSON.stringify({ error: String(err) })); process.exit(1); });
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_http_agent_stops_reusing_an_idle_connection_before_the_gateway_closes_it() {
    // The defaults on both sides: the gateway closes an idle connection
    // after 5 s, and Node's agent keeps one 5 s unless told otherwise.
    let backend = echo_backend().await;
    let gateway = Gateway::start(&["--backend", &format!("echo={backend}")]).await;
    // Past the 3 s Node takes from `timeout=4` (a second less), short of
    // the gateway's 5 s. Untold, Node would send on the same connection
    // here, and at 5 s into the gateway's close.
    let output = Command::new("node")
        .args(["-e", TWO_GETS, &format!("{}/echo", gateway.url), "4000"])
        .output()
        .expect("node runs");
    let seen = support::last_json_line(&output);
    let major: u32 = seen["node"]
        .as_str()
        .and_then(|v| v.split('.').next()?.parse().ok())
        .unwrap_or(0);
    assert!(major >= 20, "Node reads the hint from 20 on: {seen}");
    for answer in ["first", "second"] {
        assert_eq!(seen[answer]["status"], 200, "{seen}");
        assert_eq!(seen[answer]["keepAlive"], "timeout=4", "{seen}");
    }
    assert_ne!(
        seen["first"]["port"], seen["second"]["port"],
        "Node closed the idle connection itself and opened another: {seen}"
    );
}
