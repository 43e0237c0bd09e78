//! jsonl-logger: a logging plugin that appends the service's log records,
//! one JSON object a line, to `<dir>/<file>`, rotating by size.
//!
//! Config:
//! - `dir`: the directory, default `/logs` (a guest path the operator grants).
//! - `file`: the file name, default `microservice.jsonl`.
//! - `max_bytes`: rotate before the file would grow past this, default 10 MiB.
//! - `max_files`: how many rotated files (`file.1` newest … `file.N` oldest)
//!   to keep, default 5; 0 keeps none (the file is just started afresh).
//!
//! It never logs through `host.log`: that would feed its own sink.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (plugins/.cargo/config.toml names that target only when cargo runs inside plugins/)"
);

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use openfn_plugin_sdk::config::{number as config_num, string as config};
use openfn_plugin_sdk::{Level, LogRecord, LogSink, PluginError};

struct JsonlLogger;

struct Settings {
    dir: String,
    file: String,
    max_bytes: u64,
    max_files: u32,
}

impl Settings {
    fn load() -> Result<Settings, PluginError> {
        let file = config("file").unwrap_or_else(|| "microservice.jsonl".to_string());
        if file.is_empty() || file.contains('/') || file == "." || file == ".." {
            return Err(PluginError::Reject(format!(
                "config `file` must be a plain file name, got `{file}`"
            )));
        }
        Ok(Settings {
            dir: config("dir").unwrap_or_else(|| "/logs".to_string()),
            file,
            max_bytes: config_num("max_bytes", 10 * 1024 * 1024)?,
            max_files: config_num("max_files", 5)?,
        })
    }

    fn path(&self, generation: u32) -> PathBuf {
        let name = if generation == 0 {
            self.file.clone()
        } else {
            format!("{}.{generation}", self.file)
        };
        Path::new(&self.dir).join(name)
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// One line, fields in this order.
#[derive(serde::Serialize)]
struct Line<'a> {
    ts: u64,
    level: &'static str,
    target: &'a str,
    message: &'a str,
    fields: serde_json::Map<String, serde_json::Value>,
    run_id: Option<&'a str>,
    job: Option<&'a str>,
}

/// One record as a JSON line, newline included.
fn render(record: &LogRecord) -> Vec<u8> {
    let line = Line {
        ts: record.timestamp_ms,
        level: level_name(record.level),
        target: &record.target,
        message: &record.message,
        fields: record
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect(),
        run_id: record.run_id.as_deref(),
        job: record.job.as_deref(),
    };
    let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// `file.{n-1}` → `file.n` … `file` → `file.1`; the oldest falls off.
fn rotate(settings: &Settings) -> io::Result<()> {
    if settings.max_files == 0 {
        return match fs::remove_file(settings.path(0)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    match fs::remove_file(settings.path(settings.max_files)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    for generation in (0..settings.max_files).rev() {
        match fs::rename(settings.path(generation), settings.path(generation + 1)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

fn append(settings: &Settings, bytes: &[u8]) -> io::Result<()> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(settings.path(0))?;
    file.write_all(bytes)?;
    file.flush()
}

fn write_batch(settings: &Settings, records: &[LogRecord]) -> io::Result<()> {
    let mut size = match fs::metadata(settings.path(0)) {
        Ok(meta) => meta.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let mut pending: Vec<u8> = Vec::new();
    for record in records {
        let line = render(record);
        // A line longer than max_bytes still goes in, alone in a fresh file.
        if size + line.len() as u64 > settings.max_bytes && size > 0 {
            append(settings, &pending)?;
            pending.clear();
            rotate(settings)?;
            size = 0;
        }
        size += line.len() as u64;
        pending.extend_from_slice(&line);
    }
    append(settings, &pending)
}

impl LogSink for JsonlLogger {
    fn write_batch(records: Vec<LogRecord>) -> Result<(), PluginError> {
        let settings = Settings::load()?;
        write_batch(&settings, &records).map_err(|e| {
            PluginError::Unavailable(format!("writing {}: {e}", settings.path(0).display()))
        })
    }
}

openfn_plugin_sdk::export!(JsonlLogger as logging);

#[cfg(test)]
mod tests {
    use super::*;

    fn record(i: u64) -> LogRecord {
        LogRecord {
            timestamp_ms: i,
            level: Level::Warn,
            target: "t".into(),
            message: format!("m{i}"),
            fields: vec![("k".into(), "v".into())],
            run_id: None,
            job: Some("j".into()),
        }
    }

    #[test]
    fn lines_have_the_documented_shape() {
        assert_eq!(
            String::from_utf8(render(&record(7))).unwrap(),
            "{\"ts\":7,\"level\":\"warn\",\"target\":\"t\",\"message\":\"m7\",\"fields\":{\"k\":\"v\"},\"run_id\":null,\"job\":\"j\"}\n"
        );
    }

    #[test]
    fn rotates_by_size_and_keeps_max_files() {
        let dir = std::env::temp_dir().join(format!("jsonl-logger-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let line_len = render(&record(0)).len() as u64;
        let settings = Settings {
            dir: dir.display().to_string(),
            file: "x.jsonl".into(),
            max_bytes: line_len * 2,
            max_files: 2,
        };
        for i in 0..4 {
            write_batch(&settings, &[record(2 * i), record(2 * i + 1)]).unwrap();
        }
        let read = |g| fs::read_to_string(settings.path(g)).unwrap();
        assert!(read(0).contains("\"m6\"") && read(0).contains("\"m7\""));
        assert!(read(1).contains("\"m4\""));
        assert!(read(2).contains("\"m2\""));
        assert!(!settings.path(3).exists());
        for g in 0..3 {
            assert_eq!(read(g).len() as u64, line_len * 2);
        }
        // A line longer than max_bytes goes alone into a fresh file.
        let small = Settings {
            max_bytes: 1,
            max_files: 0,
            dir: settings.dir.clone(),
            file: settings.file.clone(),
        };
        write_batch(&small, &[record(8)]).unwrap();
        assert_eq!(read(0), String::from_utf8(render(&record(8))).unwrap());
        fs::remove_dir_all(&dir).unwrap();
    }
}
