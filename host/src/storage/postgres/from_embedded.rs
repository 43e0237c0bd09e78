//! `microservice migrate --from-embedded`: what an embedded deployment
//! kept (its receipts, run records, job states and pending flows) copied
//! into the database, so a deployment moves from one machine's files to a
//! cluster without losing a receipt or a cron job's state.
//!
//! Idempotent: every row keeps its id, and a row whose id (or, for a
//! receipt, idempotency key) the database already holds is left as it is,
//! so running the copy twice, or after the cluster has run for a while,
//! changes nothing it already has. A job state the database already holds
//! is the cluster's, newer than the file's, and is kept. Everything goes in
//! one transaction: a copy that fails leaves the database as it was.
//!
//! It must never run beside a service on the same `DATA_DIR` (the command
//! says so): receipts that service delivers after the copy would be
//! delivered again by the cluster.

use super::{Postgres, db_error};
use crate::storage::embedded::receipts::KEY_IDEMPOTENCY;
use crate::storage::{
    JobStateRecord, PendingFlow, ReceiptStatus, RunRecord, StorageError, StoredReceipt,
};

/// Rows per statement.
const CHUNK: usize = 1000;

/// What an embedded deployment holds, read by the command.
pub struct Embedded {
    /// Pending, leased, dead and done receipts (done ones carry their
    /// idempotency keys until retention forgets them).
    pub receipts: Vec<StoredReceipt>,
    pub runs: Vec<RunRecord>,
    pub job_states: Vec<JobStateRecord>,
    pub pending_flows: Vec<PendingFlow>,
}

/// How many of each were copied, and how many the database already had.
#[derive(Debug, Default, Clone, Copy)]
pub struct Copied {
    pub receipts: (u64, u64),
    pub runs: (u64, u64),
    pub job_states: (u64, u64),
    pub pending_flows: (u64, u64),
}

impl Postgres {
    /// Copies `embedded` in, in one transaction; `now_ms` is when leased
    /// receipts become due again (their process is gone) and when done
    /// and dead ones count as finished.
    pub async fn copy_from_embedded(
        &self,
        embedded: &Embedded,
        now_ms: u64,
    ) -> Result<Copied, StorageError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(db_error)?;
        let mut copied = Copied::default();
        let now = now_ms.cast_signed();

        for chunk in embedded.receipts.chunks(CHUNK) {
            let mut cols: [Vec<String>; 7] = Default::default();
            let (mut keys, mut attempts, mut enqueued, mut not_before) =
                (vec![], vec![], vec![], vec![]);
            for r in chunk {
                let key = r
                    .metadata
                    .iter()
                    .find(|(k, _)| k == KEY_IDEMPOTENCY)
                    .map(|(_, v)| v.clone());
                let metadata: Vec<_> = r
                    .metadata
                    .iter()
                    .filter(|(k, _)| k != KEY_IDEMPOTENCY)
                    .collect();
                // A leased receipt's process is gone: it is pending again.
                let status = match r.status {
                    ReceiptStatus::Leased => ReceiptStatus::Pending,
                    s => s,
                };
                cols[0].push(r.id.clone());
                cols[1].push(r.body.clone());
                cols[2].push(r.source.clone());
                cols[3].push(serde_json::to_string(&metadata)?);
                cols[4].push(status.as_str().to_string());
                cols[5].push(r.last_error.clone().unwrap_or_default());
                cols[6].push(serde_json::to_string(&r.settled)?);
                keys.push(key);
                attempts.push(r.attempts.cast_signed());
                enqueued.push(r.enqueued_at_ms.cast_signed());
                not_before.push(r.not_before_ms.cast_signed());
            }
            let n = tx
                .execute(
                    "INSERT INTO receipts (id, body, source, metadata, idempotency_key, status, attempts, enqueued_at_ms, not_before_ms, due_ms, finished_at_ms, last_error, settled)
                     SELECT id, body, source, metadata, key, status, attempts, enqueued, not_before,
                            CASE WHEN status = 'pending' THEN not_before END,
                            CASE WHEN status IN ('done', 'dead') THEN $12::int8 END,
                            NULLIF(last_error, ''), settled
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int4[], $8::int8[], $9::int8[], $10::text[], $11::text[])
                          AS r(id, body, source, metadata, key, status, attempts, enqueued, not_before, last_error, settled)
                     ON CONFLICT DO NOTHING",
                    &[
                        &cols[0], &cols[1], &cols[2], &cols[3], &keys, &cols[4], &attempts,
                        &enqueued, &not_before, &cols[5], &cols[6], &now,
                    ],
                )
                .await
                .map_err(db_error)?;
            copied.receipts.0 += n;
            copied.receipts.1 += chunk.len() as u64 - n;
        }

        for chunk in embedded.runs.chunks(CHUNK) {
            let mut text: [Vec<String>; 5] = Default::default();
            let mut maybe: [Vec<Option<String>>; 6] = Default::default();
            let (mut exit_codes, mut durations, mut finished_ms) = (vec![], vec![], vec![]);
            for RunRecord {
                summary: r,
                log,
                state,
                input,
            } in chunk
            {
                text[0].push(r.id.clone());
                text[1].push(r.job.clone());
                text[2].push(r.trigger.clone());
                text[3].push(r.status.as_str().to_string());
                text[4].push(r.started_at.clone());
                maybe[0].push(r.reason.clone());
                maybe[1].push(r.finished_at.clone());
                maybe[2].push(log.clone());
                maybe[3].push(state.clone());
                maybe[4].push(input.clone());
                maybe[5].push(r.upstream.clone());
                exit_codes.push(r.exit_code);
                durations.push(r.duration_ms);
                finished_ms.push(r.finished_at.as_deref().and_then(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .ok()
                        .map(|t| t.timestamp_millis())
                }));
            }
            let n = tx
                .execute(
                    "INSERT INTO runs (id, job, trigger, status, started_at, reason, finished_at, log, state, input, exit_code, duration_ms, finished_ms, upstream)
                     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::int4[], $12::int8[], $13::int8[], $14::text[])
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &text[0], &text[1], &text[2], &text[3], &text[4], &maybe[0], &maybe[1],
                        &maybe[2], &maybe[3], &maybe[4], &exit_codes, &durations, &finished_ms,
                        &maybe[5],
                    ],
                )
                .await
                .map_err(db_error)?;
            copied.runs.0 += n;
            copied.runs.1 += chunk.len() as u64 - n;
        }

        for s in &embedded.job_states {
            let n = tx
                .execute(
                    "INSERT INTO job_states (job, state, run_id, updated_at) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (job) DO NOTHING",
                    &[&s.job, &s.state, &s.run_id, &s.updated_at],
                )
                .await
                .map_err(db_error)?;
            copied.job_states.0 += n;
            copied.job_states.1 += 1 - n;
        }

        for f in &embedded.pending_flows {
            // Unclaimed: the first replica to look adopts it.
            let n = tx
                .execute(
                    "INSERT INTO pending_flows (id, job, trigger, input, created_at_ms, claimed_by, upstream)
                     VALUES ($1, $2, $3, $4, $5, NULL, $6) ON CONFLICT (id) DO NOTHING",
                    &[
                        &f.id,
                        &f.job,
                        &f.trigger,
                        &serde_json::to_string(&f.input)?,
                        &now,
                        &f.upstream,
                    ],
                )
                .await
                .map_err(db_error)?;
            copied.pending_flows.0 += n;
            copied.pending_flows.1 += 1 - n;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(copied)
    }
}
