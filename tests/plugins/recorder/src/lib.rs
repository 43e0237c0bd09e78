//! recorder: appends `{"run_id":..,"job":..,"status":..}` for each run event
//! as one line to `<dir>/events.jsonl`; config `dir`, default `/out` (a
//! granted, writable directory).

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

use exports::openfn::microservice::notifier::Guest;
use openfn::microservice::host;
use openfn::microservice::types::{PluginError, RunEvent, RunStatus};

struct Recorder;

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Guest for Recorder {
    fn notify(event: RunEvent) -> Result<(), PluginError> {
        let dir = host::get_config("dir").unwrap_or_else(|| "/out".to_string());
        let dir = dir.trim().trim_matches('"');
        let status = match event.status {
            RunStatus::Success => "success",
            RunStatus::Failure => "failure",
        };
        let line = format!(
            "{{\"run_id\":{},\"job\":{},\"status\":\"{status}\"}}\n",
            json_string(&event.run_id),
            json_string(&event.job)
        );
        let path = format!("{}/events.jsonl", dir.trim_end_matches('/'));
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| PluginError::Unavailable(format!("appending to {path}: {e}")))
    }
}

export!(Recorder);
