//! The gateway's serving threads follow its CPU quota while it runs: a
//! real gateway process is put under a quota of half a core in a real
//! cgroup, and the quota is then lifted, as a container's CPU limit is
//! changed in place. With `workers` left at 0, only the quota's share of
//! the threads takes new connections, and a thread beyond it asks the
//! connections it has to move, each as it can without failing a request:
//! HTTP/1.1 with `Connection: close` on its next answer, HTTP/2 with
//! GOAWAY `NO_ERROR`.

mod support;

use std::time::Duration;

use flashguard_stack::cpu_quota::{self, CpuQuotas};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::gateway::{echo_backend, metric_sum, wait_for_metrics, Gateway};

fn accepting(metrics: &str) -> f64 {
    metric_sum(metrics, "gateway_serving_threads_accepting", &[])
}

fn connections_on(metrics: &str, thread: usize) -> f64 {
    metric_sum(
        metrics,
        "gateway_client_connections",
        &[&format!("thread=\"{thread}\"")],
    )
}

/// A kept-alive connection to the gateway at `url` that has been
/// answered once.
async fn connect(url: &str) -> TcpStream {
    let addr = url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connects");
    ask(&mut stream).await;
    stream
}

/// One request on `stream`; panics unless it is answered 200. Whether the
/// answer closes the connection.
async fn ask(stream: &mut TcpStream) -> bool {
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..read]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    head.contains("\r\nconnection: close\r\n")
}

/// Returns once no connection is open beyond thread 0 (within 20 s).
async fn until_none_beyond_thread_0(gateway: &Gateway) {
    wait_for_metrics(
        gateway,
        "no connection left beyond thread 0",
        |m| on_first_and_others(m).1,
        |n| *n == 0.0,
    )
    .await;
}

/// Connections open on thread 0, and on every other thread together.
fn on_first_and_others(metrics: &str) -> (f64, f64) {
    let first = connections_on(metrics, 0);
    let all = metric_sum(metrics, "gateway_client_connections", &["thread=\""]);
    (first, all - first)
}

#[tokio::test]
async fn the_threads_taking_connections_follow_a_quota_set_and_lifted_while_it_runs() {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    // Made before the gateway, so dropped after it: its group empties first.
    let quotas = CpuQuotas::create(0.5).expect("a cpu controller (run as root)");
    let backend = echo_backend().await;
    let gateway = Gateway::start(&["--backend", &format!("echo={backend}")]).await;
    let before = accepting(&gateway.metrics().await);
    assert_eq!(before, cpus as f64, "every CPU's thread accepts at first");
    if cpus < 2 {
        // One CPU: one thread, nothing to follow.
        quotas.remove();
        return;
    }
    // Two connections, on two threads (each new one goes to a thread with
    // the fewest): at least one is not on thread 0.
    let kept = vec![connect(&gateway.url).await, connect(&gateway.url).await];
    let (first, others) = on_first_and_others(&gateway.metrics().await);
    assert!(first <= 1.0 && others >= 1.0, "{first} {others}");

    let group = quotas.group("gateway").unwrap();
    cpu_quota::place(&group, gateway.part.pid()).unwrap();
    wait_for_metrics(
        &gateway,
        "one thread accepting under half a core",
        accepting,
        |n| *n == 1.0,
    )
    .await;
    // The connections beyond thread 0 are answered once more, told to
    // close, and closed; thread 0's stay. A thread asks its connections
    // to move a moment after it stops accepting: asked until it has.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let (mut stayed, mut moved) = (kept, 0.0);
    while moved < others {
        assert!(
            std::time::Instant::now() < deadline,
            "{moved} of {others} connections beyond the quota's share moved"
        );
        let mut unmoved = Vec::new();
        for mut stream in stayed {
            if ask(&mut stream).await {
                assert!(
                    support::closed_by_peer(&mut stream, Duration::from_secs(10)).await,
                    "said close, kept"
                );
                moved += 1.0;
            } else {
                unmoved.push(stream);
            }
        }
        stayed = unmoved;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(stayed.len() as f64, first);
    until_none_beyond_thread_0(&gateway).await;
    // New connections all go to thread 0, and stay.
    for _ in 0..4 {
        stayed.push(connect(&gateway.url).await);
    }
    assert_eq!(
        on_first_and_others(&gateway.metrics().await),
        (first + 4.0, 0.0),
        "new connections only on the thread within the quota"
    );
    for stream in &mut stayed {
        assert!(!ask(stream).await, "a connection on thread 0 was closed");
    }

    quotas.lift("gateway").unwrap();
    wait_for_metrics(&gateway, "every thread accepting again", accepting, |n| {
        *n == cpus as f64
    })
    .await;
    // Thread 0 has the most: the next connection goes to another, and
    // stays there.
    let mut another = connect(&gateway.url).await;
    assert_eq!(
        on_first_and_others(&gateway.metrics().await),
        (first + 4.0, 1.0)
    );
    assert!(
        !ask(&mut another).await,
        "closed on a thread within the share"
    );
    drop((stayed, another));
    drop(gateway);
    quotas.remove();
}

#[tokio::test]
async fn an_http2_connection_beyond_the_share_is_told_goaway_and_finishes_its_stream() {
    use support::h2::{
        frame, request_block, RawH2, ANY_STREAM, DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS,
    };
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        return;
    }
    let quotas = CpuQuotas::create(0.5).expect("a cpu controller (run as root)");
    let ca = support::tls::TestCa::new();
    // Idle connections kept a minute: the only GOAWAY is the move's.
    let (gateway, _dir, addr) =
        support::tls::echo_gateway_with(&ca, "[timeouts]\nclient_idle_ms = 60000\n").await;
    // Two HTTP/2 connections, on two threads, each with a POST whose body
    // has not come yet: a stream in progress when its thread goes beyond
    // the share.
    let mut customers = Vec::new();
    for _ in 0..2 {
        let mut h2 = RawH2::connect(&ca, &addr, &[]).await;
        h2.settle().await;
        h2.send(&frame(
            HEADERS,
            END_HEADERS,
            1,
            &request_block(true, "/echo"),
        ))
        .await;
        customers.push(h2);
    }
    let (first, others) = on_first_and_others(&gateway.metrics().await);
    assert!(first <= 1.0 && others >= 1.0, "{first} {others}");
    let no_error_goaways =
        |m: &str| metric_sum(m, "gateway_h2_goaways_total", &["reason=\"no_error\""]);
    assert_eq!(no_error_goaways(&gateway.metrics().await), 0.0);

    let group = quotas.group("gateway").unwrap();
    cpu_quota::place(&group, gateway.part.pid()).unwrap();
    wait_for_metrics(
        &gateway,
        "GOAWAY NO_ERROR on each connection beyond thread 0",
        no_error_goaways,
        |n| *n == others,
    )
    .await;
    // Every stream finishes, on a connection told to go as on one that
    // stays; only the first is closed after it.
    let mut told = 0.0;
    for h2 in &mut customers {
        h2.send(&frame(DATA, END_STREAM, 1, b"the body")).await;
        let frames = h2
            .until(|f| f.stream == 1 && f.flags & END_STREAM != 0)
            .await;
        let answered = frames
            .last()
            .is_some_and(|f| f.stream == 1 && f.flags & END_STREAM != 0);
        assert!(
            answered,
            "the stream in progress was not answered: {frames:?}"
        );
        if frames.iter().any(|f| f.kind == GOAWAY) {
            // The rest, to the connection's end: the last GOAWAY may come
            // after the answer.
            let mut frames = frames;
            while let Some(frame) = h2.next().await {
                frames.push(frame);
            }
            let goaways: Vec<_> = frames
                .iter()
                .filter(|f| f.kind == GOAWAY)
                .map(|f| {
                    let last = u32::from_be_bytes(f.payload[..4].try_into().unwrap());
                    (f.code(), last)
                })
                .collect();
            // NO_ERROR in two steps; the stream in progress is the last
            // the gateway takes. Then it closes.
            assert_eq!(goaways, vec![(0, ANY_STREAM), (0, 1)], "{frames:?}");
            told += 1.0;
        }
    }
    assert_eq!(told, others);
    until_none_beyond_thread_0(&gateway).await;
    drop(customers);
    drop(gateway);
    quotas.remove();
}
