//! Trigger plugins: polled on their `interval`, their messages matched like
//! `/inbox` receipts. file-drop (first-party, built from source) turns JSON
//! files dropped into a granted project folder into runs; counter-trigger
//! (a test plugin) shows that each poll has a new sequence number.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::harness::{Launch, RUN_TIMEOUT, wait_for_runs};
use crate::plugins_support::{count, last_error, plugin, replace_file, wait_plugin, wasm};

const PROJECT: &str = include_str!("../projects/plugins-triggers/project.toml");
/// Plugins are compiled before the service listens; this is slack for the
/// listing on a busy machine.
const LOAD_TIMEOUT: Duration = Duration::from_secs(60);
/// Polls are due every second (`interval = "1s"`), but each is a call into
/// a fresh instance behind whatever else the service is doing: a busy
/// machine stretches the gaps, so waiting for a few polls or for a poll to
/// have moved the files needs room.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);

/// The files under `dir` (one level of subfolders), for failure messages.
fn listing(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            for inner in std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                found.push(format!("{name}/{}", inner.file_name().to_string_lossy()));
            }
        } else {
            found.push(name);
        }
    }
    found.sort();
    found
}

#[test]
fn file_drop_turns_dropped_files_into_runs() {
    let svc = Launch::new(PROJECT)
        .file_bytes("plugins/file-drop.wasm", &wasm("file_drop.wasm"))
        .start();
    let entry = wait_plugin(&svc, "file-drop", "loaded", LOAD_TIMEOUT, |p| {
        p["status"] == "active"
    });
    assert_eq!(entry["kind"], "trigger", "{entry}");

    // The granted folder is created when the plugin loads.
    let inbox = svc.project_dir().join("inbox");
    assert!(inbox.is_dir(), "{} was not created", inbox.display());
    replace_file(&inbox.join("a.json"), br#"{"number":2}"#);
    replace_file(&inbox.join("bad.json"), b"{this is not json");

    let state = svc.poll_until(
        "double's state with data.number == 4",
        RUN_TIMEOUT,
        || match svc.job_state("double") {
            Some(s) if s["data"]["number"] == 4 => Ok(s),
            other => Err(format!(
                "state {other:?}; {} holds {:?}",
                inbox.display(),
                listing(&inbox)
            )),
        },
    );
    assert_eq!(state["data"], json!({"number": 4}), "{state}");
    let runs = wait_for_runs(&svc, "double", "success", 1);
    assert_eq!(runs.len(), 1, "one file, one run: {runs:?}");

    let processed = inbox.join("processed").join("a.json");
    let rejected = inbox.join("rejected").join("bad.json");
    svc.poll_until(
        &format!("{} and {}", processed.display(), rejected.display()),
        POLL_TIMEOUT,
        || {
            if processed.is_file() && rejected.is_file() {
                Ok(())
            } else {
                Err(format!("{} holds {:?}", inbox.display(), listing(&inbox)))
            }
        },
    );
    assert_eq!(std::fs::read(&processed).unwrap(), br#"{"number":2}"#);
    assert!(
        !inbox.join("a.json").exists(),
        "a.json is still in the inbox"
    );
    assert!(
        !inbox.join("bad.json").exists(),
        "bad.json is still in the inbox"
    );

    let entry = plugin(&svc, "file-drop").expect("file-drop is listed");
    assert_eq!(
        count(&entry, "failures"),
        0,
        "last_error: {}; {entry}",
        last_error(&entry)
    );
}

#[test]
fn counter_trigger_starts_one_run_for_its_second_poll() {
    let svc = Launch::new(PROJECT)
        .file_bytes(
            "plugins/counter-trigger.wasm",
            &wasm("counter_trigger.wasm"),
        )
        .start();
    let entry = wait_plugin(&svc, "counter-trigger", "loaded", LOAD_TIMEOUT, |p| {
        p["status"] == "active"
    });
    assert_eq!(entry["kind"], "trigger", "{entry}");

    wait_for_runs(&svc, "second-tick", "success", 1);
    // Polls 3, 4 and 5 send {"counter":3..5}, which match nothing.
    let entry = wait_plugin(&svc, "counter-trigger", "5 polls", POLL_TIMEOUT, |p| {
        p["calls"].as_u64() >= Some(5)
    });
    assert_eq!(
        count(&entry, "failures"),
        0,
        "last_error: {}; {entry}",
        last_error(&entry)
    );
    svc.poll_until("no run in progress", RUN_TIMEOUT, || {
        let running = svc.runs_query("status=running");
        if running.is_empty() {
            Ok(())
        } else {
            Err(format!("still running: {running:?}"))
        }
    });

    let runs = svc.runs("second-tick");
    assert_eq!(runs.len(), 1, "exactly one run for sequence 2: {runs:?}");
    assert_eq!(runs[0]["status"], "success", "{runs:?}");
    assert_eq!(runs[0]["trigger"], "counter-2", "{runs:?}");
    let state = svc
        .job_state("second-tick")
        .expect("second-tick saved its state");
    assert_eq!(state["data"], json!({"counter": 2}), "{state}");
    let all = svc.runs_query("limit=1000");
    assert_eq!(all.len(), 1, "no other job ran: {all:?}");
}
