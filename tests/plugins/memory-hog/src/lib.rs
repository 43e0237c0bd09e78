//! memory-hog: `notify` allocates 60 MiB, writes every byte, and returns
//! `Ok`: a heavy call that stays under the default 64 MiB cap. For the
//! host's tests that plugin memory is given back after each call.

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

struct MemoryHog;

const SIZE: usize = 60 << 20;

impl Guest for MemoryHog {
    fn notify(_event: RunEvent) -> Result<(), PluginError> {
        let mut hoard = Vec::with_capacity(SIZE);
        // A non-zero byte, so every page is really touched.
        hoard.resize(SIZE, 0x5Au8);
        std::hint::black_box(&mut hoard);
        Ok(())
    }
}

export!(MemoryHog);
