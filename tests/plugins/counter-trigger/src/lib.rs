//! counter-trigger: each `poll` returns one message, `{"counter":<sequence>}`,
//! with source `plugin:counter-trigger`.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "trigger",
});

use exports::openfn::microservice::trigger_source::{Guest, PollResult, Tick};
use openfn::microservice::types::{Message, PluginError};

struct CounterTrigger;

impl Guest for CounterTrigger {
    fn poll(tick: Tick) -> Result<PollResult, PluginError> {
        Ok(PollResult {
            messages: vec![Message {
                body: format!("{{\"counter\":{}}}", tick.sequence),
                source: "plugin:counter-trigger".to_string(),
                metadata: Vec::new(),
            }],
        })
    }
}

export!(CounterTrigger);
