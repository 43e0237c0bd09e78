//! The durable receipt queue: at-least-once delivery through the message store.
//!
//! A receipt is written to the persistence plugin before `/inbox` answers
//! 202, and it is only acknowledged there once its runs have finished, so a
//! process killed at any moment loses nothing it accepted: the next start
//! delivers whatever was not acknowledged. Writes from concurrent requests
//! are grouped into one `enqueue` call (one sync) by [`commit`], which also
//! hands as many of them as there are free delivery slots straight to
//! delivery, stored already leased. Leasing what else is pending, retries
//! with backoff and the dead-letter list are in [`pump`]. The loops that
//! only talk to the store run on the store's own thread; deliveries run on
//! the service's runtime. This module never answers for a receipt the store
//! did not keep.

mod commit;
mod pump;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::dispatch::{Dispatcher, RunReport};
use crate::plugins::CallFailure;
use crate::plugins::persistence::{MessageStore, NewMessage, Status, Stored};

/// Metadata keys the queue puts on stored messages.
const KEY_IDEMPOTENCY: &str = "idempotency-key";
const KEY_WAITER: &str = "waiter";
/// How the receipt arrived, as JSON (see [`crate::receipt::arrival`]).
const KEY_RECEIPT: &str = "receipt";
/// Idempotency keys remembered at most: past it (plus a tenth, so trimming
/// is rare) the oldest are forgotten before `retention` ran out, so an inbox
/// where every receipt carries a key cannot grow the map without bound.
const MAX_KEYS: usize = 1_000_000;
/// Receipts being delivered at once (their runs still queue for engine
/// slots). Enough that a busy inbox's receipts are handed straight from the
/// group commit to delivery instead of stored pending and leased again.
const IN_FLIGHT: usize = 256;

#[derive(Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    store: MessageStore,
    dispatcher: Dispatcher,
    commits: mpsc::Sender<commit::Pending>,
    /// Receipts to acknowledge, written to the store in batches.
    acks: mpsc::UnboundedSender<String>,
    /// Acks sent but not yet written; a shutdown waits for them.
    unwritten_acks: AtomicUsize,
    /// Rings when something was enqueued, so delivery starts at once.
    wake: Notify,
    /// Sync-mode requests waiting for their receipt's first attempt.
    waiters: Mutex<HashMap<String, oneshot::Sender<Vec<RunReport>>>>,
    /// Idempotency key → message id, for keys still in the store; a key
    /// whose first receipt is being stored holds a channel that will carry
    /// its id, so a concurrent duplicate waits instead of storing again.
    keys: Mutex<HashMap<String, KeyState>>,
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

enum KeyState {
    Storing(watch::Receiver<Option<Result<String, CallFailure>>>),
    /// Stored under this id, at this time (Unix ms).
    Stored(String, u64),
}

#[derive(Default)]
struct Settled {
    jobs: HashSet<String>,
    failed_for_good: Vec<String>,
}

/// What `submit` did with a receipt.
pub enum Submitted {
    /// Stored under this id.
    New(String),
    /// Its idempotency key was already seen: this id holds the first one.
    Duplicate(String),
}

/// `GET /api/messages` rows.
#[derive(Debug, Serialize)]
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
    /// Opens the store (recovering what a previous process left) and starts
    /// committing and delivering.
    pub async fn start(
        store: MessageStore,
        dispatcher: Dispatcher,
        lease: Duration,
        retention: Duration,
        stop: CancellationToken,
        tracker: TaskTracker,
    ) -> anyhow::Result<Queue> {
        let opened = store.opened_stats().await.map_err(|f| {
            anyhow::anyhow!(
                "the message store `{}` could not be opened: {}",
                store.name(),
                f.message
            )
        })?;
        info!(
            store = store.name(),
            pending = opened.pending,
            dead = opened.dead,
            done = opened.done,
            skipped_records = opened.skipped_records,
            "message store opened; undelivered receipts will run again"
        );
        let (commits, pending) = mpsc::channel(commit::QUEUE);
        let (acks, to_ack) = mpsc::unbounded_channel();
        let queue = Queue {
            inner: Arc::new(Inner {
                store,
                dispatcher,
                commits,
                acks,
                unwritten_acks: AtomicUsize::new(0),
                wake: Notify::new(),
                waiters: Mutex::default(),
                keys: Mutex::default(),
                settled: Mutex::default(),
                in_flight: Arc::new(Semaphore::new(IN_FLIGHT)),
                lease_ms: lease.as_millis() as u64,
                stop: stop.clone(),
                tracker: tracker.clone(),
                main: tokio::runtime::Handle::current(),
            }),
        };
        queue.rebuild_keys().await;
        // The loops that do little but call the store run on its thread, so
        // a commit cycle never queues behind request tasks; deliveries run
        // on this runtime (see `Inner::main`).
        let store_thread = queue.inner.store.runtime();
        // Not tracked: requests still in flight during a shutdown need their commits.
        store_thread.spawn(commit::run(queue.clone(), pending));
        store_thread.spawn(commit::acknowledge(queue.clone(), to_ack));
        tracker.spawn_on(pump::run(queue.clone()), store_thread);
        tracker.spawn_on(pump::compact(queue.clone(), retention, stop), store_thread);
        Ok(queue)
    }

    /// Stores a receipt (grouped with concurrent ones into one synced write):
    /// `text` as received, `body` parsed from it, `receipt` how it arrived
    /// (kept in the message's metadata, for every delivery). With `wait`,
    /// also returns a receiver for the reports of its first attempt.
    pub async fn submit(
        &self,
        text: String,
        body: Value,
        receipt: Option<Value>,
        source: &str,
        idempotency_key: Option<String>,
        wait: bool,
    ) -> Result<(Submitted, Option<oneshot::Receiver<Vec<RunReport>>>), CallFailure> {
        // Claim the key, or learn who has it.
        let claim = match &idempotency_key {
            None => None,
            Some(key) => {
                let mut keys = self.inner.keys.lock().unwrap_or_else(|p| p.into_inner());
                match keys.get(key) {
                    Some(KeyState::Stored(id, _)) => {
                        return Ok((Submitted::Duplicate(id.clone()), None));
                    }
                    Some(KeyState::Storing(rx)) => Some(Err(rx.clone())),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        keys.insert(key.clone(), KeyState::Storing(rx));
                        Some(Ok(tx))
                    }
                }
            }
        };
        let claim = match claim {
            None => None,
            Some(Ok(tx)) => Some(tx),
            Some(Err(mut rx)) => {
                let first = rx.wait_for(|r| r.is_some()).await.map(|r| r.clone());
                return match first {
                    Ok(Some(Ok(id))) => Ok((Submitted::Duplicate(id), None)),
                    Ok(Some(Err(f))) => Err(f),
                    _ => Err(CallFailure::unavailable(
                        "the first receipt with this idempotency key was not stored".into(),
                    )),
                };
            }
        };
        let mut metadata = Vec::new();
        if let Some(key) = &idempotency_key {
            metadata.push((KEY_IDEMPOTENCY.to_string(), key.clone()));
        }
        if let Some(receipt) = &receipt {
            metadata.push((KEY_RECEIPT.to_string(), receipt.to_string()));
        }
        let receiver = wait.then(|| {
            let token = uuid::Uuid::now_v7().to_string();
            let (tx, rx) = oneshot::channel();
            self.inner
                .waiters
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(token.clone(), tx);
            metadata.push((KEY_WAITER.to_string(), token));
            rx
        });
        let message = NewMessage {
            body: text,
            source: source.to_string(),
            metadata,
        };
        let stored = commit::submit(self, message, body, receipt).await;
        if let (Some(key), Some(tx)) = (idempotency_key, claim) {
            let mut keys = self.inner.keys.lock().unwrap_or_else(|p| p.into_inner());
            match &stored {
                Ok(id) => keys.insert(key, KeyState::Stored(id.clone(), now_ms())),
                // Not kept: the key is free for the client's next try.
                Err(_) => keys.remove(&key),
            };
            if keys.len() > MAX_KEYS + MAX_KEYS / 10 {
                let forgotten = forget_oldest_keys(&mut keys, MAX_KEYS);
                warn!(
                    forgotten,
                    kept = MAX_KEYS,
                    "idempotency keys forgotten before their retention ran out: too many are kept"
                );
            }
            tx.send_replace(Some(stored.clone()));
        }
        Ok((Submitted::New(stored?), receiver))
    }

    /// How many stored receipts are in each status.
    pub async fn stats(&self) -> Result<crate::plugins::persistence::Stats, CallFailure> {
        self.inner.store.stats().await
    }

    pub async fn list(&self, status: Status, limit: u32) -> Result<Vec<MessageView>, CallFailure> {
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
            .map_err(|f| RetryError::Store(f.message))?;
        let Some(message) = message else {
            return Err(RetryError::NotFound(id.to_string()));
        };
        if matches!(message.status, Status::Pending | Status::Leased) {
            return Err(RetryError::NotFinished(
                id.to_string(),
                status_name(message.status),
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
            .map_err(|f| RetryError::Store(f.message))?;
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

    /// Forgets keys of receipts stored before `before_ms`: compaction has
    /// (or will have) removed them from the store, so they are no longer
    /// duplicates. Cheaper than listing the store again.
    fn forget_keys_before(&self, before_ms: u64) {
        self.inner
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, state| !matches!(state, KeyState::Stored(_, at) if *at < before_ms));
    }

    /// Learns the idempotency keys of messages the store still holds (once, at start-up).
    async fn rebuild_keys(&self) {
        let mut keys = HashMap::new();
        for status in [Status::Pending, Status::Leased, Status::Done, Status::Dead] {
            match self.inner.store.list(status, u32::MAX).await {
                Ok(messages) => {
                    for m in messages {
                        if let Some((_, key)) = m
                            .message
                            .metadata
                            .iter()
                            .find(|(k, _)| k == KEY_IDEMPOTENCY)
                        {
                            keys.insert(
                                key.clone(),
                                KeyState::Stored(m.id.clone(), m.enqueued_at_ms),
                            );
                        }
                    }
                }
                Err(f) => {
                    warn!(cause = %f.message, "could not list stored messages for idempotency keys")
                }
            }
        }
        // Keys being stored right now stay claimed.
        let mut current = self.inner.keys.lock().unwrap_or_else(|p| p.into_inner());
        current.retain(|_, state| matches!(state, KeyState::Storing(_)));
        current.extend(keys);
    }
}

/// Forgets the oldest stored keys until at most `keep` are left (keys
/// being stored stay); returns how many went.
fn forget_oldest_keys(keys: &mut HashMap<String, KeyState>, keep: usize) -> usize {
    let mut times: Vec<u64> = keys
        .values()
        .filter_map(|state| match state {
            KeyState::Stored(_, at) => Some(*at),
            KeyState::Storing(_) => None,
        })
        .collect();
    if times.len() <= keep {
        return 0;
    }
    let excess = times.len() - keep;
    let (_, cutoff, _) = times.select_nth_unstable(excess - 1);
    let cutoff = *cutoff;
    let before = keys.len();
    // Everything strictly older goes, and of the keys stored at the cutoff
    // time itself as many as it takes.
    let mut at_cutoff = excess - times.iter().filter(|&&t| t < cutoff).count();
    keys.retain(|_, state| match state {
        KeyState::Stored(_, at) if *at < cutoff => false,
        KeyState::Stored(_, at) if *at == cutoff && at_cutoff > 0 => {
            at_cutoff -= 1;
            false
        }
        _ => true,
    });
    before - keys.len()
}

pub fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "pending",
        Status::Leased => "leased",
        Status::Done => "done",
        Status::Dead => "dead",
    }
}

pub fn parse_status(text: &str) -> Option<Status> {
    match text {
        "pending" => Some(Status::Pending),
        "leased" => Some(Status::Leased),
        "done" => Some(Status::Done),
        "dead" => Some(Status::Dead),
        _ => None,
    }
}

fn view(m: Stored) -> MessageView {
    MessageView {
        status: status_name(m.status),
        attempts: m.attempts,
        source: m.message.source.clone(),
        enqueued_at_ms: m.enqueued_at_ms,
        not_before_ms: m.not_before_ms,
        last_error: m.last_error.clone(),
        body: serde_json::from_str(&m.message.body).unwrap_or(Value::String(m.message.body)),
        id: m.id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_keys_are_forgotten_first_and_keys_being_stored_stay() {
        let mut keys = HashMap::new();
        for (key, at) in [("a", 5), ("b", 1), ("c", 3), ("d", 3), ("e", 9)] {
            keys.insert(key.to_string(), KeyState::Stored(format!("id-{key}"), at));
        }
        let (_tx, rx) = watch::channel(None);
        keys.insert("storing".to_string(), KeyState::Storing(rx));
        assert_eq!(forget_oldest_keys(&mut keys, 3), 2);
        assert!(!keys.contains_key("b"));
        assert!(keys.contains_key("storing"));
        assert!(keys.contains_key("a") && keys.contains_key("e"));
        // One of the two stored at 3 went, the other stays.
        assert_eq!(
            ["c", "d"].iter().filter(|k| keys.contains_key(**k)).count(),
            1
        );
        assert_eq!(forget_oldest_keys(&mut keys, 10), 0);
    }
}
