//! {{name}}: a notification plugin. After each run the host calls `notify`;
//! this appends one JSON line per run to `<dir>/events.jsonl`.
//!
//! Config: `dir`, the granted folder's guest path (default `/{{folder}}`).

wit_bindgen::generate!({
    path: "wit",
    world: "notification",
});

use std::io::Write;

use exports::openfn::microservice::notifier::Guest;
use openfn::microservice::host;
use openfn::microservice::types::{Level, PluginError, RunEvent, RunStatus};

struct Plugin;

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Guest for Plugin {
    fn notify(event: RunEvent) -> Result<(), PluginError> {
        let dir = host::get_config("dir").unwrap_or_else(|| "/{{folder}}".to_string());
        let path = format!("{}/events.jsonl", dir.trim_end_matches('/'));
        let status = match event.status {
            RunStatus::Success => "success",
            RunStatus::Failure => "failure",
        };
        let line = format!(
            "{{\"run_id\":{},\"job\":{},\"status\":\"{status}\",\"duration_ms\":{}}}",
            json_string(&event.run_id),
            json_string(&event.job),
            event.duration_ms
        );
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| PluginError::Unavailable(format!("cannot open {path}: {e}")))?;
        writeln!(file, "{line}")
            .map_err(|e| PluginError::Unavailable(format!("cannot write {path}: {e}")))?;
        host::log(Level::Debug, &format!("run {} written to {path}", event.run_id));
        Ok(())
    }
}

export!(Plugin);
