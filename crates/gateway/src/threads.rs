//! How many serving threads take new connections: as many as the CPU
//! quota allows, rechecked every second, so a quota changed under a
//! running gateway (a Kubernetes pod resized in place, `docker update
//! --cpus`, a cgroup moved into) is followed without a restart — as Go's
//! runtime does with GOMAXPROCS since 1.25.
//!
//! Why: each serving thread is a runtime of its own, and under a quota
//! every one of them runs in turns of the quota's period. At half a core
//! one thread served 1.18 times the HTTP/2 requests two did, for the
//! same CPU (BENCHMARKS.md, issue 16); HAProxy showed the same (1.21×).
//! A gateway that picked its threads when it started, before its quota
//! was set or after it was raised, kept the wrong number for its life.
//!
//! With `workers` left at 0 a thread is started for every CPU the process
//! may run on (its affinity), and only the quota's share of them accept:
//! a thread beyond it takes no new connection, and asks the connections
//! it has to move, each as it can without failing a request (`Closing`):
//! an HTTP/1.1 one is answered `Connection: close` on its next request, an
//! HTTP/2 one is told GOAWAY `NO_ERROR` and finishes its streams. Their
//! clients reconnect, and the others are dealt the new connections. A
//! raise wakes them again. With `workers` set, every thread it names
//! accepts, always.
//!
//! Why move them: a thread beyond the share that kept its connections
//! kept running, in turns of the quota's period beside the others, for as
//! long as its clients stayed: in a sale, for its whole length, as keep-
//! alive connections that are never idle do not close by themselves.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::watch;

/// How often the quota is read again: two small files.
const RECHECK: Duration = Duration::from_secs(1);

/// CPUs this process may run on, whatever its quota (its affinity mask,
/// from `/proc/self/status`); what the quota allows when that cannot be
/// read.
pub(crate) fn cpus_to_run_on() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
                .and_then(|list| count_cpus(list.trim()))
        })
        .unwrap_or_else(quota_allows)
}

/// CPUs in a list such as `0-3,8,10-11`; `None` if it does not parse.
fn count_cpus(list: &str) -> Option<usize> {
    let mut count = 0;
    for part in list.split(',') {
        count += match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (first.parse::<usize>().ok()?, last.parse::<usize>().ok()?);
                last.checked_sub(first)? + 1
            }
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
}

/// Threads the CPU quota (and affinity) allows now: std reads the
/// cgroup's quota, v1 or v2, at each call.
fn quota_allows() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Serving threads that accept now, of `started`.
fn active_of(started: usize, allowed: usize) -> usize {
    allowed.clamp(1, started.max(1))
}

/// Which serving threads accept new connections.
#[derive(Debug, Clone)]
pub(crate) struct Accepting {
    active: watch::Receiver<usize>,
}

impl Accepting {
    /// All `started` threads, for good (`workers` was set).
    pub(crate) fn all(started: usize, gauge: &Gauge) -> Accepting {
        gauge.set(started as i64);
        // Never changed: every thread is below `started`, and a look at a
        // closed channel still sees its last value.
        let (_, active) = watch::channel(started);
        Accepting { active }
    }

    /// As many of `started` as the quota allows, followed from now on by
    /// a task on the caller's runtime.
    pub(crate) fn following_quota(started: usize, gauge: Gauge) -> Accepting {
        let first = active_of(started, quota_allows());
        gauge.set(first as i64);
        let (sender, active) = watch::channel(first);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(RECHECK);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if sender.is_closed() {
                    return;
                }
                let now = active_of(started, quota_allows());
                let before = *sender.borrow();
                if now != before {
                    tracing::info!(
                        accepting = now,
                        was = before,
                        threads = started,
                        "the CPU quota changed: serving threads accepting new connections follow it"
                    );
                    gauge.set(now as i64);
                    sender.send_replace(now);
                }
            }
        });
        Accepting { active }
    }

    /// Following whatever `active` says: for tests elsewhere.
    #[cfg(test)]
    pub(crate) fn following(active: watch::Receiver<usize>) -> Accepting {
        Accepting { active }
    }

    /// Threads accepting now: numbers `0..n`.
    pub(crate) fn now(&self) -> usize {
        *self.active.borrow()
    }

    /// Returns once thread `me` is among those accepting (at once if it
    /// is, or if nothing follows the quota any more: the gateway stops).
    pub(crate) async fn until_accepting(&mut self, me: usize) {
        let _ = self.active.wait_for(|&n| me < n).await;
    }

    /// Returns when the share changes; never once nothing follows the
    /// quota (or nothing ever did: `workers` was set).
    async fn changed(&mut self) {
        if self.active.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// When a serving thread's connections are to close: the gateway stops, or
/// the thread is beyond the CPU quota's share. Each connection closes as
/// it can without failing a request.
#[derive(Debug, Clone)]
pub(crate) struct Closing {
    /// The gateway stops: idle HTTP/1.1 connections are woken, and closed
    /// once their grace is over. Not for a thread beyond the share: an
    /// idle connection closed then could cross a request its client is
    /// sending; those go at their idle timeout, which clients are told.
    pub(crate) gateway_stops: watch::Receiver<bool>,
    /// The gateway stops, or this thread is beyond the share: an HTTP/2
    /// connection is told GOAWAY `NO_ERROR`.
    pub(crate) thread_closes: watch::Receiver<bool>,
    /// `thread_closes` as a flag, read once per request: an HTTP/1.1
    /// answer says `Connection: close`.
    after_answer: Arc<AtomicBool>,
}

impl Closing {
    /// Thread `me`'s, followed from now on by a task on the caller's
    /// runtime (the thread's own), which ends with it.
    pub(crate) fn of_thread(
        me: usize,
        mut accepting: Accepting,
        mut gateway_stops: watch::Receiver<bool>,
    ) -> Closing {
        let closes_now = move |stops: bool, accepting: &Accepting| stops || me >= accepting.now();
        let first = closes_now(*gateway_stops.borrow_and_update(), &accepting);
        let after_answer = Arc::new(AtomicBool::new(first));
        let (sender, thread_closes) = watch::channel(first);
        let closing = Closing {
            gateway_stops: gateway_stops.clone(),
            thread_closes,
            after_answer: Arc::clone(&after_answer),
        };
        tokio::spawn(async move {
            let mut stopped = false;
            loop {
                tokio::select! {
                    changed = gateway_stops.changed(), if !stopped => stopped = changed.is_err(),
                    () = accepting.changed() => {}
                }
                let closes = closes_now(*gateway_stops.borrow_and_update(), &accepting);
                if closes != *sender.borrow() {
                    if !*gateway_stops.borrow() {
                        tracing::info!(
                            thread = me,
                            beyond_the_share = closes,
                            "a serving thread's connections {}",
                            if closes {
                                "are asked to move: it is beyond the CPU quota's share"
                            } else {
                                "stay: it is within the CPU quota's share again"
                            }
                        );
                    }
                    after_answer.store(closes, Ordering::Relaxed);
                    sender.send_replace(closes);
                }
            }
        });
        closing
    }

    /// Whether the answer being written is this connection's last.
    pub(crate) fn after_this_answer(&self) -> bool {
        self.after_answer.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_are_counted_and_nonsense_is_refused() {
        assert_eq!(count_cpus("0-1"), Some(2));
        assert_eq!(count_cpus("0-3,8,10-11"), Some(7));
        assert_eq!(count_cpus("5"), Some(1));
        assert_eq!(count_cpus(""), None);
        assert_eq!(count_cpus("3-1"), None);
        assert_eq!(count_cpus("a-b"), None);
    }

    #[test]
    fn the_quota_share_is_at_least_one_and_at_most_the_threads_started() {
        assert_eq!(active_of(2, 1), 1);
        assert_eq!(active_of(2, 8), 2);
        assert_eq!(active_of(4, 0), 1);
        assert_eq!(active_of(0, 3), 1);
    }

    #[test]
    fn this_process_runs_on_at_least_one_cpu_and_no_fewer_than_its_quota_allows() {
        let cpus = cpus_to_run_on();
        assert!(cpus >= 1);
        assert!(cpus >= quota_allows(), "{cpus} < {}", quota_allows());
    }
}
