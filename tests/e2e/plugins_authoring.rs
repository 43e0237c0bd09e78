//! What a third-party plugin author runs into at load (issue 20):
//!
//! - a component importing `wasi:sockets` (as componentize-py's always
//!   does) loads, and every socket call it makes is refused at run time;
//! - a `.wasm` without a `[plugins.<name>]` table loads with a warning
//!   saying it has no grants;
//! - `LOG_LEVEL=debug` shows the service's debug lines, not wasmtime's or
//!   cranelift's compiler logs;
//! - editing a `[plugins.<name>]` table while serving reloads that plugin
//!   with the new grants; a project file that no longer parses leaves it
//!   serving with the old ones, the error shown in `/api/plugins`;
//! - `plugin inspect` reads the service's compile cache (and writes
//!   none), and outside a project says there is no project.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::cli::{Scratch, describe, microservice, output, text};
use crate::harness::{Launch, RUN_TIMEOUT, Service, run_id};
use crate::plugins_support::{Listener, count, last_error, wait_plugin, wasm};

const PROJECT: &str = include_str!("../projects/plugins-authoring/project.toml");
/// Loading may compile; a reload waits for the 2 s scan, then compiles.
const LOAD: Duration = Duration::from_secs(90);
const RECORD: Duration = Duration::from_secs(60);

/// Run ids the recorder wrote to `DATA_DIR/<folder>/events.jsonl`.
fn recorded(svc: &Service, folder: &str) -> Vec<String> {
    std::fs::read_to_string(svc.data_dir().join(folder).join("events.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| v["run_id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Starts an `echo` run and waits until the recorder wrote it to `folder`.
fn echo_recorded_in(svc: &Service, folder: &str) -> String {
    let before: HashSet<String> = svc.runs("echo").iter().map(run_id).collect();
    let reply = svc.post_json("/inbox", r#"{"kind":"echo"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let run = svc.poll_until("the echo run to finish", RUN_TIMEOUT, || {
        let runs = svc.runs("echo");
        runs.iter()
            .find(|r| !before.contains(&run_id(r)) && r["status"] == "success")
            .cloned()
            .ok_or_else(|| format!("echo runs: {runs:?}"))
    });
    let id = run_id(&run);
    svc.poll_until(
        &format!("run {id} in {folder}/events.jsonl"),
        RECORD,
        || {
            let ids = recorded(svc, folder);
            if ids.contains(&id) {
                Ok(())
            } else {
                Err(format!("recorded in {folder}: {ids:?}"))
            }
        },
    );
    id
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no `{from}`", path.display());
    // Written whole in one step; a new length, so the scan sees the change
    // even within one mtime tick.
    crate::plugins_support::replace_file(path, text.replace(from, to).as_bytes());
}

#[test]
fn sockets_load_but_are_refused_untabled_plugins_warn_and_tables_reload() {
    let target = Listener::start();
    let svc = Launch::new(&PROJECT.replace("{port}", &target.port.to_string()))
        .file_bytes("plugins/recorder.wasm", &wasm("recorder.wasm"))
        .file_bytes("plugins/socket_probe.wasm", &wasm("socket_probe.wasm"))
        .file_bytes("plugins/untabled.wasm", &wasm("noop_notify.wasm"))
        .env("LOG_LEVEL", "debug")
        .start();
    for name in ["recorder", "socket-probe", "untabled"] {
        wait_plugin(&svc, name, "active", LOAD, |p| p["status"] == "active");
    }
    let warning = svc.log_lines_with("has no [plugins.untabled] table");
    assert!(
        warning.iter().any(|l| l.contains("no grants")),
        "a plugin without a table should be warned about: {}",
        svc.log_tail()
    );
    assert!(
        svc.log_lines_with("has no [plugins.recorder] table")
            .is_empty(),
        "{}",
        svc.log_tail()
    );

    // Each run reaches the socket probe, whose socket calls are all refused.
    echo_recorded_in(&svc, "out");
    let probe = wait_plugin(&svc, "socket-probe", "a failed call", LOAD, |p| {
        count(p, "failures") >= 1
    });
    let why = last_error(&probe);
    assert!(why.contains("sockets refused"), "{probe}");
    assert!(why.contains("tcp: ") && why.contains("lookup: "), "{probe}");
    assert_eq!(target.connections(), 0, "a socket reached the listener");

    // LOG_LEVEL=debug: the service's debug lines, no compiler logs (the
    // plugins were compiled above, with no cache yet).
    let logs = svc.logs();
    assert!(
        logs.contains("DEBUG") && logs.contains("microservice::"),
        "{}",
        svc.log_tail()
    );
    for crate_name in ["cranelift", "wasmtime_", "wasmtime::"] {
        let noisy: Vec<&str> = logs
            .lines()
            .filter(|l| l.contains(" DEBUG ") && l.contains(crate_name))
            .take(3)
            .collect();
        assert!(noisy.is_empty(), "{crate_name} debug lines: {noisy:?}");
    }

    // An edited table reloads the plugin with the new grant.
    let project = svc.project_dir().join("project.toml");
    edit(
        &project,
        r#"dirs = [{ data = "out", guest = "/out" }]"#,
        r#"dirs = [{ data = "elsewhere", guest = "/out" }]"#,
    );
    let reloaded = wait_plugin(&svc, "recorder", "reloaded", LOAD, |p| {
        count(p, "reloads") == 1
    });
    assert_eq!(reloaded["status"], "active", "{reloaded}");
    let id = echo_recorded_in(&svc, "elsewhere");
    assert!(
        !recorded(&svc, "out").contains(&id),
        "written to the old folder"
    );
    assert!(
        !svc.log_lines_with("its [plugins.recorder] table changed")
            .is_empty(),
        "{}",
        svc.log_tail()
    );

    // A project file that no longer parses changes nothing, and says so.
    edit(&project, "[plugins.recorder]", "[plugins.recorder");
    let noted = wait_plugin(&svc, "recorder", "the parse error", LOAD, |p| {
        last_error(p).contains("does not load")
    });
    assert_eq!(noted["status"], "active", "{noted}");
    assert_eq!(count(&noted, "reloads"), 1, "{noted}");
    echo_recorded_in(&svc, "elsewhere");

    // `plugin inspect` reads the cache the service wrote, and writes none.
    let plugins = svc.project_dir().join("plugins");
    edit(&project, "[plugins.recorder", "[plugins.recorder]");
    let mut cmd = microservice(svc.project_dir(), svc.project_dir(), svc.data_dir());
    cmd.args(["plugin", "inspect", "--json"])
        .arg(plugins.join("recorder.wasm"));
    let out = output(cmd, None);
    assert!(out.status.success(), "{}", describe(&out));
    let i: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["from_cache"], true, "{i}");
    assert_eq!(i["would_load"], true, "{i}");
}

#[test]
fn plugin_inspect_outside_a_project_says_so_and_writes_no_cache() {
    let bare = Scratch::new(None);
    let file = crate::harness::wasm_plugins().1.join("recorder.wasm");
    let out = bare.run(&["plugin", "inspect", file.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("project:    none (") && stdout.contains("does not exist"),
        "{}",
        describe(&out)
    );
    assert!(
        stdout.contains("grants:     none (no project, so no [plugins.recorder] table"),
        "{}",
        describe(&out)
    );
    let out = bare.run(
        &["plugin", "inspect", "--json", file.to_str().unwrap()],
        None,
    );
    let i: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["project"], Value::Null, "{i}");
    assert_eq!(i["from_cache"], false, "{i}");
    assert!(
        !bare.data().exists(),
        "inspect wrote into DATA_DIR: {}",
        bare.data().display()
    );
}
