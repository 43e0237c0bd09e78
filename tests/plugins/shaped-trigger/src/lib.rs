//! shaped-trigger: a trigger whose first poll returns one message of each
//! shape the host's receipt door decodes for trigger plugins, and two it
//! cannot; later polls return nothing.
//!
//! In order:
//! - `{"shape":"bom"}` behind a UTF-8 byte-order mark, metadata `file = bom.json`;
//! - XML, metadata `content-type = text/xml` and `file = reading.xml`;
//! - an urlencoded form with a repeated key, metadata
//!   `content-type = application/x-www-form-urlencoded`;
//! - JSON cut off half-way (`{"shape":`);
//! - XML that does not close (`<reading>`), metadata `content-type = text/xml`.

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

struct ShapedTrigger;

fn message(body: &str, metadata: &[(&str, &str)]) -> Message {
    Message {
        body: body.to_string(),
        source: "plugin:shaped-trigger".to_string(),
        metadata: metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

impl Guest for ShapedTrigger {
    fn poll(tick: Tick) -> Result<PollResult, PluginError> {
        if tick.sequence > 1 {
            return Ok(PollResult {
                messages: Vec::new(),
            });
        }
        let xml = ("content-type", "text/xml");
        Ok(PollResult {
            messages: vec![
                message("\u{feff}{\"shape\":\"bom\"}", &[("file", "bom.json")]),
                message(
                    "<reading shape=\"xml\"><v>7</v><v>8</v></reading>",
                    &[xml, ("file", "reading.xml")],
                ),
                message(
                    "shape=form&tag=a&tag=b",
                    &[("content-type", "application/x-www-form-urlencoded")],
                ),
                message("{\"shape\":", &[]),
                message("<reading>", &[xml]),
            ],
        })
    }
}

export!(ShapedTrigger);
