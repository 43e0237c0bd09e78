//! noop-notify: `notify` returns `Ok(())` and touches nothing, so timing it
//! measures the host's cost of one notification call (instantiation, the
//! call itself, the canonical ABI) and nothing of the guest's own work.
//! Used by `host/examples/plugin_bench.rs`.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "notification",
});

use exports::openfn::microservice::notifier::Guest;
use openfn::microservice::types::{PluginError, RunEvent};

struct NoopNotify;

impl Guest for NoopNotify {
    fn notify(_event: RunEvent) -> Result<(), PluginError> {
        Ok(())
    }
}

export!(NoopNotify);
