//! The PostgreSQL store's receipts: the `receipts` table.
//!
//! - `enqueue` is one multi-row `INSERT … SELECT FROM UNNEST(…)` per group
//!   commit, whatever its size; the idempotency key is `UNIQUE` in the table
//!   (`ON CONFLICT DO NOTHING`), so a re-send to any replica stores nothing.
//!   A batch that carries keys runs in a transaction, so that a receipt it
//!   must hand to delivery at once is leased before any replica sees it.
//! - `lease` takes due receipts with `FOR UPDATE SKIP LOCKED`: replicas
//!   leasing together never wait for each other nor get the same receipt.
//!   A lease is a time (`due_ms`): when it passes (its replica died or hung)
//!   any replica leases the receipt again, or sooner: a replica that stops
//!   saying it is alive has its leases handed on (see `mod.rs`).
//! - Retries wait in the table (`not_before_ms`), dead letters stay there
//!   (`status = 'dead'`), done receipts until compaction.
//! - Receipts stored pending ring `NOTIFY`, which wakes idle replicas.

use std::sync::{Arc, LazyLock};

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_postgres::Row;

use super::{CHANNEL, Postgres, db_error};
use crate::storage::{
    Enqueued, NewReceipt, ReceiptStats, ReceiptStatus, Receipts, SettledJob, StorageError,
    StoredReceipt,
};

pub struct PgReceipts {
    pg: Postgres,
    wake: Arc<Notify>,
    commits: usize,
}

impl PgReceipts {
    pub(super) fn new(pg: Postgres, wake: Arc<Notify>, commits: usize) -> Self {
        PgReceipts { pg, wake, commits }
    }
}

const COLUMNS: &str = "id, body, source, metadata, status, attempts, enqueued_at_ms, not_before_ms, last_error, settled";

/// One statement for the whole batch. Rows stored pending ring the channel
/// (one notification per transaction: PostgreSQL folds identical ones).
/// `{conflict}` is [`ON_KEY_CONFLICT`] for a batch that carries keys and
/// nothing for one that carries none: a plain insert takes no speculative
/// insertion (a WAL record per row) for keys that cannot conflict.
fn insert(conflict: &str) -> String {
    format!(
        "WITH stored AS (
    INSERT INTO receipts (id, body, source, metadata, idempotency_key, status, attempts, enqueued_at_ms, not_before_ms, due_ms, leased_by, finished_at_ms)
    SELECT id, body, source, metadata, key, status, attempts, enqueued, enqueued,
           CASE WHEN status <> 'done' THEN due END,
           CASE WHEN status = 'leased' THEN $9 END,
           CASE WHEN status = 'done' THEN enqueued END
    FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int4[], $8::int8[], $10::int8[])
         AS batch(id, body, source, metadata, key, status, attempts, enqueued, due)
    {conflict}
    RETURNING id, status
)
SELECT id, CASE WHEN status = 'pending' THEN pg_notify('{CHANNEL}', '')::text END FROM stored"
    )
}

/// The key's index is partial (`WHERE idempotency_key IS NOT NULL`, V3):
/// a conflict target must name its predicate.
const ON_KEY_CONFLICT: &str =
    "ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING";
static INSERT_KEYED: LazyLock<String> = LazyLock::new(|| insert(ON_KEY_CONFLICT));
static INSERT_PLAIN: LazyLock<String> = LazyLock::new(|| insert(""));

#[async_trait]
impl Receipts for PgReceipts {
    async fn enqueue(
        &self,
        receipts: Vec<NewReceipt>,
        lease_first: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Enqueued>, StorageError> {
        // A key held by an earlier receipt of this batch: that one's row.
        enum Slot {
            Row(usize),
            SameAs(usize),
        }
        let now = now_ms as i64;
        let lease_until = now + lease_ms as i64;
        let mut slots = Vec::with_capacity(receipts.len());
        let mut ids: Vec<String> = Vec::with_capacity(receipts.len());
        let (mut bodies, mut sources, mut metadata) = (Vec::new(), Vec::new(), Vec::new());
        let mut keys: Vec<Option<String>> = Vec::new();
        let mut done: Vec<bool> = Vec::new();
        for r in receipts {
            if let Some(key) = &r.idempotency_key
                && let Some(first) = keys
                    .iter()
                    .position(|k: &Option<String>| k.as_ref() == Some(key))
            {
                slots.push(Slot::SameAs(first));
                continue;
            }
            slots.push(Slot::Row(ids.len()));
            ids.push(uuid::Uuid::now_v7().to_string());
            bodies.push(r.body);
            sources.push(r.source);
            metadata.push(serde_json::to_string(&r.metadata)?);
            keys.push(r.idempotency_key);
            done.push(r.done);
        }
        let rows = ids.len();
        if rows == 0 {
            return Ok(Vec::new());
        }
        // Done rows come after all others: the first `leased` rows are not.
        let leased = (lease_first as usize).min(done.iter().filter(|d| !**d).count());
        let lease_row = |i: usize| i < leased;
        let statuses: Vec<&str> = (0..rows)
            .map(|i| match (done[i], lease_row(i)) {
                (true, _) => "done",
                (false, true) => "leased",
                (false, false) => "pending",
            })
            .collect();
        let attempts: Vec<i32> = (0..rows).map(|i| lease_row(i) as i32).collect();
        let enqueued = vec![now; rows];
        let due: Vec<i64> = (0..rows)
            .map(|i| if lease_row(i) { lease_until } else { now })
            .collect();
        let with_keys = keys.iter().any(Option::is_some);
        let mut client = self.pg.client().await?;
        let sql: &str = if with_keys {
            &INSERT_KEYED
        } else {
            &INSERT_PLAIN
        };
        let insert = client.prepare_cached(sql).await.map_err(db_error)?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 10] = [
            &ids,
            &bodies,
            &sources,
            &metadata,
            &keys,
            &statuses,
            &attempts,
            &enqueued,
            &self.pg.replica.as_ref(),
            &due,
        ];
        if !with_keys {
            // Nothing can conflict: one statement, committed on its own.
            let stored = client.query(&insert, &params).await.map_err(db_error)?;
            if stored.len() != rows {
                return Err(StorageError::Failed(format!(
                    "the database stored {} of {rows} receipts",
                    stored.len()
                )));
            }
            return Ok(slots
                .into_iter()
                .map(|s| match s {
                    Slot::Row(i) => Enqueued::New(ids[i].clone()),
                    Slot::SameAs(i) => Enqueued::Duplicate(ids[i].clone()),
                })
                .collect());
        }
        let tx = client.transaction().await.map_err(db_error)?;
        let stored: std::collections::HashSet<String> = tx
            .query(&insert, &params)
            .await
            .map_err(db_error)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        // Rows that were not stored: their key is held by another receipt.
        let mut holder: Vec<Option<String>> = vec![None; rows];
        let conflicted: Vec<&str> = (0..rows)
            .filter(|&i| !stored.contains(&ids[i]))
            .filter_map(|i| keys[i].as_deref())
            .collect();
        if !conflicted.is_empty() {
            let found = tx
                .query(
                    "SELECT idempotency_key, id FROM receipts WHERE idempotency_key = ANY($1)",
                    &[&conflicted],
                )
                .await
                .map_err(db_error)?;
            for row in found {
                let (key, id): (String, String) = (row.get(0), row.get(1));
                for i in 0..rows {
                    if !stored.contains(&ids[i]) && keys[i].as_deref() == Some(key.as_str()) {
                        holder[i] = Some(id.clone());
                    }
                }
            }
            // The caller delivers the first `leased` new receipts at once:
            // those stored pending (a duplicate took a leased row) are
            // leased now, before anyone else can see them.
            let new_rows: Vec<usize> = (0..rows)
                .filter(|&i| stored.contains(&ids[i]) && !done[i])
                .collect();
            let late: Vec<&str> = new_rows
                .iter()
                .take(leased)
                .filter(|&&i| !lease_row(i))
                .map(|&i| ids[i].as_str())
                .collect();
            if !late.is_empty() {
                tx.execute(
                    "UPDATE receipts SET status = 'leased', attempts = 1, due_ms = $2, leased_by = $3 WHERE id = ANY($1)",
                    &[&late, &lease_until, &self.pg.replica.as_ref()],
                )
                .await
                .map_err(db_error)?;
            }
        }
        tx.commit().await.map_err(db_error)?;
        let mut answers = Vec::with_capacity(slots.len());
        for slot in slots {
            let i = match slot {
                Slot::Row(i) if stored.contains(&ids[i]) => {
                    answers.push(Enqueued::New(ids[i].clone()));
                    continue;
                }
                Slot::Row(i) | Slot::SameAs(i) => i,
            };
            // A duplicate: of a row stored now, or of the key's holder.
            let id = if stored.contains(&ids[i]) {
                ids[i].clone()
            } else {
                holder[i].clone().ok_or_else(|| {
                    StorageError::unavailable(
                        "a receipt with the same idempotency key was being stored elsewhere and went away; send it again",
                    )
                })?
            };
            answers.push(Enqueued::Duplicate(id));
        }
        Ok(answers)
    }

    async fn lease(
        &self,
        max: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<StoredReceipt>, StorageError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(&format!(
                "WITH due AS (
                    SELECT id FROM receipts
                    WHERE status IN ('pending', 'leased') AND due_ms <= $1
                    ORDER BY due_ms, id
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED
                 )
                 UPDATE receipts r SET status = 'leased', attempts = r.attempts + 1, due_ms = $3, leased_by = $4
                 FROM due WHERE r.id = due.id
                 RETURNING {}",
                COLUMNS
                    .split(", ")
                    .map(|c| format!("r.{c}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
            .await
            .map_err(db_error)?;
        let now = now_ms as i64;
        let rows = client
            .query(
                &stmt,
                &[
                    &now,
                    &(max as i64),
                    &(now + lease_ms as i64),
                    &self.pg.replica.as_ref(),
                ],
            )
            .await
            .map_err(db_error)?;
        let mut leased = rows.iter().map(receipt).collect::<Result<Vec<_>, _>>()?;
        leased.sort_by(|a, b| (a.enqueued_at_ms, &a.id).cmp(&(b.enqueued_at_ms, &b.id)));
        Ok(leased)
    }

    /// On a connection that commits without waiting for the WAL flush
    /// (`synchronous_commit = off`): an acknowledgement the database loses
    /// in a crash only means the receipt is delivered again, which
    /// at-least-once allows, and the 202's receipt itself was flushed.
    async fn ack_many(&self, ids: Vec<String>, now_ms: u64) -> Result<(), StorageError> {
        let client = self.pg.relaxed_client().await?;
        let stmt = client
            .prepare_cached(
                // `NOT IN` rather than `IN ('pending', 'leased')`: the same
                // rows (the table's CHECK), but it does not match the
                // partial `receipts_due` index, so the plan is the primary
                // key's, not a scan of every due receipt (bench: 1,744
                // buffers against 126 for a 40-row ack).
                "UPDATE receipts SET status = 'done', finished_at_ms = $2, due_ms = NULL
                 WHERE id = ANY($1) AND status NOT IN ('done', 'dead')",
            )
            .await
            .map_err(db_error)?;
        client
            .execute(&stmt, &[&ids, &(now_ms as i64)])
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn nack(
        &self,
        id: &str,
        retry_after_ms: u64,
        error: &str,
        settled: &[SettledJob],
        now_ms: u64,
    ) -> Result<(), StorageError> {
        let due = (now_ms + retry_after_ms) as i64;
        let settled = serde_json::to_string(settled)?;
        self.pg
            .client()
            .await?
            .execute(
                "UPDATE receipts SET status = 'pending', not_before_ms = $2, due_ms = $2, last_error = $3, settled = $4
                 WHERE id = $1 AND status = 'leased'",
                &[&id, &due, &error, &settled],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn dead_letter(&self, id: &str, reason: &str, now_ms: u64) -> Result<(), StorageError> {
        self.pg
            .client()
            .await?
            .execute(
                "UPDATE receipts SET status = 'dead', last_error = $2, finished_at_ms = $3, due_ms = NULL
                 WHERE id = $1",
                &[&id, &reason, &(now_ms as i64)],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn requeue(&self, id: &str, now_ms: u64) -> Result<(), StorageError> {
        let now = now_ms as i64;
        let client = self.pg.client().await?;
        client
            .execute(
                "WITH again AS (
                    UPDATE receipts SET status = 'pending', attempts = 0, not_before_ms = $2, due_ms = $2, finished_at_ms = NULL, settled = '[]'
                    WHERE id = $1 AND status IN ('done', 'dead')
                    RETURNING id
                 )
                 SELECT pg_notify($3, '')::text FROM again",
                &[&id, &now, &CHANNEL],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn list(
        &self,
        status: ReceiptStatus,
        limit: u32,
    ) -> Result<Vec<StoredReceipt>, StorageError> {
        let client = self.pg.client().await?;
        let rows = client
            .query(
                // The status written into the text (one of four names),
                // so that the plan is the partial index of that status.
                &format!(
                    "SELECT {COLUMNS} FROM receipts WHERE status = '{}' ORDER BY enqueued_at_ms, id LIMIT $1",
                    status.as_str()
                ),
                &[&(limit as i64)],
            )
            .await
            .map_err(db_error)?;
        rows.iter().map(receipt).collect()
    }

    async fn get(&self, id: &str) -> Result<Option<StoredReceipt>, StorageError> {
        let client = self.pg.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM receipts WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(db_error)?;
        row.as_ref().map(receipt).transpose()
    }

    /// Four counts, each from its status's partial index (`receipts_due`
    /// for pending and leased, `receipts_done`, `receipts_dead`), not a
    /// scan of the table.
    async fn stats(&self) -> Result<ReceiptStats, StorageError> {
        let client = self.pg.client().await?;
        let row = client
            .query_one(
                "SELECT (SELECT count(*) FROM receipts WHERE status = 'pending'),
                        (SELECT count(*) FROM receipts WHERE status = 'leased'),
                        (SELECT count(*) FROM receipts WHERE status = 'done'),
                        (SELECT count(*) FROM receipts WHERE status = 'dead')",
                &[],
            )
            .await
            .map_err(db_error)?;
        let count = |i: usize| row.get::<_, i64>(i).max(0) as u64;
        Ok(ReceiptStats {
            pending: count(0),
            leased: count(1),
            done: count(2),
            dead: count(3),
            ..ReceiptStats::default()
        })
    }

    async fn compact(&self, before_ms: u64) -> Result<u64, StorageError> {
        let client = self.pg.client().await?;
        client
            .execute(
                // A receipt finished after it was enqueued: the redundant
                // bound on `enqueued_at_ms` lets `receipts_done` (ordered
                // by it) find the old ones without reading every done one.
                "DELETE FROM receipts WHERE status = 'done' AND enqueued_at_ms < $1 AND finished_at_ms < $1",
                &[&(before_ms as i64)],
            )
            .await
            .map_err(db_error)
    }

    fn wakeups(&self) -> Option<Arc<Notify>> {
        Some(self.wake.clone())
    }

    /// Commits from concurrent batches share WAL flushes: with one in
    /// flight, a replica's throughput is one batch per flush (2–3 ms here).
    fn concurrent_commits(&self) -> usize {
        self.commits
    }

    fn stores_done(&self) -> bool {
        true
    }

    fn patience(&self) -> std::time::Duration {
        crate::storage::PATIENCE
    }
}

fn receipt(row: &Row) -> Result<StoredReceipt, StorageError> {
    let metadata: String = row.get(3);
    let status: String = row.get(4);
    let attempts: i32 = row.get(5);
    let enqueued: i64 = row.get(6);
    let not_before: i64 = row.get(7);
    Ok(StoredReceipt {
        id: row.get(0),
        body: row.get(1),
        source: row.get(2),
        metadata: serde_json::from_str(&metadata)?,
        status: ReceiptStatus::parse(&status).ok_or_else(|| {
            StorageError::Failed(format!("a receipt has an unknown status `{status}`"))
        })?,
        attempts: attempts.max(0) as u32,
        enqueued_at_ms: enqueued.max(0) as u64,
        not_before_ms: not_before.max(0) as u64,
        last_error: row.get(8),
        settled: serde_json::from_str(row.get(9))?,
    })
}
