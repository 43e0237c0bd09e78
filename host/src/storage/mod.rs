//! The storage boundary: where receipts, run records, job states and cron
//! ticks are kept, behind one interface with two implementations.
//!
//! - [`embedded`]: the default, with no configuration. Receipts go to the
//!   message-store plugin (the built-in journal in `DATA_DIR/journal`), run
//!   records and job states to one SQLite file (`DATA_DIR/microservice.db`),
//!   and cron ticks are the one process's own.
//! - [`postgres`]: chosen by `DATABASE_URL` (or `[cluster] database_url`).
//!   The same interface on one PostgreSQL database shared by many replicas:
//!   receipts, run records, job states and cron ticks are all tables there.
//!
//! The queue, the dispatcher, cron and the API talk to [`Storage`] only; none
//! of them knows which implementation it has. To find where a receipt is
//! written, read `receipts.rs` of either implementation.
//!
//! This module decides nothing about delivery (retries, backoff and dead
//! letters are the queue's, matching is the dispatcher's): it keeps what it
//! is told to keep, durably, and answers for nothing it did not keep. It is
//! never handed a credential: states arrive without `configuration`, logs
//! already redacted.

pub mod embedded;
pub mod postgres;
mod records;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde_json::Value;

pub use records::{
    FinishedRun, JobHealth, JobRuns, JobStateRecord, LastRun, PendingFlow, RunDetail, RunEnd,
    RunFilter, RunRecord, RunStart, RunStatus, RunSummary,
};

/// What the dispatcher, cron and the API keep: run records and job states,
/// and who runs each cron tick. Clones share them. Receipts, the third part,
/// are opened later by the service (the embedded ones live in a plugin,
/// which loads after the dispatcher exists) and held by the queue.
#[derive(Clone)]
pub struct Storage {
    pub runs: Arc<dyn Runs>,
    pub cron: Arc<dyn CronTicks>,
    pub triggers: Arc<dyn TriggerLeases>,
    /// Whether the store answered its last check: `/readyz` reports it.
    pub reachable: Reachable,
    /// Shared by replicas (a database), not the one process's own files.
    pub shared: bool,
}

impl Storage {
    /// How long a run's record is written again while the store is
    /// unavailable: a shared database is waited for (runs in flight keep
    /// their results until it is back); local files are not.
    pub fn patience(&self) -> std::time::Duration {
        if self.shared {
            PATIENCE
        } else {
            std::time::Duration::ZERO
        }
    }
}

/// Whether a store could be reached when it last looked (a database's
/// probe); a store of local files always can. Clones share the flag.
#[derive(Clone, Debug)]
pub struct Reachable(Arc<AtomicBool>);

impl Reachable {
    pub fn new(up: bool) -> Self {
        Reachable(Arc::new(AtomicBool::new(up)))
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Records what a check found; returns what it was before.
    pub fn set(&self, up: bool) -> bool {
        self.0.swap(up, Ordering::Relaxed)
    }
}

/// Why a store did not do what it was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The store cannot be reached or is not keeping up; asking again later
    /// may work (HTTP 503, with `Retry-After` when `retry_after_ms` is set).
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// The store answered, but failed (a bug or corrupt data, not a moment).
    #[error("{0}")]
    Failed(String),
}

impl StorageError {
    pub fn unavailable(message: impl Into<String>) -> Self {
        StorageError::Unavailable {
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// How long the client should wait before trying again, if the store said.
    pub fn retry_after_ms(&self) -> Option<u64> {
        match self {
            StorageError::Unavailable { retry_after_ms, .. } => *retry_after_ms,
            StorageError::Failed(_) => None,
        }
    }
}

/// A receipt to store: its body as received (decoded to JSON text) and
/// where it came from.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub body: String,
    /// `inbox`, `plugin:<name>`, ...
    pub source: String,
    /// The sender's `Idempotency-Key`: a second receipt with a key the store
    /// still holds is not stored again (see [`Enqueued::Duplicate`]).
    pub idempotency_key: Option<String>,
    /// Key-value pairs kept with the receipt and given back on lease.
    pub metadata: Vec<(String, String)>,
    /// Nothing to deliver: no job matched it when it arrived. It is stored
    /// done (acknowledged), so it is kept, listed and a duplicate of a
    /// re-send, but never delivered: by `enqueue` itself where the store
    /// can ([`Receipts::stores_done`]), else by the caller's acknowledgement.
    pub done: bool,
}

/// What [`Receipts::enqueue`] did with one receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    /// Stored under this id.
    New(String),
    /// Its idempotency key is held by the receipt with this id: nothing was
    /// stored (and it was not leased).
    Duplicate(String),
}

/// A receipt's place in delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    /// Waiting to be leased (new, or a retry not yet due).
    Pending,
    /// Being delivered, until its lease runs out.
    Leased,
    /// Delivered; kept until the retention period forgets it.
    Done,
    /// Given up on: the dead-letter list.
    Dead,
}

impl ReceiptStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Pending => "pending",
            ReceiptStatus::Leased => "leased",
            ReceiptStatus::Done => "done",
            ReceiptStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pending" => Some(ReceiptStatus::Pending),
            "leased" => Some(ReceiptStatus::Leased),
            "done" => Some(ReceiptStatus::Done),
            "dead" => Some(ReceiptStatus::Dead),
            _ => None,
        }
    }
}

/// A stored receipt, as leased or listed.
#[derive(Debug, Clone)]
pub struct StoredReceipt {
    pub id: String,
    pub body: String,
    pub source: String,
    pub metadata: Vec<(String, String)>,
    pub status: ReceiptStatus,
    /// How many times it has been leased (the attempt it is on).
    pub attempts: u32,
    /// Unix ms.
    pub enqueued_at_ms: u64,
    /// Unix ms before which it is not leased (a retry's delay).
    pub not_before_ms: u64,
    pub last_error: Option<String>,
    /// Its jobs that need no further attempt, as the last `nack` recorded
    /// them (empty from a store that does not keep them).
    pub settled: Vec<SettledJob>,
}

/// A job of a receipt that needs no further attempt: it succeeded, or it
/// failed for good (`failure` says why). A retry runs the other jobs only.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SettledJob {
    pub job: String,
    pub failure: Option<String>,
}

/// How many receipts are in each status.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReceiptStats {
    pub pending: u64,
    pub leased: u64,
    pub done: u64,
    pub dead: u64,
    /// Records the store skipped when it opened because they were torn or
    /// corrupt (the embedded journal after a crash; 0 for a database).
    pub skipped_records: u64,
}

/// Durable receipts with leases: at-least-once delivery's store.
///
/// A receipt is durable when `enqueue` returns; it stays until it is acked
/// (done, then forgotten after the retention period) or dead-lettered. A
/// lease hides a receipt from other `lease` calls until it runs out, so a
/// deliverer that dies lets its receipts go to another. Times are Unix ms,
/// given by the caller so that a store holds no clock of its own.
#[async_trait]
pub trait Receipts: Send + Sync + 'static {
    /// Stores `receipts` durably (one write for all of them), in order.
    /// The first `lease_first` that are stored and not [`NewReceipt::done`]
    /// are stored already leased until `now_ms + lease_ms`, attempt 1, for
    /// the caller to deliver at once; done ones come after all others in
    /// `receipts`. A receipt whose idempotency key the store holds, or that
    /// an earlier receipt of the same call holds, is a duplicate.
    async fn enqueue(
        &self,
        receipts: Vec<NewReceipt>,
        lease_first: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<Enqueued>, StorageError>;

    /// Leases up to `max` pending receipts whose `not_before_ms` has passed
    /// and leased ones whose lease ran out, oldest first; each lease counts
    /// an attempt.
    async fn lease(
        &self,
        max: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<StoredReceipt>, StorageError>;

    /// Marks receipts done. Unknown or already-done ids are skipped. Need
    /// not be synced: an ack lost in a crash only means a second delivery.
    async fn ack_many(&self, ids: Vec<String>, now_ms: u64) -> Result<(), StorageError>;

    /// Delivery failed and will be tried again: pending, not before
    /// `now_ms + retry_after_ms`, with `error` as its last error. `settled`
    /// are its jobs that need no further attempt, for whichever process
    /// leases it next; a store may drop them (the embedded journal does:
    /// its one process remembers them itself).
    async fn nack(
        &self,
        id: &str,
        retry_after_ms: u64,
        error: &str,
        settled: &[SettledJob],
        now_ms: u64,
    ) -> Result<(), StorageError>;

    /// Moves a receipt to the dead-letter list.
    async fn dead_letter(&self, id: &str, reason: &str, now_ms: u64) -> Result<(), StorageError>;

    /// Makes a done or dead receipt pending again, its attempts reset.
    async fn requeue(&self, id: &str, now_ms: u64) -> Result<(), StorageError>;

    /// Receipts in `status`, oldest first.
    async fn list(
        &self,
        status: ReceiptStatus,
        limit: u32,
    ) -> Result<Vec<StoredReceipt>, StorageError>;

    async fn get(&self, id: &str) -> Result<Option<StoredReceipt>, StorageError>;

    async fn stats(&self) -> Result<ReceiptStats, StorageError>;

    /// Forgets done receipts finished before `before_ms`, and with them
    /// their idempotency keys; returns how many went.
    async fn compact(&self, before_ms: u64) -> Result<u64, StorageError>;

    /// Where the queue's loops that do little but call this store should
    /// run: a store that blocks a thread on I/O has its own; `None` runs
    /// them on the service's runtime.
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        None
    }

    /// Rung when receipts may be waiting that this process did not store
    /// (another replica stored them pending, or requeued one), so an idle
    /// delivery loop leases at once instead of at its next poll. `None`:
    /// only this process stores receipts, and it wakes its own loop.
    fn wakeups(&self) -> Option<Arc<tokio::sync::Notify>> {
        None
    }

    /// How many group commits may be in flight at once: a store that
    /// syncs one write at a time gains nothing from more than one; a
    /// database shares one WAL flush among the commits waiting for it.
    fn concurrent_commits(&self) -> usize {
        1
    }

    /// Whether [`NewReceipt::done`] receipts are stored done by `enqueue`
    /// itself; if not (the message-store plugins), the caller acknowledges
    /// them, in its next batch of acknowledgements.
    fn stores_done(&self) -> bool {
        false
    }

    /// How long an acknowledgement, a retry's schedule or a dead letter is
    /// tried again while this store is unavailable (see [`patiently`]): a
    /// database that is restarted comes back; a plugin that refuses is not
    /// waited for.
    fn patience(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

/// Run records (with their logs) and job states.
#[async_trait]
pub trait Runs: Send + Sync + 'static {
    /// Records a run's start with its input state (no `configuration`),
    /// so it can be run again, and the run that started it, if any.
    async fn start_run(&self, start: RunStart<'_>) -> Result<(), StorageError>;

    /// Records a run's end and, when it succeeded, the job's new state, in
    /// one transaction so the two never disagree; in the same transaction,
    /// keeps the flows it makes due (`end.flows`) and forgets the pending
    /// flow it carried out (`end.settles`).
    async fn finish_run(&self, end: RunEnd<'_>) -> Result<(), StorageError>;

    /// Up to `max` pending flows that no running process is carrying out,
    /// oldest first, now this process's: those a process left when it
    /// stopped between an upstream run's end and its flow's end. The
    /// embedded store has them once, at start (what the last process left);
    /// PostgreSQL has those of replicas seen gone, whenever asked.
    async fn adopt_flows(&self, max: u32) -> Result<Vec<PendingFlow>, StorageError>;

    /// The job's last successful final state: what its next cron run starts from.
    async fn job_state(&self, job: &str) -> Result<Option<Value>, StorageError>;

    /// Newest first.
    async fn list_runs(&self, filter: RunFilter) -> Result<Vec<RunSummary>, StorageError>;

    /// Runs that finished at or after `since` (RFC 3339), by minute.
    async fn finished_since(&self, since: &str) -> Result<Vec<FinishedRun>, StorageError>;

    /// Each job's newest run and how many of its last `recent` finished runs
    /// succeeded, in the order of `jobs`.
    async fn job_health(
        &self,
        jobs: Vec<String>,
        recent: u32,
    ) -> Result<Vec<JobHealth>, StorageError>;

    /// Each job with a run that finished at or after `since` (RFC 3339):
    /// how many finished and how many succeeded, in one query (the jobs
    /// library asks on every request), in job name order.
    async fn runs_by_job_since(&self, since: &str) -> Result<Vec<JobRuns>, StorageError>;

    /// A run's job, trigger and input state, for running it again.
    async fn run_input(&self, id: &str) -> Result<Option<(String, String, Value)>, StorageError>;

    async fn run(&self, id: &str) -> Result<Option<RunDetail>, StorageError>;
}

/// Who runs a cron tick. Every replica's scheduler wakes for every tick;
/// only the one that claims it runs it, so each tick runs once however many
/// replicas are up.
#[async_trait]
pub trait CronTicks: Send + Sync + 'static {
    /// Claims `job`'s tick at `tick_ms` (Unix ms): `Some` for at most one
    /// caller per job and tick, and never while the job's run of an
    /// earlier tick (claimed by anyone) is still going, so one cron job's
    /// runs never overlap. The claim is held until the tick's run has
    /// finished and its result is stored, then dropped.
    async fn claim(&self, job: &str, tick_ms: i64) -> Result<Option<TickClaim>, StorageError>;
}

/// Which process polls each trigger plugin: one at a time, so a folder on
/// shared storage is read once however many replicas load the plugin.
#[async_trait]
pub trait TriggerLeases: Send + Sync + 'static {
    /// Takes or renews this process's lease on polling `plugin` until
    /// `until_ms` (Unix ms): `true` when this process holds it now (it was
    /// free, lapsed, or already this process's), `false` when another
    /// process does. A holder that stops renewing loses it at `until_ms`.
    async fn hold(&self, plugin: &str, until_ms: u64, now_ms: u64) -> Result<bool, StorageError>;
}

/// A claimed cron tick: while it is held, no other tick of the job is
/// claimed anywhere. Dropping it lets the next one be claimed.
pub struct TickClaim {
    _held: Option<Box<dyn Send>>,
}

impl TickClaim {
    /// A claim that holds nothing (one process: its scheduler already
    /// waits for each run before the next tick).
    pub fn free() -> Self {
        TickClaim { _held: None }
    }

    /// A claim that lasts as long as `held` (released when it is dropped).
    pub fn holding(held: impl Send + 'static) -> Self {
        TickClaim {
            _held: Some(Box::new(held)),
        }
    }
}

/// How long a write that should not be lost (a run's record, an
/// acknowledgement) is tried again while a database is unavailable.
pub const PATIENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Calls `write` until it succeeds, fails for good, the store has been
/// unavailable for `patience`, or `stop` is cancelled (checked only after a
/// try failed, so the first try is always made): a database that went away
/// for a moment gets the write when it is back (with a warning the first
/// time, and a note when it went through).
pub async fn patiently<T, F, Fut>(
    what: &str,
    patience: std::time::Duration,
    stop: Option<&tokio_util::sync::CancellationToken>,
    mut write: F,
) -> Result<T, StorageError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StorageError>>,
{
    let deadline = tokio::time::Instant::now() + patience;
    let mut wait = std::time::Duration::from_millis(200);
    let mut warned = false;
    loop {
        let e = match write().await {
            Err(e @ StorageError::Unavailable { .. }) if tokio::time::Instant::now() < deadline => {
                e
            }
            result => {
                if warned && result.is_ok() {
                    tracing::info!("wrote {what} now that the store is back");
                }
                return result;
            }
        };
        if stop.is_some_and(|s| s.is_cancelled()) {
            return Err(e);
        }
        if !warned {
            tracing::warn!(cause = %e, "could not write {what}; trying again until the store is back");
            warned = true;
        }
        let stopped = async {
            match stop {
                Some(s) => s.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped => return Err(e),
        }
        wait = (wait * 2).min(std::time::Duration::from_secs(2));
    }
}

impl From<serde_json::Error> for StorageError {
    fn from(e: serde_json::Error) -> Self {
        StorageError::Failed(format!("a stored value is not JSON: {e}"))
    }
}
