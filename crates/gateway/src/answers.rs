//! The per-request metrics (answers by backend and status, their latency,
//! requests in flight), counted by each serving thread in its own shard and
//! summed when `/metrics` is read. A counter or histogram shared by the
//! threads would move its cache line between cores on every request, and
//! prometheus-client's histogram takes a lock besides.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

/// Answers from one backend with one status, and their count.
type AnswerCount = (Arc<str>, u16, Arc<AtomicU64>);

/// One thread's counts. Only its thread writes them (a load and a store,
/// no locked instruction); the scrape reads them.
#[derive(Debug)]
struct Shard {
    answers: Mutex<Vec<AnswerCount>>,
    buckets: Vec<AtomicU64>,
    sum_ns: AtomicU64,
    count: AtomicU64,
    in_flight: AtomicI64,
}

/// A thread's handle on its shard, and the answer counters it has used,
/// found by the label's address (the list holds the label, so the address
/// cannot be reused by another).
struct Mine {
    owner: u64,
    shard: Arc<Shard>,
    used: Vec<AnswerCount>,
}

thread_local! {
    static MINE: RefCell<Vec<Mine>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn bump(counter: &AtomicU64, by: u64) {
    counter.store(counter.load(Ordering::Relaxed) + by, Ordering::Relaxed);
}

/// Registers the counts with a registry.
#[derive(Debug)]
pub(crate) struct AnswersCollector(pub(crate) Arc<Answers>);

impl prometheus_client::collector::Collector for AnswersCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(&mut encoder)
    }
}

#[derive(Debug)]
pub(crate) struct Answers {
    id: u64,
    /// Upper bounds in seconds; the last is +Inf.
    bounds: Vec<f64>,
    shards: Mutex<Vec<Arc<Shard>>>,
}

impl Answers {
    pub(crate) fn new(bounds: impl IntoIterator<Item = f64>) -> Answers {
        Answers {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            // prometheus-client writes f64::MAX as `+Inf`.
            bounds: bounds.into_iter().chain([f64::MAX]).collect(),
            shards: Mutex::new(Vec::new()),
        }
    }

    fn with_mine<R>(&self, work: impl FnOnce(&mut Mine) -> R) -> R {
        MINE.with_borrow_mut(|mine| {
            let at = match mine.iter().position(|m| m.owner == self.id) {
                Some(at) => at,
                None => {
                    let shard = Arc::new(Shard {
                        answers: Mutex::new(Vec::new()),
                        buckets: self.bounds.iter().map(|_| AtomicU64::new(0)).collect(),
                        sum_ns: AtomicU64::new(0),
                        count: AtomicU64::new(0),
                        in_flight: AtomicI64::new(0),
                    });
                    self.shards
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Arc::clone(&shard));
                    mine.push(Mine {
                        owner: self.id,
                        shard,
                        used: Vec::new(),
                    });
                    mine.len() - 1
                }
            };
            work(&mut mine[at])
        })
    }

    /// Counts an answer from `backend` with `status`, `elapsed` after the
    /// request arrived.
    pub(crate) fn answered(&self, backend: &Arc<str>, status: u16, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(self.bounds.len() - 1);
        self.with_mine(|mine| {
            let found = mine
                .used
                .iter()
                .find(|(label, code, _)| *code == status && Arc::ptr_eq(label, backend));
            let counter = match found {
                Some((.., counter)) => Arc::clone(counter),
                None => {
                    let counter = Arc::new(AtomicU64::new(0));
                    let entry = (Arc::clone(backend), status, Arc::clone(&counter));
                    mine.shard
                        .answers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(entry.clone());
                    mine.used.push(entry);
                    counter
                }
            };
            bump(&counter, 1);
            bump(&mine.shard.buckets[bucket], 1);
            bump(&mine.shard.count, 1);
            bump(&mine.shard.sum_ns, elapsed.as_nanos() as u64);
        });
    }

    /// A request starts (`+1`) or ends (`-1`) on this thread.
    pub(crate) fn in_flight(&self, change: i64) {
        self.with_mine(|mine| {
            let gauge = &mine.shard.in_flight;
            gauge.store(gauge.load(Ordering::Relaxed) + change, Ordering::Relaxed);
        });
    }

    pub(crate) fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shards: Vec<Arc<Shard>> = self
            .shards
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut answers: BTreeMap<(String, u16), u64> = BTreeMap::new();
        let mut buckets = vec![0u64; self.bounds.len()];
        let (mut sum_ns, mut count, mut in_flight) = (0u64, 0u64, 0i64);
        for shard in &shards {
            for (label, status, counter) in shard
                .answers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
            {
                *answers.entry((label.to_string(), *status)).or_default() +=
                    counter.load(Ordering::Relaxed);
            }
            for (total, bucket) in buckets.iter_mut().zip(&shard.buckets) {
                *total += bucket.load(Ordering::Relaxed);
            }
            sum_ns += shard.sum_ns.load(Ordering::Relaxed);
            count += shard.count.load(Ordering::Relaxed);
            in_flight += shard.in_flight.load(Ordering::Relaxed);
        }
        let mut requests = encoder.encode_descriptor(
            "gateway_requests",
            "Client requests answered, by the backend that answered (or gateway) and status",
            None,
            MetricType::Counter,
        )?;
        for ((backend, status), n) in &answers {
            let status = status.to_string();
            let labels = [("backend", backend.as_str()), ("status", status.as_str())];
            ConstCounter::new(*n).encode(requests.encode_family(&labels)?)?;
        }
        let mut latency = encoder.encode_descriptor(
            "gateway_request_duration_seconds",
            "Time from a client request's arrival to its response headers",
            None,
            MetricType::Histogram,
        )?;
        let buckets: Vec<(f64, u64)> = self.bounds.iter().copied().zip(buckets).collect();
        latency.encode_histogram::<NoLabelSet>(sum_ns as f64 / 1e9, count, &buckets, None)?;
        let gauge = encoder.encode_descriptor(
            "gateway_in_flight_requests",
            "Client requests being handled",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(in_flight).encode(gauge)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(answers: &Arc<Answers>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(AnswersCollector(Arc::clone(answers))));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn threads_count_apart_and_the_scrape_sums_them() {
        let answers = Arc::new(Answers::new([0.001, 0.01]));
        let shop: Arc<str> = Arc::from("shop-1");
        answers.answered(&shop, 200, Duration::from_micros(500));
        answers.in_flight(1);
        let (other, label) = (Arc::clone(&answers), Arc::clone(&shop));
        std::thread::spawn(move || {
            other.answered(&label, 200, Duration::from_millis(5));
            other.answered(&label, 503, Duration::from_secs(1));
        })
        .join()
        .unwrap();
        let text = text(&answers);
        assert!(
            text.contains("gateway_requests_total{backend=\"shop-1\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gateway_requests_total{backend=\"shop-1\",status=\"503\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gateway_request_duration_seconds_count 3"),
            "{text}"
        );
        assert!(
            text.contains("gateway_request_duration_seconds_bucket{le=\"0.001\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gateway_request_duration_seconds_bucket{le=\"0.01\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gateway_request_duration_seconds_bucket{le=\"+Inf\"} 3"),
            "{text}"
        );
        assert!(text.contains("gateway_in_flight_requests 1"), "{text}");
    }
}
