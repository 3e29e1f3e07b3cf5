//! The gateway's serving threads follow its CPU quota while it runs: a
//! real gateway process is put under a quota of half a core in a real
//! cgroup, and the quota is then lifted, as a container's CPU limit is
//! changed in place. With `workers` left at 0, only the quota's share of
//! the threads takes new connections; a thread beyond it keeps serving
//! the connections it has.

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

/// One request on `stream`; panics unless it is answered 200.
async fn ask(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /echo HTTP/1.1\r\nHost: shop\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut head))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let head = String::from_utf8_lossy(&head[..read]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
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
    let mut kept = vec![connect(&gateway.url).await, connect(&gateway.url).await];
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
    // New connections all go to thread 0; the others still serve theirs.
    for _ in 0..4 {
        kept.push(connect(&gateway.url).await);
    }
    assert_eq!(
        on_first_and_others(&gateway.metrics().await),
        (first + 4.0, others),
        "new connections only on the thread within the quota"
    );
    for stream in &mut kept {
        ask(stream).await;
    }

    quotas.lift("gateway").unwrap();
    wait_for_metrics(&gateway, "every thread accepting again", accepting, |n| {
        *n == cpus as f64
    })
    .await;
    // Thread 0 has the most: the next connection goes to another.
    kept.push(connect(&gateway.url).await);
    assert_eq!(
        on_first_and_others(&gateway.metrics().await),
        (first + 4.0, others + 1.0)
    );
    drop(kept);
    drop(gateway);
    quotas.remove();
}
