//! Running a scenario: set up the items, send open-loop traffic with
//! customers who behave like people (browse, order with a key, honour
//! `Retry-After`, retry with the same key on a network error, give up after
//! their patience), fire the chaos actions, and record everything.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::client::Client;
use crate::console::{Progress, Tick};
use crate::customer::{Next, Shopper, Urls, Visit};
use crate::record::{histogram, Observed, Recorder};
use crate::scenario::Scenario;

use crate::record::{ChaosEvent, PartsSample};

/// Customers in flight at once before new arrivals are counted as dropped
/// by the generator (reported, never silently). Customers waiting in a
/// waiting room are most of them in a surge; each costs a few hundred
/// bytes in the retry timer, no task.
const MAX_IN_FLIGHT: u64 = 200_000;

/// Where the drill sends traffic and chaos.
#[derive(Debug, Clone)]
pub struct Target {
    /// The storefront (gateway or a shop).
    pub url: String,
    /// The stack's control API, for chaos actions.
    pub control: Option<String>,
    pub admin_token: String,
    /// Requests in flight at once, like wrk's connections: arrivals stay
    /// open loop (latency counts from the intended send time, waiting for a
    /// connection included), but the generator does not open a socket per
    /// customer. Default 256.
    pub connections: usize,
    /// The monitor, told when the drill starts and what it found.
    pub monitor: Option<String>,
    /// For an `https://` target: whom its certificate is checked against
    /// (`trust`). None for `http://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

/// Creates or replaces the scenario's items through the admin API.
pub(crate) async fn set_up(
    http: &reqwest::Client,
    target: &Target,
    scenario: &Scenario,
) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    for item in &scenario.items {
        let at = |in_s: f64| {
            (now + time::Duration::seconds_f64(in_s))
                .format(&time::format_description::well_known::Rfc3339)
        };
        let body = json!({
            "name": item.name,
            "price_cents": item.price_cents,
            "stock": item.stock,
            "limit_per_customer": item.limit_per_customer,
            "sale_starts_at": at(item.sale_starts_in_s)?,
            "sale_ends_at": item.sale_ends_in_s.map(at).transpose()?,
        });
        let response = http
            .put(format!("{}/admin/products/{}", target.url, item.sku))
            .bearer_auth(&target.admin_token)
            .json(&body)
            .send()
            .await
            .with_context(|| format!("creating item {}", item.sku))?;
        anyhow::ensure!(
            response.status().is_success(),
            "creating item {} answered {}: {}",
            item.sku,
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

/// Sends the scenario's traffic and chaos; `progress` hears a tick four
/// times a second and each chaos action as it happens.
///
/// Customers are spread over one thread per core, each a single-threaded
/// runtime with its own HTTP client, connection budget and recorder, so a
/// request never changes thread and the books are never contended; the
/// recorders are merged at the end. On each thread, a lane per connection
/// of the budget steps customers' visits (like a wrk connection, one
/// request in flight each); a visit waiting to retry waits in a timer map,
/// not in a task.
pub(crate) async fn traffic(
    http: &reqwest::Client,
    target: &Target,
    scenario: &Scenario,
    progress: Arc<dyn Progress>,
) -> Observed {
    let start = Instant::now();
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let run_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().simple().to_string());
    let chaos = tokio::spawn(chaos(
        http.clone(),
        target.clone(),
        scenario.clone(),
        start,
        Arc::clone(&progress),
    ));
    let attacks = tokio::spawn(crate::attack::run(
        http.clone(),
        target.url.clone(),
        scenario.attacks.clone(),
        start,
    ));
    let sampler = tokio::spawn(sample_parts(
        http.clone(),
        target.clone(),
        start,
        scenario.duration(),
    ));
    // Each customer sends one or two requests (more when retrying).
    let expected = scenario.arrival_count().saturating_mul(2) / workers as u64;
    // At most 64 MB up front; a longer run grows the list as before.
    let expected = expected.min(4_000_000) as usize;
    let recorders: Vec<Arc<Recorder>> = (0..workers)
        .map(|_| Arc::new(Recorder::with_capacity(start, expected)))
        .collect();
    let threads: Vec<_> = recorders
        .iter()
        .enumerate()
        .map(|(worker, recorder)| {
            let share = Share {
                worker,
                workers,
                target: target.clone(),
                scenario: scenario.clone(),
                recorder: Arc::clone(recorder),
                run_id: Arc::clone(&run_id),
                start,
            };
            std::thread::spawn(move || share.run())
        })
        .collect();
    while threads.iter().any(|t| !t.is_finished()) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        report_progress(&recorders, start, &*progress);
    }
    for thread in threads {
        let _ = thread.join();
    }
    let chaos_events = chaos.await.unwrap_or_default();
    let attack = attacks.await.unwrap_or_default();
    let parts = sampler.await.unwrap_or_default();
    report_progress(&recorders, start, &*progress);
    let mut merged: Option<(Observed, Vec<Histogram<u64>>)> = None;
    for recorder in recorders {
        let recorder =
            Arc::try_unwrap(recorder).unwrap_or_else(|_| unreachable!("its thread is done"));
        let (observed, per_second) = recorder.into_parts();
        merged = Some(match merged {
            None => (observed, per_second),
            Some((mut all, mut all_seconds)) => {
                all.absorb(observed);
                for (n, h) in per_second.into_iter().enumerate() {
                    if all_seconds.len() <= n {
                        all_seconds.push(histogram());
                    }
                    let _ = all_seconds[n].add(&h);
                }
                (all, all_seconds)
            }
        });
    }
    let (mut observed, per_second) = merged.unwrap_or_else(|| Recorder::new(start).into_parts());
    observed.set_percentiles(&per_second);
    observed.duration = start.elapsed();
    observed.chaos = chaos_events;
    observed.parts = parts;
    observed.attack = attack;
    observed
}

/// One thread's share of the arrivals.
struct Share {
    worker: usize,
    workers: usize,
    target: Target,
    scenario: Scenario,
    recorder: Arc<Recorder>,
    run_id: Arc<str>,
    start: Instant,
}

impl Share {
    fn run(self) {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            tracing::error!("a load thread could not start its runtime");
            return;
        };
        // Lanes share the thread's books through Rc: they run on a LocalSet.
        tokio::task::LocalSet::new().block_on(&runtime, self.send());
    }

    async fn send(self) {
        let tls = self.target.tls.clone();
        let Some(http) = Client::new(&self.target.url, tls).map(Arc::new) else {
            tracing::error!(target = %self.target.url, "the target must be an http:// or https:// URL");
            return;
        };
        let urls: Vec<Arc<Urls>> = self
            .scenario
            .items
            .iter()
            .filter_map(|item| Urls::new(&item.sku).map(Arc::new))
            .collect();
        if urls.len() != self.scenario.items.len() {
            tracing::error!("an item's SKU does not make a valid path");
            return;
        }
        let shopper = Rc::new(Shopper {
            urls,
            scenario_customer: self.scenario.customer.clone(),
            recorder: Arc::clone(&self.recorder),
            run_id: Arc::clone(&self.run_id),
        });
        let desk = Rc::new(Desk::default());
        let lanes = (self.target.connections / self.workers).max(1);
        let mut workers = Vec::with_capacity(lanes + 1);
        for _ in 0..lanes {
            let (desk, shopper, http) = (Rc::clone(&desk), Rc::clone(&shopper), Arc::clone(&http));
            workers.push(tokio::task::spawn_local(lane(desk, shopper, http)));
        }
        workers.push(tokio::task::spawn_local(retry_timer(Rc::clone(&desk))));
        let cap = MAX_IN_FLIGHT / self.workers as u64;
        for (n, offset) in self
            .scenario
            .arrivals()
            .enumerate()
            .skip(self.worker)
            .step_by(self.workers)
        {
            let intended = self.start + offset;
            if Instant::now() < intended {
                tokio::time::sleep_until(intended).await;
            }
            self.recorder.offered(intended);
            if desk.visits.get() >= cap {
                self.recorder.lock().dropped += 1;
                continue;
            }
            desk.visits.set(desk.visits.get() + 1);
            let visit = shopper.arrive(intended, n as u64);
            desk.ready.borrow_mut().push_back((visit, intended));
            desk.work.notify_one();
        }
        tokio::time::sleep_until(self.start + self.scenario.duration()).await;
        desk.arrivals_done.set(true);
        desk.work.notify_waiters();
        desk.retries_changed.notify_one();
        for worker in workers {
            let _ = worker.await;
        }
    }
}

/// One load thread's visits: those ready for their next step, those
/// waiting to retry, and how many are alive.
#[derive(Default)]
struct Desk {
    ready: RefCell<VecDeque<(Visit, Instant)>>,
    /// (due, sequence) → visit.
    waiting: RefCell<BTreeMap<(Instant, u64), Visit>>,
    sequence: Cell<u64>,
    visits: Cell<u64>,
    arrivals_done: Cell<bool>,
    work: Notify,
    retries_changed: Notify,
}

impl Desk {
    fn finished(&self) -> bool {
        self.arrivals_done.get() && self.visits.get() == 0
    }
}

/// One connection's worth of customers: takes the next ready visit, steps
/// it, and files it as done or waiting. Like a wrk connection, it has at
/// most one request in flight.
async fn lane(desk: Rc<Desk>, shopper: Rc<Shopper>, http: Arc<Client>) {
    loop {
        let next = desk.ready.borrow_mut().pop_front();
        let Some((mut visit, due)) = next else {
            if desk.finished() {
                desk.work.notify_waiters();
                desk.retries_changed.notify_one();
                return;
            }
            desk.work.notified().await;
            continue;
        };
        match shopper.step(&mut visit, &http, due).await {
            Next::Done => desk.visits.set(desk.visits.get() - 1),
            Next::RetryAt(at) => {
                let sequence = desk.sequence.get();
                desk.sequence.set(sequence + 1);
                desk.waiting.borrow_mut().insert((at, sequence), visit);
                desk.retries_changed.notify_one();
            }
        }
    }
}

/// Moves waiting visits to the ready queue when their retry is due.
async fn retry_timer(desk: Rc<Desk>) {
    loop {
        let now = Instant::now();
        let mut moved = 0;
        loop {
            let mut waiting = desk.waiting.borrow_mut();
            let Some(entry) = waiting.first_entry() else {
                break;
            };
            if entry.key().0 > now {
                break;
            }
            let ((due, _), visit) = entry.remove_entry();
            drop(waiting);
            desk.ready.borrow_mut().push_back((visit, due));
            moved += 1;
        }
        for _ in 0..moved {
            desk.work.notify_one();
        }
        if desk.finished() {
            return;
        }
        let next_due = desk.waiting.borrow().keys().next().map(|k| k.0);
        match next_due {
            Some(due) => {
                tokio::select! {
                    () = tokio::time::sleep_until(due) => {}
                    () = desk.retries_changed.notified() => {}
                }
            }
            None => desk.retries_changed.notified().await,
        }
    }
}

fn report_progress(recorders: &[Arc<Recorder>], start: Instant, progress: &dyn Progress) {
    let (mut offered, mut answered, mut errors, mut p99) = (0, 0, 0, 0.0_f64);
    for recorder in recorders {
        let observed = recorder.lock();
        offered += observed.timeline.iter().map(|s| s.offered).sum::<u64>();
        answered += observed.succeeded + observed.by_design;
        errors += observed.errors;
        p99 = p99.max(observed.latency.value_at_quantile(0.99) as f64 / 1000.0);
    }
    progress.tick(Tick {
        elapsed: start.elapsed(),
        offered,
        answered,
        errors,
        p99_ms: p99,
    });
}

async fn chaos(
    http: reqwest::Client,
    target: Target,
    scenario: Scenario,
    start: Instant,
    progress: Arc<dyn Progress>,
) -> Vec<ChaosEvent> {
    let mut events = Vec::new();
    let mut actions = scenario.chaos.clone();
    actions.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    for action in actions {
        tokio::time::sleep_until(start + Duration::from_secs_f64(action.at_s)).await;
        let at_ms = start.elapsed().as_millis() as u64;
        let outcome = match &target.control {
            None => "no control API given (--control)".to_string(),
            Some(control) => {
                let url = format!("{control}/parts/{}/{}", action.part, action.action);
                match http.post(url).bearer_auth(&target.admin_token).send().await {
                    Ok(response) if response.status().is_success() => "done".to_string(),
                    Ok(response) => {
                        format!("refused: {}", response.text().await.unwrap_or_default())
                    }
                    Err(err) => format!("failed: {err}"),
                }
            }
        };
        tracing::info!(action = %action.action, part = %action.part, outcome, "chaos");
        let event = ChaosEvent {
            at_ms,
            action: action.action,
            part: action.part,
            outcome,
        };
        progress.chaos(&event);
        events.push(event);
    }
    events
}

/// Asks the control API for the parts' states once a second, and the
/// gateway (found through it) for its backends' states.
async fn sample_parts(
    http: reqwest::Client,
    target: Target,
    start: Instant,
    duration: Duration,
) -> Vec<PartsSample> {
    let Some(control) = target.control.clone() else {
        return Vec::new();
    };
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    while start.elapsed() <= duration {
        tick.tick().await;
        let answer = http
            .get(format!("{control}/parts"))
            .bearer_auth(&target.admin_token)
            .timeout(Duration::from_millis(800))
            .send()
            .await;
        let Ok(answer) = answer else { continue };
        let Ok(parts) = answer.json::<Vec<serde_json::Value>>().await else {
            continue;
        };
        let gateway_admin = parts
            .iter()
            .find_map(|p| p["admin_addr"].as_str().map(str::to_string));
        let mut backends = Vec::new();
        let mut waiting = None;
        if let Some(admin) = gateway_admin {
            let ask = |path: &str| {
                http.get(format!("{admin}{path}"))
                    .bearer_auth(&target.admin_token)
                    .timeout(Duration::from_millis(800))
                    .send()
            };
            if let Ok(answer) = ask("/admin/backends").await {
                backends = answer
                    .json::<Vec<serde_json::Value>>()
                    .await
                    .unwrap_or_default();
            }
            if let Ok(answer) = ask("/admin/room").await {
                let room = answer.json::<serde_json::Value>().await.unwrap_or_default();
                // Once the sale is over those still in line have been
                // told; nobody waits for it any more.
                let over = room["sale"] == "sold_out" || room["sale"] == "ended";
                waiting = room["on"]
                    .as_bool()
                    .filter(|on| *on)
                    .and_then(|_| room["waiting"].as_u64())
                    .map(|n| if over { 0 } else { n });
            }
        }
        let shops_serving = backends
            .iter()
            .filter(|b| b["pool"] == "primary" && b["state"] == "up")
            .count();
        let states = |list: &[serde_json::Value]| -> Vec<(String, String)> {
            list.iter()
                .map(|p| {
                    let text = |k: &str| p[k].as_str().unwrap_or("?").to_string();
                    (text("name"), text("state"))
                })
                .collect()
        };
        samples.push(PartsSample {
            second: start.elapsed().as_secs(),
            parts: states(&parts),
            backends: states(&backends),
            shops_serving,
            waiting,
        });
    }
    samples
}
