//! spin-forever: `notify` never returns. For the host's fuel / epoch
//! deadline tests.

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

struct SpinForever;

impl Guest for SpinForever {
    fn notify(_event: RunEvent) -> Result<(), PluginError> {
        let mut n: u64 = 0;
        loop {
            // black_box: the loop must really run, not be folded away.
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

export!(SpinForever);
