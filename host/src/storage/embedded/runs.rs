//! The embedded store's run records and job states: one SQLite file,
//! `DATA_DIR/microservice.db`, for one process.
//!
//! A job's state is its last successful final state (what cron runs start
//! from, and what `/api/jobs/{name}/state` shows); a run record is what
//! happened to one run, with its log. Calls run on tokio's blocking pool
//! behind one connection: SQLite must never block a runtime worker.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::storage::{
    FinishedRun, JobHealth, JobRuns, JobStateRecord, LastRun, PendingFlow, RunDetail, RunEnd,
    RunFilter, RunRecord, RunStart, RunStatus, RunSummary, Runs, StorageError,
};

/// What can go wrong inside this file, before it becomes a [`StorageError`].
#[derive(Debug, thiserror::Error)]
enum SqliteError {
    #[error("run store (SQLite): {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("run store: a stored value is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("run store: background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl From<SqliteError> for StorageError {
    fn from(e: SqliteError) -> Self {
        StorageError::Failed(e.to_string())
    }
}

#[derive(Clone)]
pub struct SqliteRuns {
    conn: Arc<Mutex<Connection>>,
    /// The pending flows the last process left, read at open: this
    /// process's to carry out, handed over by the first `adopt_flows`.
    left: Arc<Mutex<Vec<PendingFlow>>>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    exit_code INTEGER,
    reason TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    duration_ms INTEGER,
    log TEXT,
    state TEXT,
    input TEXT,
    upstream TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job, id);
CREATE INDEX IF NOT EXISTS runs_by_finished ON runs (finished_at);
CREATE TABLE IF NOT EXISTS job_state (
    job TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_flows (
    id TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    trigger TEXT NOT NULL,
    input TEXT NOT NULL,
    upstream TEXT
);
";

/// Columns added since the first schema, added to a file that lacks them.
const ADDED_COLUMNS: [(&str, &str); 3] = [
    ("runs", "input"),
    ("runs", "upstream"),
    ("pending_flows", "upstream"),
];

/// Made once every column exists: the runs a run's end started (its flows).
const INDEXES: &str =
    "CREATE INDEX IF NOT EXISTS runs_by_upstream ON runs (upstream) WHERE upstream IS NOT NULL;";

/// The columns of a [`RunSummary`], in the order `summary_from_row` reads them.
const SUMMARY: &str =
    "id, job, trigger, status, exit_code, reason, started_at, finished_at, duration_ms, upstream";

impl SqliteRuns {
    /// Opens (or creates) the store. Runs left `running` by a process that
    /// died are closed as failures, so no record claims to run forever.
    pub fn open(path: &Path) -> Result<SqliteRuns, StorageError> {
        Self::open_sqlite(path).map_err(StorageError::from)
    }

    /// Opens an existing store to read only (a command reading a running
    /// service's figures): no schema change, no run closed; `None` when
    /// there is no store yet.
    pub fn open_read_only(path: &Path) -> Result<Option<SqliteRuns>, StorageError> {
        if !path.exists() {
            return Ok(None);
        }
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(SqliteError::from)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(SqliteError::from)?;
        Ok(Some(SqliteRuns {
            conn: Arc::new(Mutex::new(conn)),
            // A reader adopts no flow: they are the service's to carry out.
            left: Arc::default(),
        }))
    }

    fn open_sqlite(path: &Path) -> Result<SqliteRuns, SqliteError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000;",
        )?;
        conn.execute_batch(SCHEMA)?;
        for (table, column) in ADDED_COLUMNS {
            let has: bool = conn
                .prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?
                .exists([table, column])?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} TEXT"))?;
            }
        }
        conn.execute_batch(INDEXES)?;
        conn.execute(
            "UPDATE runs SET status = 'failure', reason = 'interrupted: the service stopped during the run' WHERE status = 'running'",
            [],
        )?;
        let left = conn
            .prepare("SELECT id, job, trigger, input, upstream FROM pending_flows ORDER BY id")?
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get::<_, String>(3)?,
                    r.get(4)?,
                ))
            })?
            .map(|row| {
                let (id, job, trigger, input, upstream) = row?;
                let input = serde_json::from_str(&input)?;
                Ok(PendingFlow {
                    id,
                    job,
                    trigger,
                    input,
                    upstream,
                })
            })
            .collect::<Result<Vec<_>, SqliteError>>()?;
        Ok(SqliteRuns {
            conn: Arc::new(Mutex::new(conn)),
            left: Arc::new(Mutex::new(left)),
        })
    }

    /// Everything the file holds, for copying it into another store: every
    /// run record (those left running already closed by `open`), every
    /// job's state, and the pending flows the last process left.
    pub async fn export(
        &self,
    ) -> Result<(Vec<RunRecord>, Vec<JobStateRecord>, Vec<PendingFlow>), StorageError> {
        let flows = self.left.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let (runs, states) = self
            .with(|c| {
                let runs = c
                    .prepare(&format!(
                        "SELECT {SUMMARY}, log, state, input FROM runs ORDER BY id"
                    ))?
                    .query_map([], |r| {
                        Ok(RunRecord {
                            summary: summary_from_row(r)?,
                            log: r.get(10)?,
                            state: r.get(11)?,
                            input: r.get(12)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let states = c
                    .prepare("SELECT job, state, run_id, updated_at FROM job_state ORDER BY job")?
                    .query_map([], |r| {
                        Ok(JobStateRecord {
                            job: r.get(0)?,
                            state: r.get(1)?,
                            run_id: r.get(2)?,
                            updated_at: r.get(3)?,
                        })
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((runs, states))
            })
            .await?;
        Ok((runs, states, flows))
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(SqliteError::from)?
        .map_err(StorageError::from)
    }
}

#[async_trait]
impl Runs for SqliteRuns {
    /// Records a run's start with its input state (no `configuration`), so it can be retried.
    async fn start_run(&self, start: RunStart<'_>) -> Result<(), StorageError> {
        let (id, job, trigger, started_at) = (
            start.id.to_string(),
            start.job.to_string(),
            start.trigger.to_string(),
            start.started_at.to_string(),
        );
        let upstream = start.upstream.map(str::to_string);
        let input = serde_json::to_string(start.input)?;
        self.with(move |c| {
            c.execute(
                "INSERT INTO runs (id, job, trigger, status, started_at, input, upstream) VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6)",
                params![id, job, trigger, started_at, input, upstream],
            )?;
            Ok(())
        })
        .await
    }

    /// Records the end of a run and, when it succeeded, the job's new state,
    /// in one transaction so the two never disagree.
    async fn finish_run(&self, end: RunEnd<'_>) -> Result<(), StorageError> {
        let log = serde_json::to_string(end.log)?;
        let state = end.state.map(serde_json::to_string).transpose()?;
        let (id, job, reason, finished_at) = (
            end.id.to_string(),
            end.job.to_string(),
            end.reason.map(str::to_string),
            end.finished_at.to_string(),
        );
        let (status, exit_code, duration_ms) = (end.status, end.exit_code, end.duration_ms);
        let flows = end
            .flows
            .iter()
            .map(|f| {
                Ok((
                    f.id.clone(),
                    f.job.clone(),
                    f.trigger.clone(),
                    serde_json::to_string(&f.input)?,
                    f.upstream.clone(),
                ))
            })
            .collect::<Result<Vec<_>, serde_json::Error>>()?;
        let settles = end.settles.map(str::to_string);
        self.with(move |c| {
            let tx = c.transaction()?;
            for (id, job, trigger, input, upstream) in &flows {
                tx.execute(
                    "INSERT INTO pending_flows (id, job, trigger, input, upstream) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, job, trigger, input, upstream],
                )?;
            }
            if let Some(settles) = &settles {
                tx.execute("DELETE FROM pending_flows WHERE id = ?1", [settles])?;
            }
            tx.execute(
                "UPDATE runs SET status = ?2, exit_code = ?3, reason = ?4, finished_at = ?5, duration_ms = ?6, log = ?7, state = ?8 WHERE id = ?1",
                params![id, status.as_str(), exit_code, reason, finished_at, duration_ms, log, state],
            )?;
            if let (RunStatus::Success, Some(state)) = (status, &state) {
                tx.execute(
                    "INSERT INTO job_state (job, state, run_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (job) DO UPDATE SET state = excluded.state, run_id = excluded.run_id, updated_at = excluded.updated_at",
                    params![job, state, id, finished_at],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// What the last process left, once; the rest of this process's pending
    /// flows are its own, started as they are written.
    async fn adopt_flows(&self, max: u32) -> Result<Vec<PendingFlow>, StorageError> {
        let mut left = self.left.lock().unwrap_or_else(|p| p.into_inner());
        let n = left.len().min(max as usize);
        Ok(left.drain(..n).collect())
    }

    /// The job's last successful final state.
    async fn job_state(&self, job: &str) -> Result<Option<Value>, StorageError> {
        let job = job.to_string();
        self.with(move |c| {
            let text: Option<String> = c
                .query_row("SELECT state FROM job_state WHERE job = ?1", [job], |r| {
                    r.get(0)
                })
                .optional()?;
            Ok(text.map(|t| serde_json::from_str(&t)).transpose()?)
        })
        .await
    }

    /// Newest first.
    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunSummary>, StorageError> {
        self.with(move |c| {
            // The runs one run started are found by their own index, which
            // an `IS NULL OR` on the parameter would keep the planner from.
            let upstream = if filter.upstream.is_some() {
                "upstream = ?4"
            } else {
                "?4 IS NULL"
            };
            let mut stmt = c.prepare(&format!(
                "SELECT {SUMMARY} FROM runs
                 WHERE (?1 IS NULL OR job = ?1) AND (?2 IS NULL OR status = ?2) AND {upstream}
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(
                params![
                    filter.job,
                    filter.status.map(RunStatus::as_str),
                    filter.limit as i64,
                    filter.upstream
                ],
                summary_from_row,
            )?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Runs that finished at or after `since` (RFC 3339, as the records hold
    /// it), by the minute they finished in. Served by the `finished_at` index.
    async fn finished_since(&self, since: &str) -> Result<Vec<FinishedRun>, StorageError> {
        let since = since.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT CAST(strftime('%s', finished_at) AS INTEGER) / 60, status = 'success', COALESCE(duration_ms, 0)
                 FROM runs WHERE finished_at >= ?1",
            )?;
            let rows = stmt.query_map([since], |r| {
                Ok(FinishedRun {
                    minute: r.get(0)?,
                    success: r.get(1)?,
                    duration_ms: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// Each job's newest run and how many of its last `recent` finished runs
    /// succeeded, in the order of `jobs`; one blocking trip for all of them.
    async fn job_health(
        &self,
        jobs: Vec<String>,
        recent: u32,
    ) -> Result<Vec<JobHealth>, StorageError> {
        self.with(move |c| {
            let mut last = c.prepare_cached(
                "SELECT id, status, started_at, finished_at FROM runs WHERE job = ?1 ORDER BY id DESC LIMIT 1",
            )?;
            let mut rate = c.prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(status = 'success'), 0) FROM
                 (SELECT status FROM runs WHERE job = ?1 AND status != 'running' ORDER BY id DESC LIMIT ?2)",
            )?;
            let mut out = Vec::with_capacity(jobs.len());
            for job in &jobs {
                let last_run = last
                    .query_row([job], |r| {
                        let status: String = r.get(1)?;
                        Ok(LastRun {
                            id: r.get(0)?,
                            status: RunStatus::parse(&status).unwrap_or(RunStatus::Failure),
                            started_at: r.get(2)?,
                            finished_at: r.get(3)?,
                        })
                    })
                    .optional()?;
                let (finished, succeeded): (i64, i64) =
                    rate.query_row(params![job, recent], |r| Ok((r.get(0)?, r.get(1)?)))?;
                out.push(JobHealth {
                    last_run,
                    finished: finished as u64,
                    succeeded: succeeded as u64,
                });
            }
            Ok(out)
        })
        .await
    }

    /// Served by the `finished_at` index; one pass, grouped by job.
    async fn runs_by_job_since(&self, since: &str) -> Result<Vec<JobRuns>, StorageError> {
        let since = since.to_string();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT job, COUNT(*), COALESCE(SUM(status = 'success'), 0) FROM runs
                 WHERE finished_at >= ?1 AND status != 'running' GROUP BY job ORDER BY job",
            )?;
            let rows = stmt.query_map([since], |r| {
                Ok(JobRuns {
                    job: r.get(0)?,
                    finished: r.get::<_, i64>(1)? as u64,
                    succeeded: r.get::<_, i64>(2)? as u64,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// A run's job, trigger and input state, for running it again.
    async fn run_input(&self, id: &str) -> Result<Option<(String, String, Value)>, StorageError> {
        let id = id.to_string();
        self.with(move |c| {
            let row: Option<(String, String, Option<String>)> = c
                .query_row(
                    "SELECT job, trigger, input FROM runs WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            Ok(match row {
                Some((job, trigger, Some(input))) => {
                    Some((job, trigger, serde_json::from_str(&input)?))
                }
                _ => None,
            })
        })
        .await
    }

    async fn run(&self, id: &str) -> Result<Option<RunDetail>, StorageError> {
        let id = id.to_string();
        self.with(move |c| {
            let row = c
                .query_row(
                    &format!("SELECT {SUMMARY}, log, state FROM runs WHERE id = ?1"),
                    [id],
                    |r| {
                        Ok((
                            summary_from_row(r)?,
                            r.get::<_, Option<String>>(10)?,
                            r.get::<_, Option<String>>(11)?,
                        ))
                    },
                )
                .optional()?;
            let Some((summary, log, state)) = row else {
                return Ok(None);
            };
            Ok(Some(RunDetail {
                summary,
                log: log
                    .map(|l| serde_json::from_str(&l))
                    .transpose()?
                    .unwrap_or_default(),
                state: state.map(|s| serde_json::from_str(&s)).transpose()?,
            }))
        })
        .await
    }
}

fn summary_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunSummary> {
    let status: String = r.get(3)?;
    Ok(RunSummary {
        id: r.get(0)?,
        job: r.get(1)?,
        trigger: r.get(2)?,
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failure),
        exit_code: r.get(4)?,
        reason: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        duration_ms: r.get(8)?,
        upstream: r.get(9)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn start<'a>(
        id: &'a str,
        job: &'a str,
        trigger: &'a str,
        started_at: &'a str,
        input: &'a Value,
    ) -> RunStart<'a> {
        RunStart {
            id,
            job,
            trigger,
            started_at,
            input,
            upstream: None,
        }
    }

    #[tokio::test]
    async fn success_updates_job_state_and_failure_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteRuns::open(&dir.path().join("s.db")).unwrap();
        store
            .start_run(start("01", "j", "t", "2026-01-01T00:00:00Z", &json!({})))
            .await
            .unwrap();
        let s = json!({"count": 1});
        let end = |id, status, state| RunEnd {
            id,
            job: "j",
            status,
            exit_code: Some(0),
            reason: None,
            finished_at: "2026-01-01T00:00:01Z",
            duration_ms: 5,
            log: &[],
            state,
            flows: &[],
            settles: None,
        };
        store
            .finish_run(end("01", RunStatus::Success, Some(&s)))
            .await
            .unwrap();
        store
            .start_run(start("02", "j", "t", "2026-01-01T00:00:02Z", &json!({})))
            .await
            .unwrap();
        store
            .finish_run(end("02", RunStatus::Failure, None))
            .await
            .unwrap();
        assert_eq!(store.job_state("j").await.unwrap(), Some(s));
        let runs = store
            .list_runs(RunFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["02", "01"]
        );
        let failed = store
            .list_runs(RunFilter {
                status: Some(RunStatus::Failure),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(failed.len(), 1);
    }

    #[tokio::test]
    async fn finished_runs_by_minute_and_job_health() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteRuns::open(&dir.path().join("s.db")).unwrap();
        let runs = [
            (
                "01",
                "a",
                RunStatus::Success,
                "2026-01-01T00:00:59.999Z",
                10,
            ),
            (
                "02",
                "a",
                RunStatus::Failure,
                "2026-01-01T00:01:00.000Z",
                30,
            ),
            (
                "03",
                "a",
                RunStatus::Success,
                "2026-01-01T00:01:30.500Z",
                20,
            ),
        ];
        for (id, job, status, finished_at, duration_ms) in runs {
            store
                .start_run(start(id, job, "t", "2026-01-01T00:00:00.000Z", &json!({})))
                .await
                .unwrap();
            store
                .finish_run(RunEnd {
                    id,
                    job,
                    status,
                    exit_code: Some(0),
                    reason: None,
                    finished_at,
                    duration_ms,
                    log: &[],
                    state: None,
                    flows: &[],
                    settles: None,
                })
                .await
                .unwrap();
        }
        store
            .start_run(start(
                "04",
                "a",
                "t",
                "2026-01-01T00:02:00.000Z",
                &json!({}),
            ))
            .await
            .unwrap();

        let since = store
            .finished_since("2026-01-01T00:01:00.000Z")
            .await
            .unwrap();
        let mut got: Vec<_> = since
            .iter()
            .map(|r| (r.minute, r.success, r.duration_ms))
            .collect();
        got.sort();
        let minute = 1_767_225_600 / 60 + 1;
        assert_eq!(got, [(minute, false, 30), (minute, true, 20)]);

        let health = store
            .job_health(vec!["a".into(), "b".into()], 2)
            .await
            .unwrap();
        let last = health[0].last_run.as_ref().unwrap();
        assert_eq!((last.id.as_str(), last.status), ("04", RunStatus::Running));
        // The last two finished runs: 03 succeeded, 02 failed.
        assert_eq!((health[0].finished, health[0].succeeded), (2, 1));
        assert!(health[1].last_run.is_none());
        assert_eq!((health[1].finished, health[1].succeeded), (0, 0));

        // The library's figures: the running 04 is not counted, 01 is too old.
        let figures = store
            .runs_by_job_since("2026-01-01T00:01:00.000Z")
            .await
            .unwrap();
        let a = JobRuns {
            job: "a".into(),
            finished: 2,
            succeeded: 1,
        };
        assert_eq!(figures, [a]);
    }

    /// A flow made due by a run's end and not carried out before the
    /// process stopped is adopted once by the next; carrying it out (its
    /// run's end) forgets it.
    #[tokio::test]
    async fn pending_flows_outlive_the_process_until_their_run_ends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let flow = PendingFlow {
            id: "f1".into(),
            job: "next".into(),
            trigger: "after".into(),
            input: json!({"data": {"n": 1}}),
            upstream: Some("01".into()),
        };
        let end = |id, flows, settles| RunEnd {
            id,
            job: "j",
            status: RunStatus::Success,
            exit_code: Some(0),
            reason: None,
            finished_at: "2026-01-01T00:00:01Z",
            duration_ms: 5,
            log: &[],
            state: None,
            flows,
            settles,
        };
        let first = SqliteRuns::open(&path).unwrap();
        assert!(first.adopt_flows(10).await.unwrap().is_empty());
        first
            .start_run(start("01", "j", "t", "now", &json!({})))
            .await
            .unwrap();
        first
            .finish_run(end("01", std::slice::from_ref(&flow), None))
            .await
            .unwrap();
        drop(first);

        let second = SqliteRuns::open(&path).unwrap();
        assert_eq!(
            second.adopt_flows(10).await.unwrap(),
            std::slice::from_ref(&flow)
        );
        assert!(
            second.adopt_flows(10).await.unwrap().is_empty(),
            "adopted once"
        );
        second
            .start_run(RunStart {
                upstream: Some("01"),
                ..start("02", "next", "after", "now", &json!({}))
            })
            .await
            .unwrap();
        second.finish_run(end("02", &[], Some("f1"))).await.unwrap();
        // The flow's run names the run that made it due, and is found by it.
        let started = second
            .list_runs(RunFilter {
                upstream: Some("01".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(started.len(), 1, "{started:?}");
        assert_eq!(started[0].id, "02");
        assert_eq!(started[0].upstream.as_deref(), Some("01"));
        let detail = second.run("02").await.unwrap().unwrap();
        assert_eq!(detail.summary.upstream.as_deref(), Some("01"));
        assert_eq!(
            second.run("01").await.unwrap().unwrap().summary.upstream,
            None
        );
        drop(second);
        let third = SqliteRuns::open(&path).unwrap();
        assert!(third.adopt_flows(10).await.unwrap().is_empty());
    }

    /// A file written before runs kept their upstream run gains the
    /// columns (empty for the runs it has) and keeps its pending flows.
    #[tokio::test]
    async fn a_file_from_before_upstream_runs_is_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE runs (id TEXT PRIMARY KEY, job TEXT NOT NULL, trigger TEXT NOT NULL,
                    status TEXT NOT NULL, exit_code INTEGER, reason TEXT, started_at TEXT NOT NULL,
                    finished_at TEXT, duration_ms INTEGER, log TEXT, state TEXT, input TEXT);
                 CREATE TABLE pending_flows (id TEXT PRIMARY KEY, job TEXT NOT NULL,
                    trigger TEXT NOT NULL, input TEXT NOT NULL);
                 INSERT INTO runs (id, job, trigger, status, started_at) VALUES ('01', 'j', 't', 'success', 'now');
                 INSERT INTO pending_flows VALUES ('f1', 'next', 'after', '{}');",
            )
            .unwrap();
        }
        let store = SqliteRuns::open(&path).unwrap();
        assert_eq!(
            store.run("01").await.unwrap().unwrap().summary.upstream,
            None
        );
        let left = store.adopt_flows(10).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].upstream, None);
        let (runs, _, _) = store.export().await.unwrap();
        assert_eq!(runs[0].summary.id, "01");
    }

    #[tokio::test]
    async fn reopening_closes_interrupted_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        SqliteRuns::open(&path)
            .unwrap()
            .start_run(start("01", "j", "t", "now", &json!({})))
            .await
            .unwrap();
        let run = SqliteRuns::open(&path)
            .unwrap()
            .run("01")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(run.summary.status, RunStatus::Failure);
        assert!(run.summary.reason.unwrap().contains("interrupted"));
    }
}
