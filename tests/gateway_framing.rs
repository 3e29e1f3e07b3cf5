//! Strict HTTP/1.1 framing and hosts at the gateway (RFC 9112, RFC 9110),
//! each case sent as raw bytes: what a front proxy tolerating sloppy
//! framing would read differently from the gateway is refused before it
//! reaches a backend, and transfer codings are never silently dropped.

mod support;

use serde_json::Value;
use support::gateway::{echo_backend, exchange, metric_sum, Gateway};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

async fn gateway_to(backend: &str) -> (Gateway, String) {
    let gateway = Gateway::start(&["--backend", &format!("b={backend}")]).await;
    let addr = gateway.url.trim_start_matches("http://").to_string();
    (gateway, addr)
}

/// The headers the echo backend says it got, from a whole answer.
fn echoed_headers(answer: &str) -> Value {
    let body = answer.split_once("\r\n\r\n").expect("a head and a body").1;
    let json: Value = serde_json::from_str(body).expect("the echo backend's JSON");
    json["headers"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunk_lines_must_end_in_crlf_exactly() {
    let (gateway, addr) = gateway_to(&echo_backend().await.to_string()).await;
    for body in [
        &b"5;a\nb\r\nhello\r\n0\r\n\r\n"[..],
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nX-Trailer: 1\n\r\n",
    ] {
        let mut request =
            b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        request.extend_from_slice(body);
        // Pipelined after it: must never be read as a request of its own.
        request.extend_from_slice(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = exchange(&addr, &request).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert_eq!(answer.matches("HTTP/1.1 ").count(), 1, "{answer}");
    }
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_requests_total", &["status=\"200\""]),
        0.0,
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_codings_under_chunked_are_501_and_chunked_not_last_is_400() {
    let (gateway, addr) = gateway_to(&echo_backend().await.to_string()).await;
    let answer = exchange(
        &addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    for codings in [
        "chunked, identity",
        "gzip",
        "chunked\r\nTransfer-Encoding: gzip",
    ] {
        let request = format!(
            "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {codings}\r\n\r\n0\r\n\r\n"
        );
        let answer = exchange(&addr, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{codings}: {answer}");
        assert!(answer.contains("connection: close"), "{answer}");
    }
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_requests_total", &["backend=\"b\""]),
        0.0,
        "nothing reached the backend: {metrics}"
    );
}

/// A backend that answers every request with a gzip-coded chunked body.
async fn coded_backend() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut chunk = [0u8; 1024];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&chunk[..n]),
                    }
                }
                if seen.starts_with(b"GET /readyz") {
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                        )
                        .await;
                    return;
                }
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n\
                          4\r\nGZIP\r\n0\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_codings_reach_http11_clients_unchanged_and_http10_clients_get_502() {
    let (_gateway, addr) = gateway_to(&coded_backend().await).await;
    let answer = exchange(
        &addr,
        b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Transfer-Encoding: gzip, chunked"),
        "the coding is passed on: {head}"
    );
    assert_eq!(body, "4\r\nGZIP\r\n0\r\n\r\n");
    let old = exchange(&addr, b"GET /x HTTP/1.0\r\n\r\n").await;
    assert!(old.starts_with("HTTP/1.1 502"), "{old}");
    assert!(old.contains("transfer coding"), "{old}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_required_once_and_an_absolute_target_names_it() {
    let (gateway, addr) = gateway_to(&echo_backend().await.to_string()).await;
    for request in [
        &b"GET /echo HTTP/1.1\r\n\r\n"[..],
        b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET /echo HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
    ] {
        let answer = exchange(&addr, request).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{}: {answer}",
            String::from_utf8_lossy(request)
        );
    }
    let metrics = gateway.metrics().await;
    assert_eq!(
        metric_sum(&metrics, "gateway_requests_total", &["backend=\"b\""]),
        0.0,
        "{metrics}"
    );

    let answer = exchange(
        &addr,
        b"GET /echo HTTP/1.1\r\nHost: shop\r\nConnection: close, Host\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(
        echoed_headers(&answer)["host"],
        "shop",
        "Connection cannot drop Host"
    );

    let answer = exchange(
        &addr,
        b"GET http://shop.example:8080/echo HTTP/1.1\r\nHost: elsewhere\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(echoed_headers(&answer)["host"], "shop.example:8080");

    // HTTP/1.0 may leave Host out; the backend gets its own.
    let answer = exchange(&addr, b"GET /echo HTTP/1.0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
