//! The known HTTP/2 attacks, sent frame by frame over TLS to a real
//! gateway: rapid reset (CVE-2023-44487), CONTINUATION flood, SETTINGS,
//! PING and empty-DATA floods, and an HPACK bomb. Each must be bounded and
//! counted, answered with GOAWAY `ENHANCE_YOUR_CALM` where RFC 9113 says
//! so, cost the gateway little memory, and leave other clients served.
//! The bounds are asserted through counters and memory, not time (the
//! deadlines only keep a broken gateway from hanging the test).

mod support;

use std::time::Duration;

use support::gateway::{echo_backend, metric_sum, wait_for_metrics, wait_for_slots};
use support::h2::{
    frame, hpack_int, request_block, CONTINUATION, DATA, END_HEADERS, END_STREAM,
    ENHANCE_YOUR_CALM, GOAWAY, HEADERS, PING, PREFACE, RST_STREAM, SETTINGS,
};
use support::tls::{connect, TestCa};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What the gateway did to an attacking connection.
#[derive(Debug, Default)]
struct Seen {
    goaway: Option<u32>,
    resets: usize,
    answers: usize,
}

/// Sends `attack` after the preface and reads what comes back until a
/// GOAWAY, the connection's end, or 20 s.
async fn attack(ca: &TestCa, addr: &str, attack: Vec<u8>) -> Seen {
    let tls = connect(ca.rustls_client(&[b"h2"]), addr, "shop.test")
        .await
        .expect("the handshake succeeds");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut reader, mut writer) = tokio::io::split(tls);
    let writing = tokio::spawn(async move {
        let mut all = PREFACE.to_vec();
        all.extend(frame(SETTINGS, 0, 0, &[]));
        all.extend(attack);
        // The gateway stops reading once it has had enough: the write
        // may never finish, and that is the point.
        for piece in all.chunks(16 * 1024) {
            if writer.write_all(piece).await.is_err() {
                return;
            }
        }
        let _ = writer.flush().await;
        // Kept open so the gateway's GOAWAY, not our close, ends it.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut seen = Seen::default();
    let reading = async {
        loop {
            let mut head = [0u8; 9];
            if reader.read_exact(&mut head).await.is_err() {
                return;
            }
            let len =
                (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
            let mut payload = vec![0; len];
            if reader.read_exact(&mut payload).await.is_err() {
                return;
            }
            match head[3] {
                GOAWAY => {
                    seen.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap()));
                    return;
                }
                RST_STREAM => seen.resets += 1,
                HEADERS => seen.answers += 1,
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), reading).await;
    writing.abort();
    seen
}

/// A TLS gateway in front of the echo backend: it, its `HOST:PORT`, its pid.
async fn echo_gateway(ca: &TestCa) -> (support::gateway::Gateway, String, u32) {
    let backend = echo_backend().await;
    let leaf = ca.leaf("shop", &["shop.test"]);
    let gateway = support::tls::gateway(&leaf, &["--backend", &format!("echo={backend}")]).await;
    let addr = gateway.url.trim_start_matches("https://").to_string();
    let pid = gateway.part.pid();
    (gateway, addr, pid)
}

/// The same with `toml` as its config; the config's folder lives as long
/// as the gateway.
async fn echo_gateway_with(
    ca: &TestCa,
    toml: &str,
) -> (support::gateway::Gateway, tempfile::TempDir, String, u32) {
    let (gateway, dir, addr) = support::tls::echo_gateway_with(ca, toml).await;
    let pid = gateway.part.pid();
    (gateway, dir, addr, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_known_http2_attack_is_bounded_counted_and_answered_with_goaway() {
    let ca = TestCa::new();
    let (gateway, addr, pid) = echo_gateway(&ca).await;
    let good = ca.client(true);
    let echo = format!("{}/echo", gateway.url);
    assert_eq!(good.get(&echo).send().await.unwrap().status(), 200);
    let rss_before = support::rss_kib(pid);

    let get = request_block(false, "/echo");
    let post = request_block(true, "/echo");
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        (
            // Rapid reset: 20,000 requests, each cancelled at once.
            "rapid_reset",
            (0..20_000u32)
                .flat_map(|n| {
                    let id = 2 * n + 1;
                    [
                        frame(HEADERS, END_HEADERS | END_STREAM, id, &get),
                        frame(RST_STREAM, 0, id, &8u32.to_be_bytes()),
                    ]
                    .concat()
                })
                .collect(),
        ),
        (
            // One header block never ended: 50,000 CONTINUATION frames.
            "continuation",
            [
                frame(HEADERS, END_STREAM, 1, &get),
                // Each frame a valid field, `x: y`, so only the count is wrong.
                frame(CONTINUATION, 0, 1, &[0x00, 1, b'x', 1, b'y']).repeat(50_000),
            ]
            .concat(),
        ),
        (
            "settings",
            frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]).repeat(50_000),
        ),
        ("ping", frame(PING, 0, 0, &[7; 8]).repeat(100_000)),
        (
            "empty_data",
            [
                frame(HEADERS, END_HEADERS, 1, &post),
                frame(DATA, 0, 1, &[]).repeat(100_000),
            ]
            .concat(),
        ),
    ];
    for (kind, bytes) in attacks {
        let floods_before = metric_sum(&gateway.metrics().await, "gateway_h2_floods_total", &[]);
        let seen = attack(&ca, &addr, bytes).await;
        assert_eq!(seen.goaway, Some(ENHANCE_YOUR_CALM), "{kind}: {seen:?}");
        // The GOAWAY reaches the client before the gateway has finished
        // closing the connection and counted it: wait for the count.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let (metrics, floods) = loop {
            let metrics = gateway.metrics().await;
            let floods = metric_sum(&metrics, "gateway_h2_floods_total", &[]);
            if floods > floods_before || std::time::Instant::now() > deadline {
                break (metrics, floods);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(
            floods - floods_before,
            1.0,
            "{kind}: one flood counted\n{metrics}"
        );
        // A CONTINUATION flood may meet the connection's own bound on a
        // header block's size, counted as `h2_limit`, if the meter has not
        // tripped first; the others only the meter's.
        let by_kind = |kind: &str| {
            metric_sum(
                &metrics,
                "gateway_h2_floods_total",
                &[&format!("kind=\"{kind}\"")],
            )
        };
        let counted = by_kind(kind)
            + if matches!(kind, "rapid_reset" | "continuation" | "empty_data") {
                by_kind("h2_limit")
            } else {
                0.0
            };
        assert!(counted >= 1.0, "{kind}\n{metrics}");
        // Other customers are served right after.
        assert_eq!(
            good.get(&echo).send().await.unwrap().status(),
            200,
            "{kind}"
        );
    }
    let metrics = gateway.metrics().await;
    assert!(
        metric_sum(
            &metrics,
            "gateway_h2_goaways_total",
            &["reason=\"enhance_your_calm\""]
        ) >= 5.0,
        "{metrics}"
    );
    // Of 20,000 requests opened and reset, few ever started: the rest were
    // never read.
    let streams = metric_sum(&metrics, "gateway_h2_streams_total", &[]);
    assert!(streams < 1_000.0, "{streams} streams started");

    // HPACK bomb: one 4,000-byte header put in the dynamic table, then
    // referenced 40,000 times in one header block: 160 MB once decoded.
    let mut block = get.clone();
    block.push(0x40);
    block.push(6);
    block.extend_from_slice(b"x-bomb");
    hpack_int(0, 7, 4_000, &mut block);
    block.extend(std::iter::repeat_n(b'a', 4_000));
    block.extend(std::iter::repeat_n(0xbe, 40_000));
    let mut bytes = Vec::new();
    let pieces: Vec<&[u8]> = block.chunks(16_000).collect();
    for (n, piece) in pieces.iter().enumerate() {
        let last = n + 1 == pieces.len();
        let (kind, flags) = match (n, last) {
            (0, true) => (HEADERS, END_STREAM | END_HEADERS),
            (0, false) => (HEADERS, END_STREAM),
            (_, true) => (CONTINUATION, END_HEADERS),
            (_, false) => (CONTINUATION, 0),
        };
        bytes.extend(frame(kind, flags, 1, piece));
    }
    let seen = attack(&ca, &addr, bytes).await;
    assert_eq!(
        seen.answers, 0,
        "the bomb's request must not be served: {seen:?}"
    );
    assert!(
        seen.goaway.is_some() || seen.resets > 0,
        "the bomb must be refused: {seen:?}"
    );
    assert_eq!(good.get(&echo).send().await.unwrap().status(), 200);

    let grown_mib = support::rss_kib(pid).saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 64,
        "the gateway grew by {grown_mib} MiB under attack"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stall_in_the_handshake_are_cut_and_others_are_served() {
    let backend = echo_backend().await;
    let ca = TestCa::new();
    let leaf = ca.leaf("shop", &["shop.test"]);
    let (_dir, config) = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        std::fs::write(
            &path,
            format!(
                "[tls]\ncert = {:?}\nkey = {:?}\nhandshake_timeout_ms = 500\n",
                leaf.cert, leaf.key
            ),
        )
        .unwrap();
        let path = path.display().to_string();
        (dir, path)
    };
    let gateway = support::gateway::Gateway::start(&[
        "--config",
        &config,
        "--backend",
        &format!("echo={backend}"),
    ])
    .await;
    let addr = gateway.url.trim_start_matches("https://").to_string();
    let pid = gateway.part.pid();
    let rss_before = support::rss_kib(pid);
    // 400 clients connect and send half a ClientHello, then nothing (fewer
    // than a default limit of 1,024 open files, for both sides).
    let mut stalled = Vec::new();
    for _ in 0..400 {
        let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        tcp.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
            .await
            .unwrap();
        stalled.push(tcp);
    }
    // Meanwhile a customer is served, over both protocols.
    for h2 in [true, false] {
        let answer = ca
            .client(h2)
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    // Each stalled one is cut at the handshake timeout, and counted.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = gateway.metrics().await;
        let timeouts = metric_sum(
            &metrics,
            "gateway_tls_handshake_failures_total",
            &["reason=\"timeout\""],
        );
        if timeouts >= 400.0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{timeouts} cut of 400"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut closed = 0;
    for mut tcp in stalled {
        if support::closed_by_peer(&mut tcp, Duration::from_secs(5)).await {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 400,
        "every stalled connection is closed by the gateway"
    );
    let grown_mib = support::rss_kib(pid).saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 64, "the gateway grew by {grown_mib} MiB");
}

/// Opens `streams` streams on one connection, each asking for 3 MiB,
/// from a client that never reads nor opens its window beyond the first
/// 64 KiB; returns the connection, to be held, once every stream has
/// started.
async fn ask_much_read_nothing(
    ca: &TestCa,
    gateway: &support::gateway::Gateway,
    addr: &str,
    streams: u32,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut tls = connect(ca.rustls_client(&[b"h2"]), addr, "shop.test")
        .await
        .unwrap();
    let big = request_block(false, "/big");
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    for n in 0..streams {
        bytes.extend(frame(HEADERS, END_HEADERS | END_STREAM, 2 * n + 1, &big));
    }
    tls.write_all(&bytes).await.unwrap();
    tls.flush().await.unwrap();
    wait_for_metric(gateway, "gateway_h2_streams_total", f64::from(streams)).await;
    tls
}

/// Waits until the sum of `family` is at least `least`.
async fn wait_for_metric(gateway: &support::gateway::Gateway, family: &str, least: f64) {
    let what = format!("{family} below {least}");
    let read = |metrics: &str| metric_sum(metrics, family, &[]);
    wait_for_metrics(gateway, &what, read, |seen| *seen >= least).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_asks_for_much_and_reads_nothing_holds_little() {
    let ca = TestCa::new();
    let (gateway, _dir, addr, pid) =
        echo_gateway_with(&ca, "[http2]\nmax_streams_forwarded = 16\n").await;
    let rss_before = support::rss_kib(pid);
    // 100 streams each ask for 3 MiB (300 MiB in all).
    let tls = ask_much_read_nothing(&ca, &gateway, &addr, 100).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let grown_mib = support::rss_kib(pid).saturating_sub(rss_before) / 1024;
    println!("RSS grew {grown_mib} MiB with 100 streams held by the client's window");
    // Each stream holds tens of KiB, not its 3 MiB.
    assert!(
        grown_mib < 16,
        "the gateway grew by {grown_mib} MiB for a client reading nothing"
    );
    // The streams sent on hold a connection to the backend each while the
    // client does not read (answers are not buffered whole), up to
    // `client_send_ms` (gateway_stalls.rs). Only `max_streams_forwarded`
    // (16, its default, set here all the same) are sent on; the other 84
    // wait in the connection: with all 100 sent on, they would hold 100
    // of the backend's connections.
    let metrics = gateway.metrics().await;
    let held = metric_sum(&metrics, "gateway_backend_in_flight_requests", &[])
        + metric_sum(&metrics, "gateway_backend_answers_waiting_on_clients", &[]);
    let deferred = metric_sum(&metrics, "gateway_h2_streams_deferred_total", &[]);
    assert!(
        held <= 16.0,
        "one connection holds {held} of the backend's connections"
    );
    assert!(
        deferred >= 84.0,
        "{deferred} streams waited in the connection"
    );
    let another = ca.client(true);
    assert_eq!(
        another
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "another customer is served while the connection holds its streams"
    );
    // Once it goes, its slots are freed too.
    drop(tls);
    let client = ca.client(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let answer = client
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap();
        if answer.status() == 200 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never served again: {}",
            answer.status()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_client_keeps_waiting_hold_no_slot_of_the_shop() {
    let ca = TestCa::new();
    // Every stream sent on (no `max_streams_forwarded`), and the shop's
    // limit adaptive from 32, its default. Were the 100 answers to hold
    // their slots, 32 would hold all of them until `client_send_ms` (30
    // s), and another customer would wait in the queue for its 503; and
    // with no answer coming, an adaptive limit that fell below them would
    // stay there.
    let (gateway, _dir, addr, _pid) =
        echo_gateway_with(&ca, "[http2]\nmax_streams_forwarded = 0\n").await;
    let tls = ask_much_read_nothing(&ca, &gateway, &addr, 100).await;
    wait_for_metric(
        &gateway,
        "gateway_backend_answers_waiting_on_clients",
        100.0,
    )
    .await;
    let in_flight = metric_sum(
        &gateway.metrics().await,
        "gateway_backend_in_flight_requests",
        &[],
    );
    assert_eq!(in_flight, 0.0, "answers waiting on the client hold slots");
    let another = ca.client(true);
    for _ in 0..20 {
        let answer = another
            .get(format!("{}/echo", gateway.url))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "another customer is served");
    }
    // Once the client goes, nothing waits on it.
    drop(tls);
    wait_for_slots(&gateway, 0.0, 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_waiting_on_clients_are_bounded_per_shop() {
    let ca = TestCa::new();
    // Each keeps a connection to the shop: past 40, one keeps its slot,
    // as every answer did before, so slow clients cannot open connections
    // to the shop without bound.
    let toml =
        "[http2]\nmax_streams_forwarded = 0\n\n[concurrency]\nadaptive = false\ninitial = 8\nmax = 8\nmax_waiting_on_clients = 40\n";
    let (gateway, _dir, addr, _pid) = echo_gateway_with(&ca, toml).await;
    let _held = ask_much_read_nothing(&ca, &gateway, &addr, 100).await;
    wait_for_metric(&gateway, "gateway_backend_answers_waiting_on_clients", 40.0).await;
    // The slots the last of the 40 gave back are taken again and held;
    // the other 52 streams wait in the queue, and nothing moves until
    // `client_send_ms`.
    wait_for_metric(&gateway, "gateway_backend_in_flight_requests", 8.0).await;
    let metrics = gateway.metrics().await;
    let waiting = metric_sum(&metrics, "gateway_backend_answers_waiting_on_clients", &[]);
    let in_flight = metric_sum(&metrics, "gateway_backend_in_flight_requests", &[]);
    assert_eq!(waiting, 40.0, "answers waiting on clients past the bound");
    assert_eq!(in_flight, 8.0, "the rest hold the shop's 8 slots");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_and_never_reads_is_no_longer_read_from() {
    let ca = TestCa::new();
    // Two streams a connection: two endless answers take them, and hold
    // no more of the shop than that.
    let (gateway, _dir, addr, pid) =
        echo_gateway_with(&ca, "[http2]\nmax_concurrent_streams = 2\n").await;
    let good = ca.client(true);
    let echo = format!("{}/echo", gateway.url);
    assert_eq!(good.get(&echo).send().await.unwrap().status(), 200);
    let rss_before = support::rss_kib(pid);
    let mut tls = connect(ca.rustls_client(&[b"h2"]), &addr, "shop.test")
        .await
        .unwrap();
    // Each of the million streams after the two is refused, and every
    // refusal is a frame owed to a client that reads nothing: 13 MB of
    // them, were they not bounded.
    let mut bytes = PREFACE.to_vec();
    bytes.extend(frame(SETTINGS, 0, 0, &[]));
    let endless = request_block(false, "/endless");
    for n in 0..2u32 {
        bytes.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * n + 1,
            &endless,
        ));
    }
    // `GET https /`, from the static table.
    for n in 2..1_000_002u32 {
        bytes.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            2 * n + 1,
            &[0x82, 0x87, 0x84],
        ));
    }
    let sent = bytes.len();
    let writing = tokio::spawn(async move {
        let written = tls.write_all(&bytes).await;
        (written.is_ok(), tls)
    });
    // The gateway stops reading once 1 MiB is owed: the client's 12 MB
    // never all go, however long it waits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !writing.is_finished(),
        "all {sent} bytes were read from a client that reads nothing"
    );
    let grown_mib = support::rss_kib(pid).saturating_sub(rss_before) / 1024;
    assert!(grown_mib < 16, "the gateway grew by {grown_mib} MiB");
    // Other customers are served meanwhile.
    assert_eq!(good.get(&echo).send().await.unwrap().status(), 200);
    writing.abort();
}
