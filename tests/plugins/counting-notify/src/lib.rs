//! counting-notify: counts the calls its instance has answered, in its own
//! memory, and appends `{"run_id":…,"job":…,"call":<count>}` for each run
//! event to `<dir>/calls.jsonl` (config `dir`, default `/out`). When the
//! event's job is `trap`, it panics after writing its line (a trap, for the
//! host). The count shows whether the host kept the instance between calls
//! (1, 2, 3…) or made a fresh one (1 every time).

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "notification",
});

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use exports::openfn::microservice::notifier::Guest;
use openfn::microservice::host;
use openfn::microservice::types::{PluginError, RunEvent};

/// Calls this instance has answered: zero in every fresh instance.
static CALLS: AtomicU64 = AtomicU64::new(0);

struct Counting;

impl Guest for Counting {
    fn notify(event: RunEvent) -> Result<(), PluginError> {
        let call = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
        let dir = host::get_config("dir").unwrap_or_else(|| "/out".to_string());
        let path = format!("{}/calls.jsonl", dir.trim_end_matches('/'));
        // Run ids and job names in the tests are plain: no escaping needed.
        let line = format!(
            "{{\"run_id\":\"{}\",\"job\":\"{}\",\"call\":{call}}}\n",
            event.run_id, event.job
        );
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| PluginError::Unavailable(format!("appending to {path}: {e}")))?;
        if event.job == "trap" {
            panic!("asked to trap on call {call}");
        }
        Ok(())
    }
}

export!(Counting);
