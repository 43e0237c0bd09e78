//! The embedded store's receipts: the message-store plugin (the built-in
//! journal, or an operator's own) behind [`Receipts`].
//!
//! The plugin keeps receipts durably and leases them; this file adds what
//! the plugin interface leaves to the host: idempotency keys (kept in a
//! receipt's metadata, made unique by [`Keys`]) and the translation between
//! the WIT's records and the storage boundary's. It must never answer for a
//! receipt the plugin did not keep.

use async_trait::async_trait;
use tokio::sync::Mutex;
use tracing::{info, warn};

use super::keys::{Keys, MAX_KEYS};
use crate::plugins::CallFailure;
use crate::plugins::persistence::{MessageStore, NewMessage, Status, Stored};
use crate::storage::{
    Enqueued, NewReceipt, ReceiptStats, ReceiptStatus, Receipts, SettledJob, StorageError,
    StoredReceipt,
};

/// The metadata key a receipt's idempotency key is stored under (read
/// back by `migrate --from-embedded`, which gives it a column of its own).
pub(crate) const KEY_IDEMPOTENCY: &str = "idempotency-key";

pub struct JournalReceipts {
    store: MessageStore,
    /// Held across an `enqueue`, so keys are looked up and stored one call
    /// at a time.
    keys: Mutex<Keys>,
}

impl JournalReceipts {
    /// Opens the plugin's store (recovering what a previous process left)
    /// and learns the idempotency keys it holds.
    pub async fn open(store: MessageStore) -> anyhow::Result<JournalReceipts> {
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
        let receipts = JournalReceipts {
            store,
            keys: Mutex::default(),
        };
        receipts.rebuild_keys().await;
        Ok(receipts)
    }

    async fn rebuild_keys(&self) {
        let mut keys = self.keys.lock().await;
        for status in [Status::Pending, Status::Leased, Status::Done, Status::Dead] {
            match self.store.list(status, u32::MAX).await {
                Ok(messages) => {
                    for m in messages {
                        if let Some(key) = key_of(&m.message.metadata) {
                            keys.insert(key.to_string(), m.id.clone(), m.enqueued_at_ms);
                        }
                    }
                }
                Err(f) => {
                    warn!(cause = %f.message, "could not list stored messages for idempotency keys")
                }
            }
        }
    }
}

fn key_of(metadata: &[(String, String)]) -> Option<&str> {
    metadata
        .iter()
        .find(|(k, _)| k == KEY_IDEMPOTENCY)
        .map(|(_, v)| v.as_str())
}

impl From<CallFailure> for StorageError {
    fn from(f: CallFailure) -> Self {
        StorageError::Unavailable {
            message: f.message,
            retry_after_ms: f.retry_after_ms,
        }
    }
}

#[async_trait]
impl Receipts for JournalReceipts {
    async fn enqueue(
        &self,
        receipts: Vec<NewReceipt>,
        lease_first: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Enqueued>, StorageError> {
        let mut keys = self.keys.lock().await;
        // Each receipt's answer: known now (a duplicate of a stored one),
        // or the index of its message in what is stored.
        enum Slot {
            Known(Enqueued),
            Stored(usize),
            /// A later receipt of this batch with the key of message `i`.
            DuplicateOf(usize),
        }
        let mut slots = Vec::with_capacity(receipts.len());
        let mut messages = Vec::with_capacity(receipts.len());
        let mut keys_of_batch: Vec<(String, usize)> = Vec::new();
        // Messages with nothing to deliver (all after the others): stored
        // pending, not leased; the message store has no "stored done", so
        // the queue acknowledges them with its next batch (`stores_done`).
        let mut done = 0;
        for r in receipts {
            if let Some(key) = &r.idempotency_key {
                if let Some(id) = keys.get(key) {
                    slots.push(Slot::Known(Enqueued::Duplicate(id.to_string())));
                    continue;
                }
                if let Some((_, first)) = keys_of_batch.iter().find(|(k, _)| k == key) {
                    slots.push(Slot::DuplicateOf(*first));
                    continue;
                }
                keys_of_batch.push((key.clone(), messages.len()));
            }
            let mut metadata = r.metadata;
            if let Some(key) = r.idempotency_key {
                metadata.push((KEY_IDEMPOTENCY.to_string(), key));
            }
            slots.push(Slot::Stored(messages.len()));
            done += usize::from(r.done);
            messages.push(NewMessage {
                body: r.body,
                source: r.source,
                metadata,
            });
        }
        let count = messages.len();
        let ids = if messages.is_empty() {
            Vec::new()
        } else {
            let lease_first = lease_first.min((count - done) as u32);
            self.store
                .enqueue(messages, lease_first, lease_ms, now_ms)
                .await?
        };
        if ids.len() != count {
            return Err(StorageError::Failed(format!(
                "the message store returned {} ids for {count} messages",
                ids.len()
            )));
        }
        let mut forgotten = 0;
        for (key, index) in keys_of_batch {
            forgotten += keys.insert(key, ids[index].clone(), now_ms);
        }
        if forgotten > 0 {
            warn!(
                forgotten,
                kept = MAX_KEYS,
                "idempotency keys forgotten before their retention ran out: too many are kept"
            );
        }
        Ok(slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Known(answer) => answer,
                Slot::Stored(i) => Enqueued::New(ids[i].clone()),
                Slot::DuplicateOf(i) => Enqueued::Duplicate(ids[i].clone()),
            })
            .collect())
    }

    async fn lease(
        &self,
        max: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<StoredReceipt>, StorageError> {
        let leased = self.store.lease(max, lease_ms, now_ms).await?;
        Ok(leased.into_iter().map(receipt).collect())
    }

    async fn ack_many(&self, ids: Vec<String>, now_ms: u64) -> Result<(), StorageError> {
        Ok(self.store.ack_many(ids, now_ms).await?)
    }

    /// The journal has no place for `settled`: the queue of the one
    /// process that delivers remembers them.
    async fn nack(
        &self,
        id: &str,
        retry_after_ms: u64,
        error: &str,
        _settled: &[SettledJob],
        now_ms: u64,
    ) -> Result<(), StorageError> {
        Ok(self.store.nack(id, retry_after_ms, error, now_ms).await?)
    }

    async fn dead_letter(&self, id: &str, reason: &str, now_ms: u64) -> Result<(), StorageError> {
        Ok(self.store.dead_letter(id, reason, now_ms).await?)
    }

    async fn requeue(&self, id: &str, now_ms: u64) -> Result<(), StorageError> {
        Ok(self.store.requeue(id, now_ms).await?)
    }

    async fn list(
        &self,
        status: ReceiptStatus,
        limit: u32,
    ) -> Result<Vec<StoredReceipt>, StorageError> {
        let listed = self.store.list(to_wit(status), limit).await?;
        Ok(listed.into_iter().map(receipt).collect())
    }

    async fn get(&self, id: &str) -> Result<Option<StoredReceipt>, StorageError> {
        Ok(self.store.get(id).await?.map(receipt))
    }

    async fn stats(&self) -> Result<ReceiptStats, StorageError> {
        let s = self.store.stats().await?;
        Ok(ReceiptStats {
            pending: s.pending,
            leased: s.leased,
            done: s.done,
            dead: s.dead,
            skipped_records: s.skipped_records,
        })
    }

    async fn compact(&self, before_ms: u64) -> Result<u64, StorageError> {
        let removed = self.store.compact(before_ms).await?;
        // Idempotency keys are remembered for the retention period.
        self.keys.lock().await.forget_before(before_ms);
        Ok(removed)
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        Some(self.store.runtime().clone())
    }
}

fn to_wit(status: ReceiptStatus) -> Status {
    match status {
        ReceiptStatus::Pending => Status::Pending,
        ReceiptStatus::Leased => Status::Leased,
        ReceiptStatus::Done => Status::Done,
        ReceiptStatus::Dead => Status::Dead,
    }
}

fn receipt(m: Stored) -> StoredReceipt {
    StoredReceipt {
        status: match m.status {
            Status::Pending => ReceiptStatus::Pending,
            Status::Leased => ReceiptStatus::Leased,
            Status::Done => ReceiptStatus::Done,
            Status::Dead => ReceiptStatus::Dead,
        },
        id: m.id,
        body: m.message.body,
        source: m.message.source,
        metadata: m.message.metadata,
        attempts: m.attempts,
        enqueued_at_ms: m.enqueued_at_ms,
        not_before_ms: m.not_before_ms,
        last_error: m.last_error,
        settled: Vec::new(),
    }
}
