//! The PostgreSQL store's trigger plugin leases: the `trigger_leases`
//! table, one row per plugin naming the replica that polls it and until
//! when. Every replica loads the same plugins and wakes on the same
//! schedule; before each poll it takes or renews the lease, and only the
//! holder polls, so a file-drop folder on shared storage is read once. A
//! holder that dies stops renewing, and the first replica to ask after its
//! lease has lapsed takes over.

use async_trait::async_trait;

use super::{Postgres, db_error};
use crate::storage::{StorageError, TriggerLeases};

pub struct PgTriggerLeases {
    pg: Postgres,
}

impl PgTriggerLeases {
    pub(super) fn new(pg: Postgres) -> Self {
        PgTriggerLeases { pg }
    }
}

#[async_trait]
impl TriggerLeases for PgTriggerLeases {
    /// One statement: insert the row, or take it over when it is this
    /// replica's or has lapsed; a row held by another is left alone (no
    /// row comes back).
    async fn hold(&self, plugin: &str, until_ms: u64, now_ms: u64) -> Result<bool, StorageError> {
        let client = self.pg.client().await?;
        let stmt = client
            .prepare_cached(
                "INSERT INTO trigger_leases (plugin, holder, held_until_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (plugin) DO UPDATE SET holder = excluded.holder, held_until_ms = excluded.held_until_ms
                 WHERE trigger_leases.holder = excluded.holder OR trigger_leases.held_until_ms < $4
                 RETURNING 1",
            )
            .await
            .map_err(db_error)?;
        let row = client
            .query_opt(
                &stmt,
                &[
                    &plugin,
                    &self.pg.replica.as_ref(),
                    &until_ms.cast_signed(),
                    &now_ms.cast_signed(),
                ],
            )
            .await
            .map_err(db_error)?;
        Ok(row.is_some())
    }
}
