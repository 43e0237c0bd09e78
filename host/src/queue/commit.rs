//! Group commit: receipts arriving together share one `enqueue` (one sync).
//!
//! Each request hands its message to one task and waits for the id. That
//! task takes everything waiting (up to [`BATCH`]) in one call, so while one
//! sync is in flight the next batch gathers: durability costs one sync per
//! batch, not per request. Acknowledgements are grouped the same way.

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::Queue;
use super::pump::{self, Body, Delivery};
use crate::clock::now_ms;
use crate::storage::{Enqueued, NewReceipt, StorageError};

/// Receipts waiting for their group commit at most. Past it, `/inbox`
/// answers 503 at once: the store is not keeping up (a slow disk, a long
/// compaction), and a client told to come back beats one left hanging.
pub const QUEUE: usize = 4096;
const BATCH: usize = 512;
/// What a 503 for a full commit queue tells the client to wait.
const BEHIND_RETRY_MS: u64 = 1000;

pub struct Pending {
    receipt: NewReceipt,
    /// The body already parsed, for delivering it straight from here.
    body: Value,
    /// How it arrived, as JSON text, likewise; `None` when no job matched
    /// (stored done, never delivered).
    arrival: Option<String>,
    reply: oneshot::Sender<Result<Enqueued, StorageError>>,
}

pub async fn submit(
    queue: &Queue,
    receipt: NewReceipt,
    body: Value,
    arrival: Option<String>,
) -> Result<Enqueued, StorageError> {
    let (reply, answer) = oneshot::channel();
    hand_over(
        &queue.inner.commits,
        Pending {
            receipt,
            body,
            arrival,
            reply,
        },
    )?;
    answer
        .await
        .map_err(|_| StorageError::unavailable("the receipt store stopped before answering"))?
}

/// Queues a receipt for the next group commit, or says why it cannot wait.
fn hand_over(commits: &mpsc::Sender<Pending>, pending: Pending) -> Result<(), StorageError> {
    commits.try_send(pending).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => StorageError::Unavailable {
            message: format!(
                "the receipt store is behind: {QUEUE} receipts are waiting to be stored"
            ),
            retry_after_ms: Some(BEHIND_RETRY_MS),
        },
        mpsc::error::TrySendError::Closed(_) => {
            StorageError::unavailable("the receipt store is shutting down")
        }
    })
}

/// Stores batches, up to the store's [`concurrent_commits`] at once (one
/// for the journal: the next batch gathers while one syncs).
///
/// [`concurrent_commits`]: crate::storage::Receipts::concurrent_commits
pub async fn run(queue: Queue, mut pending: mpsc::Receiver<Pending>) {
    let at_once = queue.inner.store.concurrent_commits().max(1);
    let commits = std::sync::Arc::new(tokio::sync::Semaphore::new(at_once));
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        // A free commit first, then the batch: it gathers while all wait.
        let permit = commits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        if pending.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let taken = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        if at_once == 1 {
            commit(&queue, taken).await;
            continue;
        }
        let queue = queue.clone();
        tokio::spawn(async move {
            commit(&queue, taken).await;
            drop(permit);
        });
    }
}

/// Stores one batch. As many of its receipts as there are free delivery
/// slots are stored already leased and delivered from memory at once: no
/// `lease` call to fetch back what was just written, and no second parse of
/// the body. The rest wait in the store, pending, for the delivery loop.
/// A receipt no job matched on arrival has nothing to deliver: it takes no
/// slot and no lease, and is stored done (or acknowledged at once, where
/// the store cannot store it done).
async fn commit(queue: &Queue, mut batch: Vec<Pending>) {
    let inner = &queue.inner;
    // The store wants done receipts last (stable: arrival order otherwise).
    batch.sort_by_key(|p| p.receipt.done);
    let to_deliver = batch.iter().filter(|p| !p.receipt.done).count();
    let mut slots = Vec::new();
    // Stopping: leave new receipts pending for the next start.
    while slots.len() < to_deliver && !inner.stop.is_cancelled() {
        match inner.in_flight.clone().try_acquire_owned() {
            Ok(slot) => slots.push(slot),
            Err(_) => break,
        }
    }
    let mut receipts = Vec::with_capacity(batch.len());
    let mut rest = Vec::with_capacity(batch.len());
    // Moved, not cloned: a receipt's body is copied into the store once.
    for p in batch.drain(..) {
        rest.push((
            p.body,
            p.arrival,
            p.reply,
            pump::waiter_of(&p.receipt.metadata),
            p.receipt.done,
        ));
        receipts.push(p.receipt);
    }
    debug!(size = receipts.len(), leased = slots.len(), "group commit");
    let stored = inner
        .store
        .enqueue(receipts, slots.len() as u32, inner.lease_ms, now_ms())
        .await;
    let answers = match stored {
        Ok(answers) if answers.len() == rest.len() => answers,
        Ok(answers) => {
            let why = StorageError::Failed(format!(
                "the store answered for {} of {} receipts",
                answers.len(),
                rest.len()
            ));
            for (_, _, reply, ..) in rest {
                let _ = reply.send(Err(why.clone()));
            }
            return;
        }
        Err(e) => {
            for (_, _, reply, ..) in rest {
                let _ = reply.send(Err(e.clone()));
            }
            return;
        }
    };
    // The store leased the first new receipts, one per slot: deliver
    // those; the rest (and every slot left over) wait for the pump.
    let mut slots = slots.into_iter();
    let mut all_leased = true;
    for (answer, (body, arrival, reply, waiter, done)) in answers.into_iter().zip(rest) {
        let new_id = match &answer {
            Enqueued::New(id) => Some(id.clone()),
            Enqueued::Duplicate(_) => None,
        };
        let _ = reply.send(Ok(answer));
        let Some(id) = new_id else { continue };
        if done {
            if !inner.store.stores_done() {
                queue.acknowledge(id);
            }
            // What its delivery would have told a waiter: no runs.
            pump::no_runs(queue, waiter);
            continue;
        }
        match slots.next() {
            Some(slot) => {
                let delivery = Delivery {
                    waiter,
                    id,
                    attempt: 1,
                    body: Body::Parsed(body),
                    receipt: arrival,
                    settled: Vec::new(),
                };
                pump::start(queue, delivery, slot);
            }
            None => all_leased = false,
        }
    }
    if !all_leased {
        inner.wake.notify_one();
    }
}

/// Writes acknowledgements in batches. They are not awaited by delivery: an
/// ack that is lost (a crash, a failing store) only means the receipt is
/// delivered again, which at-least-once allows.
pub async fn acknowledge(queue: Queue, mut acks: mpsc::UnboundedReceiver<String>) {
    let mut batch = Vec::with_capacity(BATCH);
    while acks.recv_many(&mut batch, BATCH).await > 0 {
        let count = batch.len();
        let ids = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
        let store = &queue.inner.store;
        let written = crate::storage::patiently("acknowledgements", store.patience(), None, || {
            store.ack_many(ids.clone(), now_ms())
        })
        .await;
        if let Err(e) = written {
            tracing::warn!(cause = %e, count, "could not acknowledge receipts; they will be delivered again");
        }
        queue
            .inner
            .unwritten_acks
            .fetch_sub(count, std::sync::atomic::Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> (Pending, oneshot::Receiver<Result<Enqueued, StorageError>>) {
        let (reply, answer) = oneshot::channel();
        let receipt = NewReceipt {
            body: "{}".into(),
            source: "inbox".into(),
            idempotency_key: None,
            metadata: Vec::new(),
            done: false,
        };
        let body = Value::Object(Default::default());
        (
            Pending {
                receipt,
                body,
                arrival: None,
                reply,
            },
            answer,
        )
    }

    #[test]
    fn a_full_commit_queue_refuses_at_once_with_a_retry_time() {
        let (commits, mut waiting) = mpsc::channel(1);
        assert!(hand_over(&commits, pending().0).is_ok());
        let refused = hand_over(&commits, pending().0).unwrap_err();
        assert_eq!(refused.retry_after_ms(), Some(BEHIND_RETRY_MS));
        assert!(refused.to_string().contains("behind"), "{refused}");
        // Room again once the commit task took what was waiting.
        assert!(waiting.try_recv().is_ok());
        assert!(hand_over(&commits, pending().0).is_ok());
        drop(waiting);
        let closed = hand_over(&commits, pending().0).unwrap_err();
        assert_eq!(closed.retry_after_ms(), None);
        assert!(closed.to_string().contains("shutting down"), "{closed}");
    }
}
