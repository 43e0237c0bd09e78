//! journal: a persistence plugin keeping the service's messages in an
//! append-only, crash-safe journal file, `<dir>/messages.journal`.
//!
//! Config:
//! - `dir`: default `/journal` (a guest path the operator grants, writable).
//! - `max_done`: finished messages kept at most (default 200,000); the
//!   oldest beyond it are forgotten before their retention ran out.
//!
//! The payload layout is in `codec.rs`, the framing in `record.rs`, the file
//! in `file.rs`, the store and its durability and memory rules in
//! `store.rs`. One instance owns the directory: two instances on the same
//! directory would corrupt it (WASI has no file locks to prevent that).

mod codec;
mod file;
mod record;
mod store;

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (plugins/.cargo/config.toml names that target only when cargo runs inside plugins/)"
);

use std::path::PathBuf;
use std::sync::Mutex;

use openfn_plugin_sdk::config::string as config;
use openfn_plugin_sdk::{
    Level, Message, MessageStatus, MessageStore, PluginError, StoreStats, StoredMessage, host,
};
use record::Status;
use store::{Entry, Error, Msg, Store};

struct Journal;

static STORE: Mutex<Option<Store>> = Mutex::new(None);

fn plugin_error(e: Error) -> PluginError {
    match e {
        Error::Reject(m) => PluginError::Reject(m),
        Error::Unavailable(m) => PluginError::Unavailable(m),
        Error::Other(m) => PluginError::Other(m),
    }
}

fn open_store() -> Result<Store, PluginError> {
    let dir = PathBuf::from(config("dir").unwrap_or_else(|| "/journal".to_string()));
    let nonce = wasi::random::random::get_random_u64();
    let (mut store, report) = Store::open(&dir, nonce).map_err(plugin_error)?;
    let max_done = openfn_plugin_sdk::config::number("max_done", store.max_done())?;
    store.set_max_done(max_done);
    report_trimmed(&mut store);
    if report.skipped > 0 {
        host::log(
            Level::Warn,
            &format!(
                "{}: {} torn or corrupt record(s) at the end dropped ({} bytes cut)",
                store.path().display(),
                report.skipped,
                report.cut_bytes
            ),
        );
    }
    if report.orphans > 0 {
        host::log(
            Level::Warn,
            &format!(
                "{}: {} record(s) name unknown messages, ignored",
                store.path().display(),
                report.orphans
            ),
        );
    }
    let s = store.stats();
    host::log(
        Level::Info,
        &format!(
            "{} {}: {} records; {} pending, {} done, {} dead",
            if report.created { "created" } else { "opened" },
            store.path().display(),
            report.records,
            s.pending,
            s.done,
            s.dead
        ),
    );
    Ok(store)
}

/// When the last "forgotten early" warning went out (monotonic ns).
static LAST_TRIM_WARNING: Mutex<Option<u64>> = Mutex::new(None);
const TRIM_WARNING_EVERY_NS: u64 = 60_000_000_000;

/// Says so when finished messages had to be forgotten early: at once the
/// first time, then at most once a minute with the count since, so a busy
/// inbox does not fill the log with it.
fn report_trimmed(store: &mut Store) {
    let now = wasi::clocks::monotonic_clock::now();
    let mut last = LAST_TRIM_WARNING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if last.is_some_and(|at| now.saturating_sub(at) < TRIM_WARNING_EVERY_NS) {
        return;
    }
    let n = store.take_trimmed();
    if n > 0 {
        *last = Some(now);
        host::log(
            Level::Warn,
            &format!(
                "{n} finished message(s) forgotten before their retention ran out: more than max_done ({}) are kept",
                store.max_done()
            ),
        );
    }
}

/// Runs `f` on the store, opening it first if `open` was not called.
fn with_store<T>(f: impl FnOnce(&mut Store) -> Result<T, Error>) -> Result<T, PluginError> {
    let mut guard = STORE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if guard.is_none() {
        *guard = Some(open_store()?);
    }
    f(guard.as_mut().expect("opened above")).map_err(plugin_error)
}

fn to_status(s: MessageStatus) -> Status {
    match s {
        MessageStatus::Pending => Status::Pending,
        MessageStatus::Leased => Status::Leased,
        MessageStatus::Done => Status::Done,
        MessageStatus::Dead => Status::Dead,
    }
}

fn from_status(s: Status) -> MessageStatus {
    match s {
        Status::Pending => MessageStatus::Pending,
        Status::Leased => MessageStatus::Leased,
        Status::Done => MessageStatus::Done,
        Status::Dead => MessageStatus::Dead,
    }
}

fn stored(e: Entry) -> StoredMessage {
    StoredMessage {
        id: e.id,
        message: Message {
            body: e.msg.body,
            source: e.msg.source,
            metadata: e.msg.metadata,
        },
        status: from_status(e.status),
        attempts: e.attempts,
        enqueued_at_ms: e.enqueued_at,
        not_before_ms: e.not_before,
        last_error: e.last_error,
    }
}

fn stats(s: store::Stats) -> StoreStats {
    StoreStats {
        pending: s.pending,
        leased: s.leased,
        done: s.done,
        dead: s.dead,
        skipped_records: s.skipped,
    }
}

impl MessageStore for Journal {
    fn open() -> Result<StoreStats, PluginError> {
        let mut guard = STORE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Reopening replays the file again; drop the old handle first.
        *guard = None;
        let store = open_store()?;
        let s = stats(store.stats());
        *guard = Some(store);
        Ok(s)
    }

    fn enqueue(
        messages: Vec<Message>,
        lease_first: u32,
        lease_ms: u64,
        now_ms: u64,
    ) -> Result<Vec<String>, PluginError> {
        let msgs = messages
            .into_iter()
            .map(|m| Msg {
                body: m.body,
                source: m.source,
                metadata: m.metadata,
            })
            .collect();
        with_store(|s| s.enqueue(msgs, lease_first, lease_ms, now_ms))
    }

    fn lease(max: u32, lease_ms: u64, now_ms: u64) -> Result<Vec<StoredMessage>, PluginError> {
        with_store(|s| s.lease(max, lease_ms, now_ms)).map(|v| v.into_iter().map(stored).collect())
    }

    fn ack(id: String, now_ms: u64) -> Result<(), PluginError> {
        with_store(|s| s.ack(&id, now_ms).map(|()| report_trimmed(s)))
    }

    fn ack_many(ids: Vec<String>, now_ms: u64) -> Result<(), PluginError> {
        with_store(|s| s.ack_many(&ids, now_ms).map(|()| report_trimmed(s)))
    }

    fn nack(
        id: String,
        retry_after_ms: u64,
        error: String,
        now_ms: u64,
    ) -> Result<(), PluginError> {
        with_store(|s| s.nack(&id, retry_after_ms, &error, now_ms))
    }

    fn dead_letter(id: String, reason: String, now_ms: u64) -> Result<(), PluginError> {
        with_store(|s| s.dead_letter(&id, &reason, now_ms))
    }

    fn requeue(id: String, now_ms: u64) -> Result<(), PluginError> {
        with_store(|s| s.requeue(&id, now_ms))
    }

    fn list_messages(status: MessageStatus, limit: u32) -> Result<Vec<StoredMessage>, PluginError> {
        with_store(|s| s.list(to_status(status), limit))
            .map(|v| v.into_iter().map(stored).collect())
    }

    fn get(id: String) -> Result<Option<StoredMessage>, PluginError> {
        with_store(|s| s.get(&id)).map(|e| e.map(stored))
    }

    fn stats() -> Result<StoreStats, PluginError> {
        with_store(|s| Ok(s.stats())).map(stats)
    }

    fn compact(before_ms: u64) -> Result<u64, PluginError> {
        with_store(|s| s.compact(before_ms))
    }
}

openfn_plugin_sdk::export!(Journal as persistence);
