//! The order desk: group commit for hot items.
//!
//! A flash sale sends thousands of orders at one product row. One transaction
//! per order serialises them on that row's lock, and the database then sells
//! about one order per commit round trip (the naive ceiling measured in
//! BENCHMARKS.md). The desk instead queues orders in a few lanes (a SKU
//! always goes to the same lane), and each lane's worker takes everything
//! that queued while its previous transaction ran and decides it in one
//! transaction under one row lock. Nobody waits on a timer: under light
//! load a batch is one order; under a surge batches grow by themselves.
//!
//! Every queue is bounded; a full lane answers "overloaded" at once.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::model::{now_ms, OrderRequest};
use crate::store::{Decision, Store, StoreError};

/// How the desk is sized.
#[derive(Debug, Clone)]
pub struct DeskOptions {
    /// Number of lanes, each with one worker and so at most one open
    /// transaction at a time.
    pub lanes: usize,
    /// Orders waiting per lane before new ones are refused.
    pub lane_capacity: usize,
    /// Most orders decided in one transaction.
    pub max_batch: usize,
    /// How often a batch that lost a race is run again before giving up.
    pub contention_retries: u32,
}

impl Default for DeskOptions {
    fn default() -> Self {
        DeskOptions {
            lanes: 4,
            lane_capacity: 1024,
            max_batch: 256,
            contention_retries: 5,
        }
    }
}

/// Why the desk could not decide an order.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeskError {
    /// The lane's queue is full: shed the order with 503 `overloaded`.
    #[error("the order queue is full")]
    QueueFull,
    /// The desk is stopping.
    #[error("the order desk is shutting down")]
    Closed,
    /// The store cannot be reached: 503 `unavailable`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The batch failed for another reason (its error was logged once).
    #[error("order batch failed: {0}")]
    Failed(String),
}

impl From<&StoreError> for DeskError {
    fn from(err: &StoreError) -> Self {
        if err.is_unavailable() {
            DeskError::Unavailable(err.to_string())
        } else {
            DeskError::Failed(err.to_string())
        }
    }
}

struct Job {
    request: OrderRequest,
    reply: oneshot::Sender<Result<Decision, DeskError>>,
}

/// Hands orders to the lane workers; cheap to clone.
#[derive(Clone, Debug)]
pub struct OrderDesk {
    lanes: Arc<Vec<mpsc::Sender<Job>>>,
}

/// Observes every batch the desk commits (for metrics).
pub(super) type BatchObserver = Arc<dyn Fn(usize) + Send + Sync>;

impl OrderDesk {
    /// Starts one worker per lane; they stop when the desk and its clones are
    /// dropped and their queues are empty.
    pub fn start(store: Arc<dyn Store>, options: DeskOptions, observe: BatchObserver) -> OrderDesk {
        let lanes = (0..options.lanes.max(1))
            .map(|lane| {
                let (sender, receiver) = mpsc::channel(options.lane_capacity.max(1));
                let worker = LaneWorker {
                    lane,
                    store: Arc::clone(&store),
                    options: options.clone(),
                    observe: Arc::clone(&observe),
                };
                tokio::spawn(worker.run(receiver));
                sender
            })
            .collect();
        OrderDesk {
            lanes: Arc::new(lanes),
        }
    }

    /// Queues an order and waits for its decision.
    pub async fn place(&self, request: OrderRequest) -> Result<Decision, DeskError> {
        let lane = &self.lanes[lane_of(&request.sku, self.lanes.len())];
        let (reply, answer) = oneshot::channel();
        lane.try_send(Job { request, reply })
            .map_err(|err| match err {
                mpsc::error::TrySendError::Full(_) => DeskError::QueueFull,
                mpsc::error::TrySendError::Closed(_) => DeskError::Closed,
            })?;
        answer.await.unwrap_or(Err(DeskError::Closed))
    }

    /// Orders queued and not yet taken by a worker, over all lanes.
    pub fn queued(&self) -> usize {
        self.lanes
            .iter()
            .map(|lane| lane.max_capacity() - lane.capacity())
            .sum()
    }
}

fn lane_of(sku: &str, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    sku.hash(&mut hasher);
    (hasher.finish() % lanes as u64) as usize
}

struct LaneWorker {
    lane: usize,
    store: Arc<dyn Store>,
    options: DeskOptions,
    observe: BatchObserver,
}

impl LaneWorker {
    async fn run(self, mut receiver: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(self.options.max_batch);
        while receiver.recv_many(&mut jobs, self.options.max_batch).await > 0 {
            // A caller that gave up (timed out, disconnected) was never told
            // its order succeeded; leaving it out keeps that true.
            jobs.retain(|job| !job.reply.is_closed());
            // One lane may carry several SKUs: one transaction per SKU,
            // orders of each in arrival order.
            while !jobs.is_empty() {
                let sku = jobs[0].request.sku.clone();
                let (batch, rest): (Vec<Job>, Vec<Job>) =
                    jobs.drain(..).partition(|job| job.request.sku == sku);
                jobs = rest;
                self.decide(&sku, batch).await;
            }
        }
        tracing::debug!(lane = self.lane, "order lane stopped");
    }

    async fn decide(&self, sku: &str, batch: Vec<Job>) {
        let requests: Vec<OrderRequest> = batch.iter().map(|job| job.request.clone()).collect();
        let mut attempt = 0;
        let outcome = loop {
            match self.store.place_orders(sku, &requests, now_ms()).await {
                Err(StoreError::Contention(why)) if attempt < self.options.contention_retries => {
                    attempt += 1;
                    tracing::debug!(
                        lane = self.lane,
                        sku,
                        attempt,
                        why,
                        "batch lost a race, running it again"
                    );
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                }
                other => break other,
            }
        };
        match outcome {
            Ok(decisions) => {
                (self.observe)(batch.len());
                for (job, decision) in batch.into_iter().zip(decisions) {
                    let _ = job.reply.send(Ok(decision));
                }
            }
            Err(err) => {
                if !err.is_unavailable() {
                    tracing::error!(lane = self.lane, sku, error = %err, "order batch failed");
                }
                let failure = DeskError::from(&err);
                for job in batch {
                    let _ = job.reply.send(Err(failure.clone()));
                }
            }
        }
    }
}
