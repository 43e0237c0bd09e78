//! refusing-store: a persistence plugin that opens fine but refuses every
//! `enqueue` with `retry-after(3000)`, as a busy or rate-limited store would.
//! It holds nothing: lists are empty, `get` finds nothing, and the calls
//! naming a message reject it as unknown.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "persistence",
});

use exports::openfn::microservice::message_store::{
    Guest, MessageStatus, StoreStats, StoredMessage,
};
use openfn::microservice::types::{Message, PluginError};

/// What `enqueue` asks the host to wait, in milliseconds.
const RETRY_AFTER_MS: u64 = 3000;

struct RefusingStore;

fn empty() -> StoreStats {
    StoreStats {
        pending: 0,
        leased: 0,
        done: 0,
        dead: 0,
        skipped_records: 0,
    }
}

fn unknown(id: &str) -> PluginError {
    PluginError::Reject(format!("no message with id `{id}`"))
}

impl Guest for RefusingStore {
    fn open() -> Result<StoreStats, PluginError> {
        Ok(empty())
    }

    fn enqueue(
        _messages: Vec<Message>,
        _lease_first: u32,
        _lease_ms: u64,
        _now_ms: u64,
    ) -> Result<Vec<String>, PluginError> {
        Err(PluginError::RetryAfter(RETRY_AFTER_MS))
    }

    fn lease(_max: u32, _lease_ms: u64, _now_ms: u64) -> Result<Vec<StoredMessage>, PluginError> {
        Ok(Vec::new())
    }

    fn ack(id: String, _now_ms: u64) -> Result<(), PluginError> {
        Err(unknown(&id))
    }

    fn ack_many(_ids: Vec<String>, _now_ms: u64) -> Result<(), PluginError> {
        Ok(())
    }

    fn nack(id: String, _after: u64, _error: String, _now_ms: u64) -> Result<(), PluginError> {
        Err(unknown(&id))
    }

    fn dead_letter(id: String, _reason: String, _now_ms: u64) -> Result<(), PluginError> {
        Err(unknown(&id))
    }

    fn requeue(id: String, _now_ms: u64) -> Result<(), PluginError> {
        Err(unknown(&id))
    }

    fn list_messages(
        _status: MessageStatus,
        _limit: u32,
    ) -> Result<Vec<StoredMessage>, PluginError> {
        Ok(Vec::new())
    }

    fn get(_id: String) -> Result<Option<StoredMessage>, PluginError> {
        Ok(None)
    }

    fn stats() -> Result<StoreStats, PluginError> {
        Ok(empty())
    }

    fn compact(_before_ms: u64) -> Result<u64, PluginError> {
        Ok(0)
    }
}

export!(RefusingStore);
