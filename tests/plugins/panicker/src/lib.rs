//! panicker: `notify` panics with "boom" (a trap, for the host).

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

struct Panicker;

impl Guest for Panicker {
    fn notify(_event: RunEvent) -> Result<(), PluginError> {
        panic!("boom")
    }
}

export!(Panicker);
