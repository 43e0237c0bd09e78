//! The PostgreSQL store's run records and job states: the `runs` and
//! `job_states` tables, shared by every replica, so the API and the
//! dashboard of any replica show the whole cluster's runs, and a cron job's
//! state is one chain wherever its runs ran.
//!
//! A job's state is read from its last successful run (`job_state`), so a
//! run's end and its job's new state are one write and never disagree;
//! `job_states` only holds states copied from an embedded deployment. Runs left `running` by a replica
//! that died are closed as interrupted once it is seen to be gone (see
//! `mod.rs`), as the embedded store closes them on restart.

use async_trait::async_trait;
use serde_json::Value;
use tokio_postgres::Row;

use super::{Postgres, db_error};
use crate::storage::{
    FinishedRun, JobHealth, JobRuns, LastRun, PendingFlow, RunDetail, RunEnd, RunFilter, RunStart,
    RunStatus, RunSummary, Runs, StorageError,
};

pub struct PgRuns {
    pg: Postgres,
}

impl PgRuns {
    pub(super) fn new(pg: Postgres) -> Self {
        PgRuns { pg }
    }
}

/// The columns of a [`RunSummary`], in the order `summary` reads them.
const SUMMARY: &str =
    "id, job, trigger, status, exit_code, reason, started_at, finished_at, duration_ms, upstream";

/// Unix ms of an RFC 3339 time, as the dispatcher writes them.
fn millis(rfc3339: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp_millis())
}

#[async_trait]
impl Runs for PgRuns {
    async fn start_run(&self, start: RunStart<'_>) -> Result<(), StorageError> {
        let input = serde_json::to_string(start.input)?;
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO runs (id, job, trigger, status, started_at, input, replica, upstream) VALUES ($1, $2, $3, 'running', $4, $5, $6, $7)",
            )
            .await
            .map_err(db_error)?;
        client
            .execute(
                &stmt,
                &[
                    &start.id,
                    &start.job,
                    &start.trigger,
                    &start.started_at,
                    &input,
                    &self.pg.replica.as_ref(),
                    &start.upstream,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(())
    }

    async fn finish_run(&self, end: RunEnd<'_>) -> Result<(), StorageError> {
        let log = serde_json::to_string(end.log)?;
        let state = end.state.map(serde_json::to_string).transpose()?;
        let finished_ms = millis(end.finished_at);
        let mut client = self.pg.client().await?;
        // `finished_seq` orders runs' ends in commit order across replicas:
        // a job's state is its last successful run's (see `job_state`).
        let update = "UPDATE runs SET status = $2, exit_code = $3, reason = $4, finished_at = $5, finished_ms = $6, duration_ms = $7, log = $8, state = $9, finished_seq = nextval('runs_finished_seq') WHERE id = $1";
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 9] = [
            &end.id,
            &end.status.as_str(),
            &end.exit_code,
            &end.reason,
            &end.finished_at,
            &finished_ms,
            &end.duration_ms,
            &log,
            &state,
        ];
        if end.flows.is_empty() && end.settles.is_none() {
            // A run's end (and with it its job's state): one statement, no
            // transaction to open.
            let stmt = client.prepare_cached(update).await.map_err(db_error)?;
            client.execute(&stmt, &params).await.map_err(db_error)?;
            return Ok(());
        }
        let tx = client.transaction().await.map_err(db_error)?;
        let stmt = tx.prepare_cached(update).await.map_err(db_error)?;
        tx.execute(&stmt, &params).await.map_err(db_error)?;
        if !end.flows.is_empty() {
            // One statement for every flow the run makes due (fan-out).
            let (mut ids, mut jobs, mut triggers, mut inputs, mut upstreams) =
                (vec![], vec![], vec![], vec![], vec![]);
            for f in end.flows {
                ids.push(f.id.as_str());
                jobs.push(f.job.as_str());
                triggers.push(f.trigger.as_str());
                inputs.push(serde_json::to_string(&f.input)?);
                upstreams.push(f.upstream.as_deref());
            }
            let now = crate::clock::now_ms().cast_signed();
            let stmt = tx
                .prepare_cached(
                    "INSERT INTO pending_flows (id, job, trigger, input, created_at_ms, claimed_by, upstream)
                     SELECT id, job, trigger, input, $5, $6, upstream FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $7::text[]) AS f(id, job, trigger, input, upstream)",
                )
                .await
                .map_err(db_error)?;
            tx.execute(
                &stmt,
                &[
                    &ids,
                    &jobs,
                    &triggers,
                    &inputs,
                    &now,
                    &self.pg.replica.as_ref(),
                    &upstreams,
                ],
            )
            .await
            .map_err(db_error)?;
        }
        if let Some(settles) = end.settles {
            let stmt = tx
                .prepare_cached("DELETE FROM pending_flows WHERE id = $1")
                .await
                .map_err(db_error)?;
            tx.execute(&stmt, &[&settles]).await.map_err(db_error)?;
        }
        tx.commit().await.map_err(db_error)?;
        Ok(())
    }

    /// Pending flows released by replicas seen gone (see `hand_on` in
    /// `mod.rs`), claimed for this replica with `FOR UPDATE SKIP LOCKED`
    /// so that two replicas asking at once adopt different ones.
    async fn adopt_flows(&self, max: u32) -> Result<Vec<PendingFlow>, StorageError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(
                "UPDATE pending_flows SET claimed_by = $1 WHERE id IN (
                    SELECT id FROM pending_flows WHERE claimed_by IS NULL
                    ORDER BY created_at_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED
                 ) RETURNING id, job, trigger, input, upstream",
            )
            .await
            .map_err(db_error)?;
        let rows = client
            .query(&stmt, &[&self.pg.replica.as_ref(), &i64::from(max)])
            .await
            .map_err(db_error)?;
        let mut flows = rows
            .iter()
            .map(|r| {
                Ok(PendingFlow {
                    id: r.get(0),
                    job: r.get(1),
                    trigger: r.get(2),
                    input: serde_json::from_str(r.get::<_, &str>(3))?,
                    upstream: r.get(4),
                })
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        flows.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(flows)
    }

    /// The final state of the job's last successful run to end here (by
    /// `finished_seq`: commit order, whichever replica ran it), else what
    /// `migrate --from-embedded` copied into `job_states`. Reading the
    /// runs, rather than one row per job that every successful run
    /// updates, keeps a busy job's runs from queueing on that row's lock.
    async fn job_state(&self, job: &str) -> Result<Option<Value>, StorageError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(
                "SELECT COALESCE(
                    (SELECT state FROM runs
                     WHERE job = $1 AND status = 'success' AND state IS NOT NULL AND finished_seq IS NOT NULL
                     ORDER BY finished_seq DESC LIMIT 1),
                    (SELECT state FROM job_states WHERE job = $1))",
            )
            .await
            .map_err(db_error)?;
        let row = client.query_one(&stmt, &[&job]).await.map_err(db_error)?;
        Ok(row
            .get::<_, Option<&str>>(0)
            .map(serde_json::from_str::<Value>)
            .transpose()?)
    }

    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunSummary>, StorageError> {
        let client = self.pg.client().await?;
        // The runs one run started are found by their own (partial) index,
        // which an `IS NULL OR` on the parameter would keep the planner from.
        let upstream = if filter.upstream.is_some() {
            "upstream = $4"
        } else {
            "$4::text IS NULL"
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {SUMMARY} FROM runs
                     WHERE ($1::text IS NULL OR job = $1) AND ($2::text IS NULL OR status = $2) AND {upstream}
                     ORDER BY id DESC LIMIT $3"
                ),
                &[
                    &filter.job,
                    &filter.status.map(RunStatus::as_str),
                    &(filter.limit as i64),
                    &filter.upstream,
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(rows.iter().map(summary).collect())
    }

    async fn finished_since(&self, since: &str) -> Result<Vec<FinishedRun>, StorageError> {
        let since = millis(since)
            .ok_or_else(|| StorageError::Failed(format!("`{since}` is not an RFC 3339 time")))?;
        let client = self.pg.client().await?;
        let rows = client
            .query(
                "SELECT finished_ms / 60000, status = 'success', COALESCE(duration_ms, 0)
                 FROM runs WHERE finished_ms >= $1",
                &[&since],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| FinishedRun {
                minute: r.get(0),
                success: r.get(1),
                duration_ms: r.get(2),
            })
            .collect())
    }

    /// Served by the `finished_ms` index; one query, grouped by job.
    async fn runs_by_job_since(&self, since: &str) -> Result<Vec<JobRuns>, StorageError> {
        let since = millis(since)
            .ok_or_else(|| StorageError::Failed(format!("`{since}` is not an RFC 3339 time")))?;
        let client = self.pg.client().await?;
        let rows = client
            .query(
                "SELECT job, COUNT(*), COUNT(*) FILTER (WHERE status = 'success') FROM runs
                 WHERE finished_ms >= $1 AND status <> 'running' GROUP BY job ORDER BY job",
                &[&since],
            )
            .await
            .map_err(db_error)?;
        Ok(rows
            .iter()
            .map(|r| JobRuns {
                job: r.get(0),
                finished: r.get::<_, i64>(1) as u64,
                succeeded: r.get::<_, i64>(2) as u64,
            })
            .collect())
    }

    async fn job_health(
        &self,
        jobs: Vec<String>,
        recent: u32,
    ) -> Result<Vec<JobHealth>, StorageError> {
        let client = self.pg.client().await?;
        // One round trip for every job: its newest run, and the outcomes of
        // its last `recent` finished ones.
        let rows = client
            .query(
                "SELECT j.job, l.id, l.status, l.started_at, l.finished_at,
                        (SELECT count(*) FROM (SELECT 1 FROM runs r WHERE r.job = j.job AND r.status <> 'running' ORDER BY r.id DESC LIMIT $2) f),
                        (SELECT count(*) FROM (SELECT status FROM runs r WHERE r.job = j.job AND r.status <> 'running' ORDER BY r.id DESC LIMIT $2) s WHERE s.status = 'success')
                 FROM UNNEST($1::text[]) AS j(job)
                 LEFT JOIN LATERAL (SELECT id, status, started_at, finished_at FROM runs r WHERE r.job = j.job ORDER BY r.id DESC LIMIT 1) l ON true",
                &[&jobs, &(recent as i64)],
            )
            .await
            .map_err(db_error)?;
        let mut by_job: std::collections::HashMap<String, JobHealth> = rows
            .iter()
            .map(|r| {
                let id: Option<String> = r.get(1);
                let last_run = id.map(|id| LastRun {
                    id,
                    status: RunStatus::parse(r.get(2)).unwrap_or(RunStatus::Failure),
                    started_at: r.get(3),
                    finished_at: r.get(4),
                });
                let (finished, succeeded): (i64, i64) = (r.get(5), r.get(6));
                (
                    r.get(0),
                    JobHealth {
                        last_run,
                        finished: finished as u64,
                        succeeded: succeeded as u64,
                    },
                )
            })
            .collect();
        Ok(jobs
            .iter()
            .map(|j| by_job.remove(j).unwrap_or_default())
            .collect())
    }

    async fn run_input(&self, id: &str) -> Result<Option<(String, String, Value)>, StorageError> {
        let client = self.pg.client().await?;
        let row = client
            .query_opt("SELECT job, trigger, input FROM runs WHERE id = $1", &[&id])
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let input: Option<String> = row.get(2);
        Ok(match input {
            Some(input) => Some((row.get(0), row.get(1), serde_json::from_str(&input)?)),
            None => None,
        })
    }

    async fn run(&self, id: &str) -> Result<Option<RunDetail>, StorageError> {
        let client = self.pg.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {SUMMARY}, log, state FROM runs WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(db_error)?;
        let Some(row) = row else { return Ok(None) };
        let log: Option<String> = row.get(10);
        let state: Option<String> = row.get(11);
        Ok(Some(RunDetail {
            summary: summary(&row),
            log: log
                .map(|l| serde_json::from_str(&l))
                .transpose()?
                .unwrap_or_default(),
            state: state.map(|s| serde_json::from_str(&s)).transpose()?,
        }))
    }
}

fn summary(r: &Row) -> RunSummary {
    RunSummary {
        id: r.get(0),
        job: r.get(1),
        trigger: r.get(2),
        status: RunStatus::parse(r.get(3)).unwrap_or(RunStatus::Failure),
        exit_code: r.get(4),
        reason: r.get(5),
        started_at: r.get(6),
        finished_at: r.get(7),
        duration_ms: r.get(8),
        upstream: r.get(9),
    }
}
