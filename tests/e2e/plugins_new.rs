//! `microservice plugin new <kind> <name> --lang rust|python` (issue 20):
//! each of the four kinds in Rust, and the trigger and notification kinds
//! in Python, is generated, built with its own build script as generated
//! (the Python one installs componentize-py into the plugin's folder),
//! dropped into one served project with the table the command printed, and
//! shown to have been called, by its side effect:
//!
//! - trigger: its messages start runs of the job whose criteria match them;
//! - notification: each run is appended to its granted folder;
//! - logging: the service's log lines are written to its granted folder;
//! - persistence: it is the inbox's message store, the receipts stored in
//!   its folder and listed done by `/api/messages`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{BIN, Launch, output_within, run_id, scratch_dir, temp_dir, wait_for_runs};
use crate::plugins_support::wait_plugin;

/// Building a template compiles wit-bindgen the first time (the target
/// folder is shared and kept, so later builds take seconds).
const BUILD_TIMEOUT: Duration = Duration::from_secs(900);
const LOAD: Duration = Duration::from_secs(90);
/// The trigger template's table polls every 10 s.
const POLLED: Duration = Duration::from_secs(90);

const KINDS: &[(&str, &str)] = &[
    ("trigger", "tpl-trigger"),
    ("notification", "tpl-notify"),
    ("logging", "tpl-log"),
    ("persistence", "tpl-store"),
];

/// Runs `plugin new`, then the project's build script; returns the built
/// `.wasm` and the table the command printed.
fn generate_and_build(root: &Path, kind: &str, name: &str, lang: &str) -> (PathBuf, String) {
    let mut new = Command::new(BIN);
    new.current_dir(root)
        .args(["plugin", "new", kind, name, "--lang", lang])
        .stdin(Stdio::null());
    let out = output_within(&mut new, None, Duration::from_secs(60)).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "plugin new {kind} {name}: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = stdout[stdout
        .find(&format!("[plugins.{name}]"))
        .unwrap_or_else(|| panic!("no table printed: {stdout}"))..]
        .to_string();
    let project = root.join(name);
    let source = match lang {
        "rust" => "src/lib.rs",
        "python" => "app.py",
        _ => "app.js",
    };
    for file in ["build.sh", "README.md", source] {
        assert!(project.join(file).is_file(), "{name}: no {file}");
    }
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    assert!(
        readme.contains(table.trim()),
        "{name}: README lacks the table"
    );
    let mut build = Command::new(project.join("build.sh"));
    build
        .current_dir(&project)
        .env(
            "CARGO_TARGET_DIR",
            scratch_dir().join("wasm-target/templates"),
        )
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null());
    let out = output_within(&mut build, None, BUILD_TIMEOUT).unwrap();
    assert!(
        out.status.success(),
        "{name}/build.sh: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let wasm = project.join(format!("{name}.wasm"));
    assert!(
        wasm.is_file(),
        "{name}: build.sh wrote no {}",
        wasm.display()
    );
    // The build put manifest.json into the component, where the service
    // reads it.
    let mut inspect = Command::new(BIN);
    inspect
        .current_dir(&project)
        .args(["plugin", "inspect", "--json"])
        .arg(&wasm)
        .env_remove("PROJECT_DIR")
        .env_remove("DATA_DIR")
        .stdin(Stdio::null());
    let out = output_within(&mut inspect, None, BUILD_TIMEOUT).unwrap();
    let found: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(project.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(found["manifest"]["manifest"], 1, "{name}: {found}");
    for (key, empty) in [
        ("dirs", json!([])),
        ("hosts", json!([])),
        ("config", json!({})),
    ] {
        assert_eq!(
            found["manifest"][key],
            written.get(key).cloned().unwrap_or(empty),
            "{name}: {key}: {found}"
        );
    }
    (wasm, table)
}

#[test]
fn each_rust_template_builds_loads_and_is_called() {
    let root = temp_dir("e2e-plugin-new-");
    let mut toml = String::from(
        "[inbox]\nstore = \"tpl-store\"\n\n\
         [jobs.echo]\nadaptor = \"@openfn/language-common\"\ntrigger = \"echo\"\nexpression = \"fn(state => state)\"\n\
         [triggers.echo]\ncriteria = { kind = \"echo\" }\n\n\
         [jobs.polled]\nadaptor = \"@openfn/language-common\"\ntrigger = \"polled\"\nexpression = \"fn(state => state)\"\n\
         [triggers.polled]\ncriteria = { plugin = \"tpl-trigger\", hello = \"world\" }\n\n",
    );
    let mut built = Vec::new();
    for (kind, name) in KINDS {
        let (wasm, table) = generate_and_build(root.path(), kind, name, "rust");
        // The persistence table's printed [inbox] lines are comments: the
        // project above sets the store.
        toml.push_str(&table);
        toml.push('\n');
        built.push((
            format!("plugins/{name}.wasm"),
            std::fs::read(&wasm).unwrap(),
        ));
    }
    // The persistence template is the receipts' store only in the
    // embedded mode: with PostgreSQL the receipts are a table.
    let mut launch = Launch::new(&toml).embedded();
    for (path, bytes) in &built {
        launch = launch.file_bytes(path, bytes);
    }
    let svc = launch.start();
    for (kind, name) in KINDS {
        let entry = wait_plugin(&svc, name, "active", LOAD, |p| p["status"] == "active");
        assert_eq!(entry["kind"], *kind, "{entry}");
    }

    // The inbox's receipts go through the persistence template...
    let reply = svc.post_json("/inbox", r#"{"kind":"echo"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let runs = wait_for_runs(&svc, "echo", "success", 1);
    let id = run_id(&runs[0]);
    let store_log = svc.data_dir().join("tpl-store/store.log");
    svc.poll_until("the receipt acknowledged in the store", LOAD, || {
        let done = svc.get_json("/api/messages?status=done");
        let listed = done
            .as_array()
            .is_some_and(|l| l.iter().any(|m| m["body"].to_string().contains("echo")));
        let text = std::fs::read_to_string(&store_log).unwrap_or_default();
        if listed && text.contains("\"kind\":\"echo\"") {
            Ok(())
        } else {
            Err(format!("done: {done}; {}: {text}", store_log.display()))
        }
    });

    // ...the notification template writes each run down...
    let events = svc.data_dir().join("tpl-notify/events.jsonl");
    svc.poll_until("the run in the notification's file", LOAD, || {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        if text.contains(&id) && text.contains("\"status\":\"success\"") {
            Ok(())
        } else {
            Err(format!("{}: {text}", events.display()))
        }
    });

    // ...the trigger template's messages start `polled` runs...
    let polled = svc.poll_until("a run started by the trigger template", POLLED, || {
        let runs = svc.runs("polled");
        runs.iter()
            .find(|r| r["status"] == "success")
            .cloned()
            .ok_or_else(|| format!("polled runs: {runs:?}"))
    });
    assert_eq!(polled["job"], "polled", "{polled}");

    // ...and the logging template writes the service's log lines.
    let log = svc.data_dir().join("tpl-log/tpl-log.log");
    svc.poll_until(
        "service log lines in the logging template's file",
        LOAD,
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.lines().any(|l| l.contains(" INFO microservice::")) {
                Ok(())
            } else {
                Err(format!("{}: {text}", log.display()))
            }
        },
    );
}

#[test]
fn the_python_trigger_and_notification_templates_build_load_and_are_called() {
    trigger_and_notification_templates_are_called("python", "py");
}

#[test]
fn the_javascript_trigger_and_notification_templates_build_load_and_are_called() {
    trigger_and_notification_templates_are_called("js", "js");
}

/// The trigger and notification templates of `lang`, named `<prefix>-trigger`
/// and `<prefix>-notify`, built as generated and served in one project.
fn trigger_and_notification_templates_are_called(lang: &str, prefix: &str) {
    let (trigger, notify) = (format!("{prefix}-trigger"), format!("{prefix}-notify"));
    let root = temp_dir("e2e-plugin-new-");
    let mut toml = format!(
        "[jobs.echo]\nadaptor = \"@openfn/language-common\"\ntrigger = \"echo\"\nexpression = \"fn(state => state)\"\n\
         [triggers.echo]\ncriteria = {{ kind = \"echo\" }}\n\n\
         [jobs.polled]\nadaptor = \"@openfn/language-common\"\ntrigger = \"polled\"\nexpression = \"fn(state => state)\"\n\
         [triggers.polled]\ncriteria = {{ plugin = \"{trigger}\", hello = \"world\" }}\n\n",
    );
    let kinds = [
        ("trigger", trigger.as_str()),
        ("notification", notify.as_str()),
    ];
    let mut built = Vec::new();
    for (kind, name) in kinds {
        let (wasm, table) = generate_and_build(root.path(), kind, name, lang);
        toml.push_str(&table);
        toml.push('\n');
        built.push((
            format!("plugins/{name}.wasm"),
            std::fs::read(&wasm).unwrap(),
        ));
    }
    let mut launch = Launch::new(&toml);
    for (path, bytes) in &built {
        launch = launch.file_bytes(path, bytes);
    }
    let svc = launch.start();
    // Each is a 12-18 MiB component with an interpreter inside; they
    // compile in parallel before the port opens.
    for (kind, name) in kinds {
        let entry = wait_plugin(&svc, name, "active", LOAD, |p| p["status"] == "active");
        assert_eq!(entry["kind"], kind, "{entry}");
    }

    let reply = svc.post_json("/inbox", r#"{"kind":"echo"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let runs = wait_for_runs(&svc, "echo", "success", 1);
    let id = run_id(&runs[0]);
    let events = svc.data_dir().join(format!("{notify}/events.jsonl"));
    svc.poll_until("the run in the notification template's file", LOAD, || {
        let text = std::fs::read_to_string(&events).unwrap_or_default();
        let line = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|v| v["run_id"] == id.as_str());
        match line {
            Some(v) if v["status"] == "success" && v["job"] == "echo" => Ok(()),
            _ => Err(format!("{}: {text}", events.display())),
        }
    });
    let polled = svc.poll_until("a run started by the trigger template", POLLED, || {
        let runs = svc.runs("polled");
        runs.iter()
            .find(|r| r["status"] == "success")
            .cloned()
            .ok_or_else(|| format!("polled runs: {runs:?}"))
    });
    assert_eq!(polled["job"], "polled", "{polled}");
}
