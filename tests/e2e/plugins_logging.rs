//! Logging plugins, with the first-party jsonl-logger built from source:
//! the service's log records (a run's included, tagged with its run id and
//! job) end up as JSON lines in a granted data directory, and a small
//! `max_bytes` rotates the file.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Launch, run_id, wait_for_runs};
use crate::plugins_support::{count, last_error, plugin, wait_plugin, wasm};

const PROJECT: &str = include_str!("../projects/plugins-logger/project.toml");
/// Plugins are compiled before the service listens; this is slack for the
/// listing on a busy machine.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a record may take to reach a file: the log sink hands records
/// to the plugin in batches, on its own schedule, behind the service's
/// other work.
const WRITE_TIMEOUT: Duration = Duration::from_secs(90);

/// The names of the files in `dir`, for failure messages.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The lines of a JSON-lines file, each parsed (panics on a line that is
/// not JSON); empty if the file does not exist yet.
fn json_lines(path: &Path) -> Vec<Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: a line is not JSON ({e}): {l}", path.display()))
        })
        .collect()
}

#[test]
fn jsonl_logger_writes_and_rotates_the_service_log() {
    let logger = wasm("jsonl_logger.wasm");
    let svc = Launch::new(PROJECT)
        .file_bytes("plugins/jsonl-logger.wasm", &logger)
        .file_bytes("plugins/jsonl-small.wasm", &logger)
        .start();
    for name in ["jsonl-logger", "jsonl-small"] {
        let entry = wait_plugin(&svc, name, "loaded", LOAD_TIMEOUT, |p| {
            p["status"] == "active"
        });
        assert_eq!(entry["kind"], "logging", "{entry}");
    }

    let reply = svc.post_json("/inbox", r#"{"kind":"log"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let run = wait_for_runs(&svc, "logged", "success", 1).remove(0);
    let id = run_id(&run);
    // Some more log volume (one `receipt` record each), for the rotation.
    for n in 0..25 {
        let reply = svc.post_json("/inbox", &format!(r#"{{"kind":"noise","n":{n}}}"#));
        assert_eq!(reply.status, 202, "{reply:?}");
    }

    let log = svc.data_dir().join("logs").join("service.jsonl");
    // The run's records may reach the file in more than one batch: wait
    // for the job's own output line as well as for some record of the run.
    let says_hello = |l: &Value| {
        l["message"]
            .as_str()
            .is_some_and(|m| m.contains("hello from the logged job"))
    };
    let lines = svc.poll_until(
        &format!(
            "a record of run {id} and the job's own output in {}",
            log.display()
        ),
        WRITE_TIMEOUT,
        || {
            let lines = json_lines(&log);
            if lines
                .iter()
                .any(|l| l["run_id"] == id.as_str() && l["job"] == "logged")
                && lines.iter().any(says_hello)
            {
                Ok(lines)
            } else {
                let last: Vec<String> = lines.iter().rev().take(5).map(Value::to_string).collect();
                Err(format!(
                    "{} line(s), the last ones (newest first): {last:?}",
                    lines.len()
                ))
            }
        },
    );
    for line in &lines {
        for key in ["ts", "level", "target", "message"] {
            assert!(!line[key].is_null(), "record without {key}: {line}");
        }
    }
    let job_output = lines
        .iter()
        .find(|l| says_hello(l))
        .unwrap_or_else(|| panic!("the job's own output is not in {}", log.display()));
    assert_eq!(job_output["run_id"], id.as_str(), "{job_output}");
    assert_eq!(job_output["job"], "logged", "{job_output}");

    // Rotation: small.jsonl → small.jsonl.1 → small.jsonl.2, no more.
    let small = svc.data_dir().join("logs-small");
    let rotated = small.join("small.jsonl.1");
    svc.poll_until(
        &format!("{} (rotation)", rotated.display()),
        WRITE_TIMEOUT,
        || {
            if rotated.is_file() {
                Ok(())
            } else {
                Err(format!("{} holds {:?}", small.display(), listing(&small)))
            }
        },
    );
    for file in ["small.jsonl", "small.jsonl.1", "small.jsonl.2"] {
        let path = small.join(file);
        let lines = json_lines(&path);
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        assert!(
            size <= 2000 || lines.len() == 1,
            "{} is {size} bytes, over max_bytes = 2000",
            path.display()
        );
    }
    assert!(
        !small.join("small.jsonl.3").exists(),
        "max_files = 2 keeps two rotated files"
    );
    assert!(
        !json_lines(&rotated).is_empty(),
        "{} is empty",
        rotated.display()
    );

    for name in ["jsonl-logger", "jsonl-small"] {
        let entry = plugin(&svc, name).unwrap_or_else(|| panic!("{name} is gone"));
        assert!(count(&entry, "calls") >= 1, "{entry}");
        assert_eq!(
            count(&entry, "failures"),
            0,
            "last_error: {}; {entry}",
            last_error(&entry)
        );
    }
}
