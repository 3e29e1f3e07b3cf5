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

/// Sends `request` on `stream` and reads its answer's head and body (the
/// answer has a length); the head in lower case.
async fn exchange(stream: &mut tokio::net::TcpStream, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut read = Vec::new();
    let mut buf = [0; 4096];
    async fn read_more(stream: &mut tokio::net::TcpStream, buf: &mut [u8]) -> usize {
        tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(buf))
            .await
            .expect("an answer within 10 s")
            .unwrap()
    }
    let head_end = loop {
        if let Some(at) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = read_more(stream, &mut buf).await;
        assert!(n > 0, "closed before the answer's head");
        read.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&read[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse().ok())
        .expect("an answer with a length");
    while read.len() < head_end + length {
        let n = read_more(stream, &mut buf).await;
        assert!(n > 0, "closed inside the answer's body");
        read.extend_from_slice(&buf[..n]);
    }
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http10_client_that_asks_to_keep_the_connection_is_told_it_is_kept() {
    let backend = echo_backend().await;
    let gateway = Gateway::start(&["--backend", &format!("echo={backend}")]).await;
    let addr = gateway.url.trim_start_matches("http://").to_string();

    // HTTP/1.0 assumes the connection closes unless told otherwise (`ab
    // -k` and some old probes ask this way): told, and kept.
    let mut kept = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let asking = "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    for _ in 0..3 {
        let head = exchange(&mut kept, asking).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("\r\nconnection: keep-alive\r\n"), "{head}");
        assert!(head.contains("\r\nkeep-alive: timeout=4\r\n"), "{head}");
    }

    // Not asked, or asked to close: said to close, closed, and not told
    // an idle timeout that no longer means anything.
    for request in [
        "GET /echo HTTP/1.0\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n",
    ] {
        let mut once = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let head = exchange(&mut once, request).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(!head.contains("keep-alive"), "{head}");
        assert!(
            support::closed_by_peer(&mut once, std::time::Duration::from_secs(10)).await,
            "{request:?} left open"
        );
    }
}
