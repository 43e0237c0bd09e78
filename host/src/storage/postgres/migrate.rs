//! Schema migrations: the SQL files in `migrations/` (named `V<n>__<what>.sql`),
//! embedded in the binary and run in order by refinery, which records what
//! it applied in `refinery_schema_history`.
//!
//! Replicas starting together must not migrate together: each takes one
//! session-level advisory lock first, so one migrates and the others wait
//! for it, then find nothing left to do. Every migration runs in one
//! transaction with the others (grouped), so a failure leaves the schema as
//! it was.

use tokio_postgres::Config;
use tracing::info;

use super::{Target, Tls};

refinery::embed_migrations!("src/storage/postgres/migrations");

/// The advisory lock's key: any constant no other program on the database
/// uses ("microsvc" in ASCII).
const LOCK_KEY: i64 = 0x6d69_6372_6f73_7663;

/// What a migration run did.
pub struct Report {
    /// `V<n>__<name>` of each migration applied now (none when the schema
    /// was up to date).
    pub applied: Vec<String>,
    /// The schema's version afterwards.
    pub version: Option<i64>,
}

/// Connects, takes the migration lock (waiting for a replica that holds
/// it), applies what is missing, and lets go.
pub async fn run(config: &Config, tls: Tls, target: &Target) -> anyhow::Result<Report> {
    let (mut client, connection) = config.connect(tls).await.map_err(|e| {
        anyhow::anyhow!(
            "could not connect to the database at {target}: {}",
            super::with_causes(&e)
        )
    })?;
    let connection = tokio::spawn(connection);
    let result = async {
        client
            .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
            .await
            .map_err(|e| anyhow::anyhow!("could not take the migration lock on {target}: {e}"))?;
        let runner = migrations::runner().set_grouped(true);
        let applied = runner
            .run_async(&mut client)
            .await
            .map_err(|e| anyhow::anyhow!("migrating the database at {target} failed: {e}"));
        // Released with the session anyway; explicitly, so a pooled reuse
        // of this code could never keep it.
        let _ = client
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
            .await;
        let applied = applied?;
        let version = runner
            .get_last_applied_migration_async(&mut client)
            .await
            .map_err(|e| anyhow::anyhow!("could not read the schema version: {e}"))?
            .map(|m| m.version() as i64);
        Ok(Report {
            applied: applied
                .applied_migrations()
                .iter()
                .map(|m| m.to_string())
                .collect(),
            version,
        })
    }
    .await;
    drop(client);
    let _ = connection.await;
    if let Ok(report) = &result {
        if report.applied.is_empty() {
            info!(database = %target, version = ?report.version, "database schema is up to date");
        } else {
            info!(database = %target, applied = ?report.applied, "database schema migrated");
        }
    }
    result
}
