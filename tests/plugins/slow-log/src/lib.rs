//! slow-log: `write-batch` keeps its thread busy (a loop reading the clock)
//! for `busy_ms` milliseconds (config, default 900), then returns `Ok`. A
//! logging plugin that is slow but never fails, so it is never backed off:
//! for the host's tests and benchmarks that plugin calls do not starve
//! HTTP.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "logging",
});

use std::time::{Duration, Instant};

use exports::openfn::microservice::log_sink::Guest;
use openfn::microservice::host;
use openfn::microservice::types::{LogRecord, PluginError};

struct SlowLog;

impl Guest for SlowLog {
    fn write_batch(records: Vec<LogRecord>) -> Result<(), PluginError> {
        let busy_ms = host::get_config("busy_ms")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(900);
        let until = Instant::now() + Duration::from_millis(busy_ms);
        let mut n: u64 = 0;
        while Instant::now() < until {
            n = std::hint::black_box(n.wrapping_add(records.len() as u64));
        }
        Ok(())
    }
}

export!(SlowLog);
