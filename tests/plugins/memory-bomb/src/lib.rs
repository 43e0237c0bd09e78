//! memory-bomb: `notify` allocates 1 MiB chunks, writing every byte, and
//! keeps them until an allocation fails and the instance traps. For the
//! host's memory limit tests.

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

struct MemoryBomb;

const CHUNK: usize = 1 << 20;

impl Guest for MemoryBomb {
    fn notify(_event: RunEvent) -> Result<(), PluginError> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            // Filled with a non-zero byte so every page is really touched.
            chunk.resize(CHUNK, 0xA5u8);
            hoard.push(std::hint::black_box(chunk));
            std::hint::black_box(&mut hoard);
        }
    }
}

export!(MemoryBomb);
