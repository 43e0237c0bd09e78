//! Group commit: receipts arriving together share one `enqueue` (one sync).
//!
//! Each request hands its message to one task and waits for the id. That
//! task takes everything waiting (up to [`BATCH`]) in one call, so while one
//! sync is in flight the next batch gathers: durability costs one sync per
//! batch, not per request. Acknowledgements are grouped the same way.

use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use super::Queue;
use crate::clock::now_ms;
use crate::plugins::CallFailure;
use crate::plugins::persistence::NewMessage;

pub const QUEUE: usize = 4096;
const BATCH: usize = 512;

pub struct Pending {
    message: NewMessage,
    reply: oneshot::Sender<Result<String, CallFailure>>,
}

pub async fn submit(queue: &Queue, message: NewMessage) -> Result<String, CallFailure> {
    let (reply, answer) = oneshot::channel();
    queue
        .inner
        .commits
        .send(Pending { message, reply })
        .await
        .map_err(|_| CallFailure::unavailable("the message store is shutting down".into()))?;
    answer.await.map_err(|_| {
        CallFailure::unavailable("the message store stopped before answering".into())
    })?
}

pub async fn run(queue: Queue, mut pending: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(BATCH);
    while pending.recv_many(&mut batch, BATCH).await > 0 {
        // Moved, not cloned: a receipt's body is copied into the store once.
        let (messages, replies): (Vec<NewMessage>, Vec<_>) =
            batch.drain(..).map(|p| (p.message, p.reply)).unzip();
        debug!(size = messages.len(), "group commit");
        let answers = match queue.inner.store.enqueue(&messages, now_ms()).await {
            Ok(ids) if ids.len() == replies.len() => ids.into_iter().map(Ok).collect(),
            Ok(ids) => {
                let why = format!(
                    "the store returned {} ids for {} messages",
                    ids.len(),
                    replies.len()
                );
                vec![Err(CallFailure::unavailable(why)); replies.len()]
            }
            Err(f) => vec![Err(f); replies.len()],
        };
        for (reply, answer) in replies.into_iter().zip(answers) {
            let _ = reply.send(answer);
        }
    }
}

/// Writes acknowledgements in batches. They are not awaited by delivery: an
/// ack that is lost (a crash, a failing store) only means the receipt is
/// delivered again, which at-least-once allows.
pub async fn acknowledge(queue: Queue, mut acks: mpsc::UnboundedReceiver<String>) {
    let mut batch = Vec::with_capacity(BATCH);
    while acks.recv_many(&mut batch, BATCH).await > 0 {
        if let Err(f) = queue.inner.store.ack_many(&batch, now_ms()).await {
            tracing::warn!(cause = %f.message, count = batch.len(), "could not acknowledge receipts; they will be delivered again");
        }
        queue
            .inner
            .unwritten_acks
            .fetch_sub(batch.len(), std::sync::atomic::Ordering::SeqCst);
        batch.clear();
    }
}
