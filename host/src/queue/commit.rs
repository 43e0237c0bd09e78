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
use crate::plugins::CallFailure;
use crate::plugins::persistence::NewMessage;

/// Receipts waiting for their group commit at most. Past it, `/inbox`
/// answers 503 at once: the store is not keeping up (a slow disk, a long
/// compaction), and a client told to come back beats one left hanging.
pub const QUEUE: usize = 4096;
const BATCH: usize = 512;
/// What a 503 for a full commit queue tells the client to wait.
const BEHIND_RETRY_MS: u64 = 1000;

pub struct Pending {
    message: NewMessage,
    /// The body already parsed, for delivering it straight from here.
    body: Value,
    /// How it arrived, likewise.
    receipt: Option<Value>,
    reply: oneshot::Sender<Result<String, CallFailure>>,
}

pub async fn submit(
    queue: &Queue,
    message: NewMessage,
    body: Value,
    receipt: Option<Value>,
) -> Result<String, CallFailure> {
    let (reply, answer) = oneshot::channel();
    hand_over(
        &queue.inner.commits,
        Pending {
            message,
            body,
            receipt,
            reply,
        },
    )?;
    answer.await.map_err(|_| {
        CallFailure::unavailable("the message store stopped before answering".into())
    })?
}

/// Queues a receipt for the next group commit, or says why it cannot wait.
fn hand_over(commits: &mpsc::Sender<Pending>, pending: Pending) -> Result<(), CallFailure> {
    commits.try_send(pending).map_err(|e| match e {
        mpsc::error::TrySendError::Full(_) => CallFailure {
            retry_after_ms: Some(BEHIND_RETRY_MS),
            ..CallFailure::unavailable(format!(
                "the message store is behind: {QUEUE} receipts are waiting to be stored"
            ))
        },
        mpsc::error::TrySendError::Closed(_) => {
            CallFailure::unavailable("the message store is shutting down".into())
        }
    })
}

/// Stores batches. As many receipts of a batch as there are free delivery
/// slots are stored already leased and delivered from memory at once: no
/// `lease` call to fetch back what was just written, and no second parse of
/// the body. The rest wait in the store, pending, for the delivery loop.
pub async fn run(queue: Queue, mut pending: mpsc::Receiver<Pending>) {
    let inner = &queue.inner;
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        let mut slots = Vec::new();
        // Stopping: leave new receipts pending for the next start.
        while slots.len() < batch.len() && !inner.stop.is_cancelled() {
            match inner.in_flight.clone().try_acquire_owned() {
                Ok(slot) => slots.push(slot),
                Err(_) => break,
            }
        }
        let mut messages = Vec::with_capacity(batch.len());
        let mut rest = Vec::with_capacity(batch.len());
        // Moved, not cloned: a receipt's body is copied into the store once.
        for p in batch.drain(..) {
            rest.push((
                p.body,
                p.receipt,
                p.reply,
                pump::waiter_of(&p.message.metadata),
            ));
            messages.push(p.message);
        }
        debug!(size = messages.len(), leased = slots.len(), "group commit");
        let stored = inner
            .store
            .enqueue(messages, slots.len() as u32, inner.lease_ms, now_ms())
            .await;
        let ids = match stored {
            Ok(ids) if ids.len() == rest.len() => ids,
            Ok(ids) => {
                let why = format!(
                    "the store returned {} ids for {} messages",
                    ids.len(),
                    rest.len()
                );
                for (_, _, reply, _) in rest {
                    let _ = reply.send(Err(CallFailure::unavailable(why.clone())));
                }
                continue;
            }
            Err(f) => {
                for (_, _, reply, _) in rest {
                    let _ = reply.send(Err(f.clone()));
                }
                continue;
            }
        };
        let all_leased = slots.len() == ids.len();
        let mut slots = slots.into_iter();
        for (id, (body, receipt, reply, waiter)) in ids.into_iter().zip(rest) {
            let _ = reply.send(Ok(id.clone()));
            if let Some(slot) = slots.next() {
                let delivery = Delivery {
                    waiter,
                    id,
                    attempt: 1,
                    body: Body::Parsed(body),
                    receipt,
                };
                pump::start(&queue, delivery, slot);
            }
        }
        if !all_leased {
            inner.wake.notify_one();
        }
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
        if let Err(f) = queue.inner.store.ack_many(ids, now_ms()).await {
            tracing::warn!(cause = %f.message, count, "could not acknowledge receipts; they will be delivered again");
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

    fn pending() -> (Pending, oneshot::Receiver<Result<String, CallFailure>>) {
        let (reply, answer) = oneshot::channel();
        let message = NewMessage {
            body: "{}".into(),
            source: "inbox".into(),
            metadata: Vec::new(),
        };
        let body = Value::Object(Default::default());
        (
            Pending {
                message,
                body,
                receipt: None,
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
        assert_eq!(refused.retry_after_ms, Some(BEHIND_RETRY_MS));
        assert!(refused.message.contains("behind"), "{}", refused.message);
        // Room again once the commit task took what was waiting.
        assert!(waiting.try_recv().is_ok());
        assert!(hand_over(&commits, pending().0).is_ok());
        drop(waiting);
        let closed = hand_over(&commits, pending().0).unwrap_err();
        assert_eq!(closed.retry_after_ms, None);
        assert!(
            closed.message.contains("shutting down"),
            "{}",
            closed.message
        );
    }
}
