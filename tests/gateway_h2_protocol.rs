//! The gateway's HTTP/2 as RFC 9113 asks, frame by frame over TLS: each
//! connection error is answered with GOAWAY and its code; each stream
//! error resets only its stream while the connection goes on; a request
//! HTTP/2 does not allow never reaches a backend; the windows hold both
//! ways; and the limits on streams and header lists are kept.

mod support;

use support::gateway::{echo_backend, Gateway};
use support::h2::*;
use support::tls::TestCa;

/// A TLS gateway in front of the echo backend, and its `HOST:PORT`.
async fn echo_gateway(ca: &TestCa) -> (Gateway, String) {
    let backend = echo_backend().await;
    let leaf = ca.leaf("shop", &["shop.test"]);
    let gateway = support::tls::gateway(&leaf, &["--backend", &format!("echo={backend}")]).await;
    let addr = gateway.url.trim_start_matches("https://").to_string();
    (gateway, addr)
}

fn headers(stream: u32, block: &[u8], end_stream: bool) -> Vec<u8> {
    let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
    frame(HEADERS, flags, stream, block)
}

fn get(stream: u32, path: &str) -> Vec<u8> {
    headers(stream, &request_block(false, path), true)
}

fn with_fields(post: bool, path: &str, fields: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut block = request_block(post, path);
    for (name, value) in fields {
        literal(name, value, &mut block);
    }
    block
}

/// The status and body of stream `id`'s answer, read to its end.
async fn answer(h2: &mut RawH2, id: u32) -> (String, Vec<u8>) {
    let frames = h2
        .until(|f| {
            f.stream == id && (f.flags & END_STREAM != 0 || f.kind == RST_STREAM)
                || f.kind == GOAWAY
        })
        .await;
    let mine: Vec<&Frame> = frames.iter().filter(|f| f.stream == id).collect();
    let head = mine
        .iter()
        .find(|f| f.kind == HEADERS)
        .unwrap_or_else(|| panic!("no answer on {id}: {frames:?}"));
    // The gateway encodes `:status` indexed (200) or as a literal with
    // the static name `:status` (index 8).
    let status = match head.payload[0] {
        0x88 => "200".to_string(),
        0x08 => {
            String::from_utf8(head.payload[2..2 + usize::from(head.payload[1])].to_vec()).unwrap()
        }
        other => format!("indexed {other:#x}"),
    };
    let body = mine
        .iter()
        .filter(|f| f.kind == DATA)
        .flat_map(|f| f.payload.clone())
        .collect();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_answered_with_goaway_and_their_code() {
    let ca = TestCa::new();
    let (_gateway, addr) = echo_gateway(&ca).await;
    let window_too_large = {
        let mut v = frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes());
        v.extend(frame(WINDOW_UPDATE, 0, 0, &0x7fff_ffffu32.to_be_bytes()));
        v
    };
    let cases: Vec<(&str, Vec<u8>, u32)> = vec![
        ("DATA on stream 0", frame(DATA, 0, 0, b"x"), PROTOCOL_ERROR),
        ("HEADERS on an even stream", get(2, "/echo"), PROTOCOL_ERROR),
        (
            "DATA on an idle stream",
            frame(DATA, 0, 5, b"x"),
            PROTOCOL_ERROR,
        ),
        (
            "a frame past 16,384 bytes",
            frame(DATA, 0, 1, &[0; 16_385]),
            FRAME_SIZE_ERROR,
        ),
        (
            "a window update of 0",
            frame(WINDOW_UPDATE, 0, 0, &[0; 4]),
            PROTOCOL_ERROR,
        ),
        ("a window past 2^31-1", window_too_large, FLOW_CONTROL_ERROR),
        (
            "an initial window past 2^31-1",
            frame(SETTINGS, 0, 0, &[0, 4, 0x80, 0, 0, 0]),
            FLOW_CONTROL_ERROR,
        ),
        (
            "ENABLE_PUSH 2",
            frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 2]),
            PROTOCOL_ERROR,
        ),
        (
            "MAX_FRAME_SIZE 100",
            frame(SETTINGS, 0, 0, &[0, 5, 0, 0, 0, 100]),
            PROTOCOL_ERROR,
        ),
        (
            "SETTINGS of 5 bytes",
            frame(SETTINGS, 0, 0, &[0; 5]),
            FRAME_SIZE_ERROR,
        ),
        (
            "PING of 7 bytes",
            frame(PING, 0, 0, &[0; 7]),
            FRAME_SIZE_ERROR,
        ),
        (
            "PUSH_PROMISE from a client",
            frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2]),
            PROTOCOL_ERROR,
        ),
        (
            "a frame inside a header block",
            [
                frame(HEADERS, END_STREAM, 1, &request_block(false, "/echo")),
                frame(PING, 0, 0, &[0; 8]),
            ]
            .concat(),
            PROTOCOL_ERROR,
        ),
        (
            "CONTINUATION with no block open",
            frame(CONTINUATION, END_HEADERS, 1, &[0x82]),
            PROTOCOL_ERROR,
        ),
        (
            "HPACK index 0",
            headers(1, &[0x80], true),
            COMPRESSION_ERROR,
        ),
        (
            "HPACK index past the table",
            headers(1, &[0xff, 0x10], true),
            COMPRESSION_ERROR,
        ),
        (
            "HEADERS after the stream ended",
            [get(1, "/slow"), get(1, "/slow")].concat(),
            STREAM_CLOSED,
        ),
    ];
    for (name, bytes, code) in cases {
        let mut h2 = RawH2::connect(&ca, &addr, &[]).await;
        h2.send(&bytes).await;
        let frames = h2.until(|f| f.kind == GOAWAY).await;
        let goaway = frames.iter().find(|f| f.kind == GOAWAY);
        assert_eq!(goaway.map(Frame::code), Some(code), "{name}: {frames:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_errors_reset_only_their_stream_and_never_reach_the_backend() {
    let ca = TestCa::new();
    let (gateway, addr) = echo_gateway(&ca).await;
    let mut h2 = RawH2::connect(&ca, &addr, &[]).await;
    let bad: Vec<(&str, Vec<u8>)> = vec![
        (
            "an uppercase name",
            headers(1, &with_fields(false, "/echo", &[(b"X-Bad", b"1")]), true),
        ),
        (
            "a value that would end the line",
            headers(
                3,
                &with_fields(false, "/echo", &[(b"x-a", b"1\r\nx-smuggled: yes")]),
                true,
            ),
        ),
        (
            "connection",
            headers(
                5,
                &with_fields(false, "/echo", &[(b"connection", b"close")]),
                true,
            ),
        ),
        (
            "transfer-encoding",
            headers(
                7,
                &with_fields(true, "/echo", &[(b"transfer-encoding", b"chunked")]),
                false,
            ),
        ),
        (
            "a path with a space",
            headers(9, &request_block(false, "/echo x"), true),
        ),
        (
            "a path not starting with /",
            headers(11, &request_block(false, "echo"), true),
        ),
        (
            "a length with no body",
            headers(
                13,
                &with_fields(true, "/echo", &[(b"content-length", b"5")]),
                true,
            ),
        ),
    ];
    for (name, bytes) in &bad {
        h2.send(bytes).await;
        let frames = h2.settle().await;
        let reset = frames.iter().find(|f| f.kind == RST_STREAM);
        assert_eq!(
            reset.map(Frame::code),
            Some(PROTOCOL_ERROR),
            "{name}: {frames:?}"
        );
        assert!(
            frames.iter().all(|f| f.kind != HEADERS && f.kind != GOAWAY),
            "{name}: {frames:?}"
        );
    }
    // None of them was handed to the request path.
    let metrics = gateway.metrics().await;
    let streams = support::gateway::metric_sum(&metrics, "gateway_h2_streams_total", &[]);
    assert_eq!(streams, 0.0, "{metrics}");
    // More body than its length: reset when the body comes.
    h2.send(
        &[
            headers(
                15,
                &with_fields(true, "/echo", &[(b"content-length", b"3")]),
                false,
            ),
            frame(DATA, END_STREAM, 15, b"12345"),
        ]
        .concat(),
    )
    .await;
    let frames = h2.until(|f| f.kind == RST_STREAM || f.kind == GOAWAY).await;
    let reset = frames.iter().find(|f| f.kind == RST_STREAM);
    assert_eq!(
        reset.map(|f| (f.stream, f.code())),
        Some((15, PROTOCOL_ERROR)),
        "{frames:?}"
    );
    // The connection goes on.
    h2.send(&get(17, "/echo")).await;
    let (status, body) = answer(&mut h2, 17).await;
    assert_eq!(status, "200");
    assert!(String::from_utf8_lossy(&body).contains("\"host\":\"127.0.0.1\""));

    // A window update of 0 on an open stream resets it alone.
    h2.send(&[get(19, "/slow"), frame(WINDOW_UPDATE, 0, 19, &[0; 4])].concat())
        .await;
    let frames = h2.settle().await;
    let reset = frames
        .iter()
        .find(|f| f.kind == RST_STREAM && f.stream == 19);
    assert_eq!(reset.map(Frame::code), Some(PROTOCOL_ERROR), "{frames:?}");
    h2.send(&get(21, "/echo")).await;
    assert_eq!(answer(&mut h2, 21).await.0, "200");

    // Only the client's own resets are counted as received: 15 and 19
    // were reset by the gateway, 23 by the client.
    h2.send(
        &[
            get(23, "/slow"),
            frame(RST_STREAM, 0, 23, &CANCEL.to_be_bytes()),
        ]
        .concat(),
    )
    .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let metrics = gateway.metrics().await;
        let received = support::gateway::metric_sum(&metrics, "gateway_h2_resets_received", &[]);
        let in_flight =
            support::gateway::metric_sum(&metrics, "gateway_backend_in_flight_requests", &[]);
        if received >= 1.0 && in_flight == 0.0 || std::time::Instant::now() > deadline {
            break metrics;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let received = support::gateway::metric_sum(&metrics, "gateway_h2_resets_received", &[]);
    assert_eq!(received, 1.0, "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_no_one_reads_stops_at_the_window() {
    let ca = TestCa::new();
    let backend = echo_backend().await;
    let leaf = ca.leaf("shop", &["shop.test"]);
    // One request at a time to the backend: a second waits in the queue,
    // its body unread.
    let config = "[concurrency]\nadaptive = false\ninitial = 1\nmin = 1\nmax = 1\n";
    let (gateway, _dir) = support::tls::gateway_with_config(
        &leaf,
        config,
        &["--backend", &format!("echo={backend}")],
    )
    .await;
    let addr = gateway.url.trim_start_matches("https://").to_string();
    let mut h2 = RawH2::connect(&ca, &addr, &[]).await;
    h2.send(&get(1, "/slow")).await;
    // 80,000 bytes on a stream whose window is 65,535.
    let mut bytes = headers(3, &request_block(true, "/echo"), false);
    for _ in 0..5 {
        bytes.extend(frame(DATA, 0, 3, &[b'x'; 16_000]));
    }
    h2.send(&bytes).await;
    let frames = h2.until(|f| f.kind == RST_STREAM || f.kind == GOAWAY).await;
    let reset = frames.iter().find(|f| f.kind == RST_STREAM);
    assert_eq!(
        reset.map(|f| (f.stream, f.code())),
        Some((3, FLOW_CONTROL_ERROR)),
        "{frames:?}"
    );
    // The slow request is answered, and the connection goes on.
    assert_eq!(answer(&mut h2, 1).await.0, "200");
    h2.send(&get(5, "/echo")).await;
    assert_eq!(answer(&mut h2, 5).await.0, "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_the_limit_are_refused_and_a_header_list_past_it_is_answered_431() {
    let ca = TestCa::new();
    let (_gateway, addr) = echo_gateway(&ca).await;
    let mut h2 = RawH2::connect(&ca, &addr, &[]).await;
    // 101 slow requests at once: the default limit is 100 streams.
    let bytes: Vec<u8> = (0..101u32).flat_map(|n| get(2 * n + 1, "/slow")).collect();
    h2.send(&bytes).await;
    let frames = h2.settle().await;
    let refused: Vec<&Frame> = frames.iter().filter(|f| f.kind == RST_STREAM).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        (refused[0].stream, refused[0].code()),
        (201, REFUSED_STREAM)
    );
    // The 100 taken are served, in whatever order they finish.
    let mut ended = std::collections::HashSet::new();
    h2.until(|f| {
        if matches!(f.kind, HEADERS | DATA) && f.flags & END_STREAM != 0 {
            ended.insert(f.stream);
        }
        ended.len() == 100
    })
    .await;
    assert_eq!(ended.len(), 100, "{ended:?}");
    assert!(!ended.contains(&201));

    // A 70,000-byte header (past the 65,536 the list may have), in
    // HEADERS and CONTINUATION frames.
    let block = with_fields(false, "/echo", &[(b"x-big", &[b'a'; 70_000])]);
    let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
    let mut bytes = Vec::new();
    for (n, piece) in pieces.iter().enumerate() {
        let last = n + 1 == pieces.len();
        let kind = if n == 0 { HEADERS } else { CONTINUATION };
        let flags = if n == 0 { END_STREAM } else { 0 } | if last { END_HEADERS } else { 0 };
        bytes.extend(frame(kind, flags, 203, piece));
    }
    h2.send(&bytes).await;
    assert_eq!(answer(&mut h2, 203).await.0, "431");
    h2.send(&get(205, "/echo")).await;
    assert_eq!(answer(&mut h2, 205).await.0, "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_waits_for_the_clients_window_and_goes_on_when_it_opens() {
    let ca = TestCa::new();
    let (_gateway, addr) = echo_gateway(&ca).await;
    // The client lets 1,000 bytes come on each stream.
    let mut h2 = RawH2::connect(&ca, &addr, &[(0x4, 1_000)]).await;
    h2.send(&get(1, "/big")).await;
    let frames = h2.settle().await;
    let mut got: usize = frames
        .iter()
        .filter(|f| f.kind == DATA && f.stream == 1)
        .map(|f| f.payload.len())
        .sum();
    // The answer's head can come after the PING's ACK: wait for the first
    // DATA if none came yet.
    if got == 0 {
        let more = h2.until(|f| f.kind == DATA && f.stream == 1).await;
        got = more
            .iter()
            .filter(|f| f.kind == DATA)
            .map(|f| f.payload.len())
            .sum();
    }
    let frames = h2.settle().await;
    got += frames
        .iter()
        .filter(|f| f.kind == DATA && f.stream == 1)
        .map(|f| f.payload.len())
        .sum::<usize>();
    assert_eq!(got, 1_000, "no more than the window");
    // The window opens: the rest comes, to the end.
    h2.send(
        &[
            frame(WINDOW_UPDATE, 0, 0, &0x7000_0000u32.to_be_bytes()),
            frame(WINDOW_UPDATE, 0, 1, &0x7000_0000u32.to_be_bytes()),
        ]
        .concat(),
    )
    .await;
    let frames = h2
        .until(|f| f.stream == 1 && f.flags & END_STREAM != 0)
        .await;
    got += frames
        .iter()
        .filter(|f| f.kind == DATA && f.stream == 1)
        .map(|f| f.payload.len())
        .sum::<usize>();
    assert_eq!(got, support::gateway::BIG);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_gateway_says_goaway_refuses_new_streams_and_finishes_the_open_ones() {
    let ca = TestCa::new();
    let (mut gateway, addr) = echo_gateway(&ca).await;
    let mut h2 = RawH2::connect(&ca, &addr, &[]).await;
    h2.send(&get(1, "/slow")).await;
    h2.settle().await;
    gateway.part.signal("TERM");
    // In two steps (RFC 9113 section 6.8): first every stream id and a
    // PING, then, the PING answered, the last stream taken.
    let last = |f: &Frame| u32::from_be_bytes(f.payload[..4].try_into().unwrap());
    let frames = h2
        .until(|f| f.kind == GOAWAY && last(f) != ANY_STREAM)
        .await;
    let goaways: Vec<_> = frames.iter().filter(|f| f.kind == GOAWAY).collect();
    assert_eq!(
        goaways
            .iter()
            .map(|f| (f.code(), last(f)))
            .collect::<Vec<_>>(),
        vec![(0, ANY_STREAM), (0, 1)],
        "NO_ERROR, then the last stream taken: {frames:?}"
    );
    assert!(
        frames.iter().any(|f| f.kind == PING && f.flags & ACK == 0),
        "a PING between them: {frames:?}"
    );
    // A stream opened after it is refused, and may be retried elsewhere.
    h2.send(&get(3, "/echo")).await;
    let frames = h2
        .until(|f| f.stream == 1 && f.flags & END_STREAM != 0)
        .await;
    let refused = frames
        .iter()
        .find(|f| f.kind == RST_STREAM && f.stream == 3);
    assert_eq!(refused.map(Frame::code), Some(REFUSED_STREAM), "{frames:?}");
    // The slow one was answered whole, then the connection closes and the
    // gateway exits cleanly.
    let head = frames.iter().find(|f| f.kind == HEADERS && f.stream == 1);
    assert_eq!(head.map(|f| f.payload[0]), Some(0x88), "200: {frames:?}");
    let waited = std::time::Instant::now();
    assert!(h2.next().await.is_none(), "no frame after the answer");
    assert!(
        waited.elapsed() < std::time::Duration::from_secs(5),
        "the connection is closed, not left open"
    );
    let exit = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        gateway.part.child.wait(),
    )
    .await
    .expect("the gateway exits after draining")
    .unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_past_max_streams_forwarded_wait_in_their_connection_in_order() {
    let ca = TestCa::new();
    let (gateway, _dir, addr) =
        support::tls::echo_gateway_with(&ca, "[http2]\nmax_streams_forwarded = 4\n").await;
    let mut h2 = RawH2::connect(&ca, &addr, &[]).await;
    // Ten requests of 600 ms each on one connection (streams 1 to 19), and
    // the last reset by the client while it waits.
    let mut bytes: Vec<u8> = (0..10u32).flat_map(|n| get(2 * n + 1, "/slow")).collect();
    bytes.extend(frame(RST_STREAM, 0, 19, &CANCEL.to_be_bytes()));
    h2.send(&bytes).await;
    let mut ended = Vec::new();
    let frames = h2
        .until(|f| {
            if f.kind == DATA && f.flags & END_STREAM != 0 {
                ended.push(f.stream);
            }
            ended.len() == 9 || f.kind == GOAWAY
        })
        .await;
    // Four at a time, in the order they were opened: each four end before
    // the next four go to the backend, 600 ms apart.
    let mut waves: Vec<Vec<u32>> = ended.chunks(4).map(<[u32]>::to_vec).collect();
    for wave in &mut waves {
        wave.sort_unstable();
    }
    assert_eq!(
        waves,
        vec![vec![1, 3, 5, 7], vec![9, 11, 13, 15], vec![17]],
        "{frames:?}"
    );
    assert!(
        !frames.iter().any(|f| f.stream == 19 && f.kind == HEADERS),
        "the stream reset while it waited is never answered"
    );
    let metrics = gateway.metrics().await;
    let deferred = support::gateway::metric_sum(&metrics, "gateway_h2_streams_deferred_total", &[]);
    let received = support::gateway::metric_sum(&metrics, "gateway_h2_resets_received", &[]);
    assert_eq!(deferred, 6.0, "{metrics}");
    assert_eq!(received, 1.0, "the client's reset counted once: {metrics}");
    // The connection goes on.
    h2.send(&get(21, "/echo")).await;
    assert_eq!(answer(&mut h2, 21).await.0, "200");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_waits_in_its_connection_past_the_queues_timeout_gets_its_503() {
    let ca = TestCa::new();
    // One stream at the shop at a time; a request waits 100 ms at most.
    let toml = "[http2]\nmax_streams_forwarded = 1\n\n[queue]\ntimeout_ms = 100\n";
    let (gateway, _dir, addr) = support::tls::echo_gateway_with(&ca, toml).await;
    let mut h2 = RawH2::connect(&ca, &addr, &[]).await;
    // Stream 1 takes 600 ms at the shop; stream 3 waits behind it in the
    // connection, and is answered at the queue's timeout, not after it.
    let bytes: Vec<u8> = [get(1, "/slow"), get(3, "/slow")].concat();
    h2.send(&bytes).await;
    let (status, body) = answer(&mut h2, 3).await;
    assert_eq!(status, "503");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("queue_timeout"), "{body}");
    assert_eq!(answer(&mut h2, 1).await.0, "200", "the first was served");
    let metrics = gateway.metrics().await;
    let timed_out =
        support::gateway::metric_sum(&metrics, "gateway_h2_streams_deferred_timed_out_total", &[]);
    let shed = support::gateway::metric_sum(
        &metrics,
        "gateway_shed_total",
        &["reason=\"queue_timeout\""],
    );
    assert_eq!(timed_out, 1.0, "{metrics}");
    assert_eq!(shed, 1.0, "counted as the queue's own: {metrics}");
}
