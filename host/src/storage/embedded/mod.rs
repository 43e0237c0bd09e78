//! The embedded store: one process, files in `DATA_DIR`, nothing to set up.
//!
//! - [`receipts`]: the message-store plugin (the built-in journal in
//!   `DATA_DIR/journal`), with idempotency keys kept by [`keys`];
//! - [`runs`]: run records and job states in `DATA_DIR/microservice.db`
//!   (SQLite);
//! - cron ticks and trigger plugins' polls: [`OneProcess`], since one
//!   process is the only scheduler and the only poller.
//!
//! It must never be run by two processes on one `DATA_DIR`: nothing here
//! coordinates them (that is what the PostgreSQL store is for).

mod keys;
pub mod receipts;
pub mod runs;

use async_trait::async_trait;

use super::{CronTicks, StorageError, TickClaim, TriggerLeases};

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

/// The one process always holds every trigger plugin's lease.
#[async_trait]
impl TriggerLeases for OneProcess {
    async fn hold(
        &self,
        _plugin: &str,
        _until_ms: u64,
        _now_ms: u64,
    ) -> Result<bool, StorageError> {
        Ok(true)
    }
}
