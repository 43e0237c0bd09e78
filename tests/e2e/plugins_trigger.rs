//! Trigger plugins: polled on their `interval`, their messages decoded and
//! matched like `/inbox` receipts. file-drop (first-party, built from
//! source) turns JSON files dropped into a granted project folder into runs;
//! counter-trigger (a test plugin) shows that each poll has a new sequence
//! number; shaped-trigger (a test plugin) that a message takes the inbox's
//! decoding step and keeps its metadata.

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

const SHAPED: &str = r#"
[jobs.bom]
trigger = "bom"
expression = "fn(state => state)"

[jobs.xml]
trigger = "xml"
expression = "fn(state => state)"

[jobs.form]
trigger = "form"
expression = "fn(state => state)"

[triggers.bom]
criteria = { shape = "bom" }

[triggers.xml]
criteria = { reading = { "@shape" = "xml" } }

[triggers.form]
criteria = { shape = "form" }

[plugins.shaped-trigger]
interval = "1s"
"#;

#[test]
fn a_trigger_message_takes_the_inbox_decoding_step_and_keeps_its_metadata() {
    let svc = Launch::new(SHAPED)
        .file_bytes("plugins/shaped-trigger.wasm", &wasm("shaped_trigger.wasm"))
        .start();
    let state_of = |job: &str| {
        svc.wait_until(&format!("{job}'s state"), RUN_TIMEOUT, || {
            svc.job_state(job)
        })
    };
    // JSON behind a byte-order mark.
    let bom = state_of("bom");
    assert_eq!(bom["data"], json!({"shape": "bom"}), "{bom}");
    assert_eq!(
        bom["receipt"],
        json!({"source": "plugin:shaped-trigger", "metadata": {"file": "bom.json"}}),
        "{bom}"
    );
    // XML, as its content-type metadata says, by the XML convention.
    let xml = state_of("xml");
    assert_eq!(
        xml["data"],
        json!({"reading": {"@shape": "xml", "v": ["7", "8"]}}),
        "{xml}"
    );
    assert_eq!(
        xml["receipt"]["metadata"],
        json!({"content-type": "text/xml", "file": "reading.xml"}),
        "{xml}"
    );
    // An urlencoded form, its repeated key an array.
    let form = state_of("form");
    assert_eq!(
        form["data"],
        json!({"shape": "form", "tag": ["a", "b"]}),
        "{form}"
    );
    // The two that do not decode are logged, named, and skipped; the poll
    // itself did not fail.
    let refusals = svc.wait_until("two refusals in the log", RUN_TIMEOUT, || {
        let logs = svc.logs();
        let lines: Vec<String> = logs
            .lines()
            .filter(|l| l.contains("a trigger plugin's message was refused"))
            .map(str::to_string)
            .collect();
        (lines.len() >= 2).then_some(lines)
    });
    assert!(
        refusals[0].contains("plugin:shaped-trigger") && refusals[0].contains("not valid JSON"),
        "{refusals:?}"
    );
    assert!(refusals[1].contains("not valid XML"), "{refusals:?}");
    let entry = plugin(&svc, "shaped-trigger").expect("shaped-trigger is listed");
    assert_eq!(
        count(&entry, "failures"),
        0,
        "last_error: {}; {entry}",
        last_error(&entry)
    );
    let all = svc.runs_query("limit=1000");
    assert_eq!(all.len(), 3, "one run per decodable message: {all:?}");
}
