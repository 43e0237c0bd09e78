//! The embedded store: one process, files in `DATA_DIR`, nothing to set up.
//!
//! - [`receipts`]: the message-store plugin (the built-in journal in
//!   `DATA_DIR/journal`), with idempotency keys kept by [`keys`];
//! - [`runs`]: run records and job states in `DATA_DIR/microservice.db`
//!   (SQLite);
//! - cron ticks: [`OneProcess`], since one process is the only scheduler.
//!
//! It must never be run by two processes on one `DATA_DIR`: nothing here
//! coordinates them (that is what the PostgreSQL store is for).

mod keys;
pub mod receipts;
pub mod runs;

use async_trait::async_trait;

use super::{CronTicks, StorageError, TickClaim};

pub use receipts::JournalReceipts;
pub use runs::SqliteRuns;

/// Cron ticks of a single process: its scheduler is the only one, and it
/// waits for one tick's run before the next, so every claim succeeds.
pub struct OneProcess;

#[async_trait]
impl CronTicks for OneProcess {
    async fn claim(&self, _job: &str, _tick_ms: i64) -> Result<Option<TickClaim>, StorageError> {
        Ok(Some(TickClaim::free()))
    }
}
