//! {{name}}: a logging plugin. The host calls `write-batch` with the
//! service's log records about once a second; this appends one line per
//! record, `<ms> <LEVEL> <target>: <message>`, to `<dir>/{{name}}.log`.
//!
//! Config: `dir`, the granted folder's guest path (default `/{{folder}}`).
//! It never calls `host::log`: its own lines would come back to it.

wit_bindgen::generate!({
    path: "wit",
    world: "logging",
});

use std::io::Write;

use exports::openfn::microservice::log_sink::Guest;
use openfn::microservice::host;
use openfn::microservice::types::{Level, LogRecord, PluginError};

struct Plugin;

fn level(level: Level) -> &'static str {
    match level {
        Level::Trace => "TRACE",
        Level::Debug => "DEBUG",
        Level::Info => "INFO",
        Level::Warn => "WARN",
        Level::Error => "ERROR",
    }
}

impl Guest for Plugin {
    fn write_batch(records: Vec<LogRecord>) -> Result<(), PluginError> {
        let dir = host::get_config("dir").unwrap_or_else(|| "/{{folder}}".to_string());
        let path = format!("{}/{{name}}.log", dir.trim_end_matches('/'));
        let mut text = String::new();
        for r in &records {
            text.push_str(&format!(
                "{} {} {}: {}\n",
                r.timestamp_ms,
                level(r.level),
                r.target,
                r.message.replace('\n', " ")
            ));
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| PluginError::Unavailable(format!("cannot write {path}: {e}")))
    }
}

export!(Plugin);
