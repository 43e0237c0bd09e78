//! Trigger plugins: polled on their `interval`, their messages matched like
//! `/inbox` receipts. file-drop (first-party, built from source) turns JSON
//! files dropped into a granted project folder into runs; counter-trigger
//! (a test plugin) shows that each poll has a new sequence number.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Launch, RUN_TIMEOUT, wait_for_runs};
use crate::plugins_support::{count, last_error, plugin, replace_file, wait_plugin, wasm};

const PROJECT: &str = include_str!("../projects/plugins-triggers/project.toml");

#[test]
fn file_drop_turns_dropped_files_into_runs() {
    let svc = Launch::new(PROJECT)
        .file_bytes("plugins/file-drop.wasm", &wasm("file_drop.wasm"))
        .start();
    let entry = wait_plugin(&svc, "file-drop", "loaded", Duration::from_secs(10), |p| {
        p["status"] == "active"
    });
    assert_eq!(entry["kind"], "trigger", "{entry}");

    // The granted folder is created when the plugin loads.
    let inbox = svc.project_dir().join("inbox");
    assert!(inbox.is_dir(), "{} was not created", inbox.display());
    replace_file(&inbox.join("a.json"), br#"{"number":2}"#);
    replace_file(&inbox.join("bad.json"), b"{this is not json");

    let state = svc.wait_until("double's state with data.number == 4", RUN_TIMEOUT, || {
        svc.job_state("double").filter(|s| s["data"]["number"] == 4)
    });
    assert_eq!(state["data"], json!({"number": 4}), "{state}");
    let runs = wait_for_runs(&svc, "double", "success", 1);
    assert_eq!(runs.len(), 1, "one file, one run: {runs:?}");

    let processed = inbox.join("processed").join("a.json");
    let rejected = inbox.join("rejected").join("bad.json");
    svc.wait_until(
        &format!("{} and {}", processed.display(), rejected.display()),
        Duration::from_secs(10),
        || (processed.is_file() && rejected.is_file()).then_some(()),
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
    let entry = wait_plugin(
        &svc,
        "counter-trigger",
        "loaded",
        Duration::from_secs(10),
        |p| p["status"] == "active",
    );
    assert_eq!(entry["kind"], "trigger", "{entry}");

    wait_for_runs(&svc, "second-tick", "success", 1);
    // Polls 3, 4 and 5 send {"counter":3..5}, which match nothing.
    let entry = wait_plugin(
        &svc,
        "counter-trigger",
        "5 polls",
        Duration::from_secs(20),
        |p| p["calls"].as_u64() >= Some(5),
    );
    assert_eq!(
        count(&entry, "failures"),
        0,
        "last_error: {}; {entry}",
        last_error(&entry)
    );
    svc.wait_until("no run in progress", RUN_TIMEOUT, || {
        svc.runs_query("status=running").is_empty().then_some(())
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
