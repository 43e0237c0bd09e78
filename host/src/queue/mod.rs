//! The durable receipt queue: at-least-once delivery through the receipts
//! store ([`crate::storage::Receipts`]: the embedded journal or PostgreSQL).
//!
//! A receipt is written to the store before `/inbox` answers 202, and it is
//! only acknowledged there once its runs have finished, so a process killed
//! at any moment loses nothing it accepted: the next start (or another
//! replica) delivers whatever was not acknowledged. Writes from concurrent
//! requests are grouped into one `enqueue` call (one sync) by [`commit`], which also
//! hands as many of them as there are free delivery slots straight to
//! delivery, stored already leased. Leasing what else is pending, retries
//! with backoff and the dead-letter list are in [`pump`]. The loops that
//! only talk to the store run on the store's own thread; deliveries run on
//! the service's runtime. This module never answers for a receipt the store
//! did not keep, and never decides what a duplicate is (the store does).

mod commit;
mod pump;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::now_ms;
use crate::dispatch::{Dispatcher, RunReport, Watch};
use crate::storage::{
    Enqueued, NewReceipt, ReceiptStats, ReceiptStatus, Receipts, SettledJob, StorageError,
    StoredReceipt,
};

/// What the request storing a receipt waits for, if anything.
#[derive(Default)]
pub struct Wait {
    /// Sync mode: a receiver for the first attempt's reports.
    pub reports: bool,
    /// A webhook's reply after completion: its watch on the workflow.
    pub watch: Option<Watch>,
}

/// A request waiting for a stored receipt's first attempt.
pub(super) struct Waiter {
    /// Sync mode: the first attempt's reports.
    pub reports: Option<oneshot::Sender<Vec<RunReport>>>,
    /// A webhook's reply after completion: handed to the first attempt's runs.
    pub watch: Option<Watch>,
}

/// The metadata key of a sync-mode request's waiter token.
const KEY_WAITER: &str = "waiter";
/// How the receipt arrived, as JSON (see [`crate::receipt::arrival`]).
const KEY_RECEIPT: &str = "receipt";
/// Receipts being delivered at once by the one process of the embedded
/// store (their runs still queue for engine slots). Enough that a busy
/// inbox's receipts are handed straight from the group commit to delivery
/// instead of stored pending and leased again.
const IN_FLIGHT: usize = 256;

/// Receipts one replica holds leases on at once, when replicas share the
/// store: twice its engine slots. Each waits for at most one run before a
/// slot is free, so its lease (twice the longest timeout plus a minute)
/// does not lapse while it waits in a busy replica's backlog (another
/// replica would deliver it again), and what a replica cannot start soon
/// stays pending for an idle one.
fn in_flight(dispatcher: &Dispatcher) -> usize {
    if dispatcher.storage().shared {
        (dispatcher.project().engine.concurrency * 2).max(2)
    } else {
        IN_FLIGHT
    }
}

#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Receipts>,
    dispatcher: Dispatcher,
    commits: mpsc::Sender<commit::Pending>,
    /// Receipts to acknowledge, written to the store in batches.
    acks: mpsc::UnboundedSender<String>,
    /// Acks sent but not yet written; a shutdown waits for them.
    unwritten_acks: AtomicUsize,
    /// Rings when something was enqueued, so delivery starts at once.
    wake: Notify,
    /// The delivery loop last found every slot taken with receipts perhaps
    /// still pending: a slot that frees rings `wake` so they are leased at
    /// once, not at the next poll.
    backlog: std::sync::atomic::AtomicBool,
    /// Requests waiting for their receipt's first attempt: sync mode's
    /// reports, and a webhook's watch on its workflow.
    waiters: Mutex<HashMap<String, Waiter>>,
    /// Jobs of a message that need no further attempt (succeeded, or failed
    /// for good), so a retry re-runs only the ones that may still succeed.
    settled: Mutex<HashMap<String, Settled>>,
    /// Delivery slots: receipts being delivered at once.
    in_flight: Arc<Semaphore>,
    /// How long a lease lasts: longer than any run can take.
    lease_ms: u64,
    /// Stops delivery; deliveries run on `tracker` so a shutdown waits for them.
    stop: CancellationToken,
    tracker: TaskTracker,
    /// The service's runtime: deliveries run here, not on the store's thread.
    main: tokio::runtime::Handle,
}

#[derive(Default)]
struct Settled {
    jobs: HashSet<String>,
    failed_for_good: Vec<String>,
    /// The same, as the store keeps them for whoever delivers the next attempt.
    stored: Vec<SettledJob>,
}

impl Settled {
    fn add(&mut self, job: SettledJob) {
        if !self.jobs.insert(job.job.clone()) {
            return;
        }
        if let Some(why) = &job.failure {
            self.failed_for_good.push(format!("{}: {why}", job.job));
        }
        self.stored.push(job);
    }
}

/// What `submit` did with a receipt.
pub enum Submitted {
    /// Stored under this id.
    New(String),
    /// Its idempotency key was already seen: this id holds the first one.
    Duplicate(String),
}

/// `GET /api/messages` rows.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MessageView {
    pub id: String,
    pub status: &'static str,
    pub attempts: u32,
    pub source: String,
    pub enqueued_at_ms: u64,
    pub not_before_ms: u64,
    pub last_error: Option<String>,
    pub body: Value,
}

#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no message with id `{0}`")]
    NotFound(String),
    #[error("message `{0}` is {1}; only done or dead messages can be retried")]
    NotFinished(String, &'static str),
    #[error("the message store failed: {0}")]
    Store(String),
}

impl Queue {
    /// Starts committing to `store` and delivering what it holds (what a
    /// previous process left included).
    pub async fn start(
        store: Arc<dyn Receipts>,
        dispatcher: Dispatcher,
        lease: Duration,
        retention: Duration,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) -> anyhow::Result<Queue> {
        let (commits, pending) = mpsc::channel(commit::QUEUE);
        let (acks, to_ack) = mpsc::unbounded_channel();
        let main = tokio::runtime::Handle::current();
        // The loops that do little but call the store run on its thread if
        // it has one, so a commit cycle never queues behind request tasks;
        // deliveries run on this runtime (see `Inner::main`).
        let store_thread = store.runtime().unwrap_or_else(|| main.clone());
        let slots = in_flight(&dispatcher);
        let queue = Queue {
            inner: Arc::new(Inner {
                store,
                dispatcher,
                commits,
                acks,
                unwritten_acks: AtomicUsize::new(0),
                wake: Notify::new(),
                backlog: Default::default(),
                waiters: Mutex::default(),
                settled: Mutex::default(),
                in_flight: Arc::new(Semaphore::new(slots)),
                lease_ms: lease.as_millis() as u64,
                stop: stop.clone(),
                tracker: tracker.clone(),
                main,
            }),
        };
        // Not tracked: requests still in flight during a shutdown need their commits.
        store_thread.spawn(commit::run(queue.clone(), pending));
        store_thread.spawn(commit::acknowledge(queue.clone(), to_ack));
        tracker.spawn_on(pump::run(queue.clone()), &store_thread);
        tracker.spawn_on(pump::compact(queue.clone(), retention, stop), &store_thread);
        Ok(queue)
    }

    /// Stores a receipt (grouped with concurrent ones into one synced write):
    /// `text` as received, `body` parsed from it, `receipt` how it arrived as
    /// JSON text (kept in the message's metadata, for every delivery). With
    /// `wait.reports`, also returns a receiver for the reports of its first
    /// attempt; `wait.watch` goes to the first attempt's runs. A receipt
    /// that `matched` no job is stored done: it is never delivered, even if
    /// a job matching it is added before it would have been (its 202 said
    /// no job matched).
    #[allow(clippy::too_many_arguments)]
    pub async fn submit(
        &self,
        text: String,
        body: Value,
        receipt: String,
        source: &str,
        idempotency_key: Option<String>,
        wait: Wait,
        matched: bool,
    ) -> Result<(Submitted, Option<oneshot::Receiver<Vec<RunReport>>>), StorageError> {
        // A copy for the delivery from memory, which reads it only when a
        // job matches (see `pump::deliver`); a receipt stored done has none.
        let delivered = matched.then(|| receipt.clone());
        let mut metadata = vec![(KEY_RECEIPT.to_string(), receipt)];
        let Wait {
            reports: wait,
            watch,
        } = wait;
        let waiter = (wait || watch.is_some()).then(|| {
            let token = uuid::Uuid::now_v7().to_string();
            let (tx, rx) = if wait {
                let (tx, rx) = oneshot::channel();
                (Some(tx), Some(rx))
            } else {
                (None, None)
            };
            self.inner
                .waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(token.clone(), Waiter { reports: tx, watch });
            metadata.push((KEY_WAITER.to_string(), token.clone()));
            (token, rx)
        });
        let new = NewReceipt {
            body: text,
            source: source.to_string(),
            idempotency_key,
            metadata,
            done: !matched,
        };
        let stored = commit::submit(self, new, body, delivered).await;
        let forget_waiter = || {
            if let Some((token, _)) = &waiter {
                self.inner
                    .waiters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(token);
            }
        };
        match stored {
            Ok(Enqueued::New(id)) => Ok((Submitted::New(id), waiter.and_then(|(_, rx)| rx))),
            Ok(Enqueued::Duplicate(id)) => {
                forget_waiter();
                Ok((Submitted::Duplicate(id), None))
            }
            Err(e) => {
                forget_waiter();
                Err(e)
            }
        }
    }

    /// How many stored receipts are in each status.
    pub async fn stats(&self) -> Result<ReceiptStats, StorageError> {
        self.inner.store.stats().await
    }

    pub async fn list(
        &self,
        status: ReceiptStatus,
        limit: u32,
    ) -> Result<Vec<MessageView>, StorageError> {
        Ok(self
            .inner
            .store
            .list(status, limit)
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    /// Makes a done or dead message pending again.
    pub async fn retry(&self, id: &str) -> Result<(), RetryError> {
        let store = &self.inner.store;
        let message = store
            .get(id)
            .await
            .map_err(|e| RetryError::Store(e.to_string()))?;
        let Some(message) = message else {
            return Err(RetryError::NotFound(id.to_string()));
        };
        if matches!(
            message.status,
            ReceiptStatus::Pending | ReceiptStatus::Leased
        ) {
            return Err(RetryError::NotFinished(
                id.to_string(),
                message.status.as_str(),
            ));
        }
        self.inner
            .settled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        store
            .requeue(id, now_ms())
            .await
            .map_err(|e| RetryError::Store(e.to_string()))?;
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Queues an acknowledgement (written in a batch, soon).
    fn acknowledge(&self, id: String) {
        self.inner.unwritten_acks.fetch_add(1, Ordering::SeqCst);
        if self.inner.acks.send(id).is_err() {
            self.inner.unwritten_acks.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Waits (up to `limit`) until every queued acknowledgement is written,
    /// so a clean shutdown does not deliver finished receipts again.
    pub async fn flush_acks(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.inner.unwritten_acks.load(Ordering::SeqCst) > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn view(m: StoredReceipt) -> MessageView {
    MessageView {
        status: m.status.as_str(),
        attempts: m.attempts,
        source: m.source,
        enqueued_at_ms: m.enqueued_at_ms,
        not_before_ms: m.not_before_ms,
        last_error: m.last_error,
        body: serde_json::from_str(&m.body).unwrap_or(Value::String(m.body)),
        id: m.id,
    }
}
