//! The PostgreSQL store's cron ticks: which replica runs each tick.
//!
//! Every replica's scheduler wakes for every tick and tries to claim it:
//! - first the job's advisory lock (`pg_try_advisory_lock`, not waiting),
//!   held on one connection for as long as the tick's run lasts, so a run
//!   of the job going on anywhere makes every other claim fail: one cron
//!   job's runs never overlap across replicas. A replica that dies drops
//!   its connection, and the lock with it.
//! - then a row in `cron_ticks`, unique per job and tick (as OpenFn's
//!   platform makes a cron job unique per period): a replica that wakes
//!   late for a tick another already ran finds the row and does not run it
//!   again.
//!
//! Rows older than a day are deleted as new ones are claimed.

use async_trait::async_trait;
use tracing::debug;

use super::{Postgres, db_error};
use crate::storage::{CronTicks, StorageError, TickClaim};

/// The advisory locks' first key: cron jobs' locks are `(CRON_LOCKS,
/// hashtext(job))` ("cron" in ASCII).
const CRON_LOCKS: i32 = 0x6372_6f6e;
/// How long a tick's row is kept.
const KEEP_TICKS_MS: i64 = 24 * 60 * 60 * 1000;

pub struct PgCronTicks {
    pg: Postgres,
}

impl PgCronTicks {
    pub(super) fn new(pg: Postgres) -> Self {
        PgCronTicks { pg }
    }
}

/// A held job lock: the connection it lives on, given back to the pool
/// once the lock is let go (or closed, if letting go fails).
struct JobLock {
    client: Option<deadpool_postgres::Object>,
    job: String,
}

impl Drop for JobLock {
    fn drop(&mut self) {
        let Some(client) = self.client.take() else {
            return;
        };
        let job = std::mem::take(&mut self.job);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // No runtime left: closing the connection lets the lock go.
            drop(deadpool_postgres::Object::take(client));
            return;
        };
        runtime.spawn(async move {
            let unlocked = client
                .query_one(
                    "SELECT pg_advisory_unlock($1::int4, hashtext($2))",
                    &[&CRON_LOCKS, &job],
                )
                .await
                .map(|r| r.get::<_, bool>(0));
            if unlocked.is_err() {
                // Never give back a connection that may still hold it.
                drop(deadpool_postgres::Object::take(client));
            }
        });
    }
}

#[async_trait]
impl CronTicks for PgCronTicks {
    async fn claim(&self, job: &str, tick_ms: i64) -> Result<Option<TickClaim>, StorageError> {
        let client = self.pg.client().await?;
        let locked: bool = client
            .query_one(
                "SELECT pg_try_advisory_lock($1::int4, hashtext($2))",
                &[&CRON_LOCKS, &job],
            )
            .await
            .map_err(db_error)?
            .get(0);
        if !locked {
            debug!(job, "a run of this cron job is going on elsewhere");
            return Ok(None);
        }
        // From here the lock is let go however this ends.
        let lock = JobLock {
            client: Some(client),
            job: job.to_string(),
        };
        let client = lock.client.as_ref().expect("just set");
        let claimed = client
            .execute(
                "INSERT INTO cron_ticks (job, tick_ms, claimed_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&job, &tick_ms, &crate::clock::now_ms().cast_signed()],
            )
            .await
            .map_err(db_error)?;
        if claimed == 0 {
            return Ok(None);
        }
        client
            .execute(
                "DELETE FROM cron_ticks WHERE job = $1 AND tick_ms < $2",
                &[&job, &(tick_ms - KEEP_TICKS_MS)],
            )
            .await
            .map_err(db_error)?;
        Ok(Some(TickClaim::holding(lock)))
    }
}
