//! A plugin says what it needs (issue 20): `needs-grant`, written with the
//! SDK, carries a manifest (`openfn_plugin_sdk::manifest!`) asking for a
//! writable folder at `/out` and a string `prefix`, with a default
//! `suffix`. Under a table granting neither:
//!
//! - the service refuses it, and `/api/plugins` says what to add to the
//!   table, naming the folder and the key;
//! - `check` reports the same and exits 1; `plugin inspect` lists the
//!   manifest;
//! - once the table grants them (edited while serving), it loads, gets the
//!   default `suffix`, and is called.

use std::time::Duration;

use serde_json::Value;

use crate::cli::{describe, microservice, output, text};
use crate::harness::{Launch, RUN_TIMEOUT, run_id, wait_for_runs};
use crate::plugins_support::{last_error, replace_file, wait_plugin, wasm};

const PROJECT: &str = include_str!("../projects/plugins-manifest/project.toml");
/// Loading may compile; a reload waits for the 2 s scan, then compiles.
const LOAD: Duration = Duration::from_secs(90);

#[test]
fn a_plugin_lacking_a_grant_its_manifest_names_is_refused_saying_what_to_add() {
    let svc = Launch::new(PROJECT)
        .file_bytes("plugins/needs_grant.wasm", &wasm("needs_grant.wasm"))
        .start();
    let entry = wait_plugin(&svc, "needs-grant", "refused", LOAD, |p| {
        p["status"] == "failed"
    });
    let why = last_error(&entry);
    for needed in [
        "its [plugins.needs-grant] table does not grant",
        "a folder at guest path /out: add dirs = [{ data = \"needs-grant\", guest = \"/out\" }]",
        "config key prefix (a string): add config = { prefix = \"...\" }",
    ] {
        assert!(why.contains(needed), "no `{needed}` in: {entry}");
    }
    assert!(!why.contains("suffix"), "suffix has a default: {entry}");

    // `check` says the same, and `plugin inspect` shows what it asks for.
    let plugins = svc.project_dir().join("plugins");
    let mut check = microservice(svc.project_dir(), svc.project_dir(), svc.data_dir());
    check.arg("check");
    let out = output(check, None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("plugin `needs-grant` would not load")
            && stderr.contains("guest = \"/out\"")
            && stderr.contains("config key prefix"),
        "{}",
        describe(&out)
    );
    let mut inspect = microservice(svc.project_dir(), svc.project_dir(), svc.data_dir());
    inspect
        .args(["plugin", "inspect", "--json"])
        .arg(plugins.join("needs_grant.wasm"));
    let out = output(inspect, None);
    assert!(out.status.success(), "{}", describe(&out));
    let i: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["would_load"], false, "{i}");
    assert_eq!(i["manifest"]["dirs"][0]["guest"], "/out", "{i}");
    assert_eq!(i["manifest"]["dirs"][0]["writable"], true, "{i}");
    assert_eq!(i["manifest"]["config"]["prefix"]["type"], "string", "{i}");
    assert_eq!(
        i["manifest"]["config"]["suffix"]["default"], ".jsonl",
        "{i}"
    );
    let mut inspect = microservice(svc.project_dir(), svc.project_dir(), svc.data_dir());
    inspect
        .args(["plugin", "inspect"])
        .arg(plugins.join("needs_grant.wasm"));
    let out = output(inspect, None);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("folder     /out (read-write)")
            && stdout.contains("config     prefix: string, required")
            && stdout.contains("config     suffix: string, default \".jsonl\""),
        "{}",
        describe(&out)
    );

    // Granted what it asks for, it loads without a restart and is called.
    let project = svc.project_dir().join("project.toml");
    let text = std::fs::read_to_string(&project).unwrap();
    replace_file(
        &project,
        text.replace(
            "file = \"needs_grant.wasm\"",
            "file = \"needs_grant.wasm\"\ndirs = [{ data = \"granted\", guest = \"/out\" }]\nconfig = { prefix = \"echo\" }",
        )
        .as_bytes(),
    );
    wait_plugin(&svc, "needs-grant", "active", LOAD, |p| {
        p["status"] == "active"
    });
    let reply = svc.post_json("/inbox", r#"{"kind":"echo"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    let id = run_id(&wait_for_runs(&svc, "echo", "success", 1)[0]);
    let file = svc.data_dir().join("granted/echo-runs.jsonl");
    svc.poll_until("the run in granted/echo-runs.jsonl", RUN_TIMEOUT, || {
        let written = std::fs::read_to_string(&file).unwrap_or_default();
        if written.lines().any(|l| l == id) {
            Ok(())
        } else {
            Err(format!("{}: {written:?}", file.display()))
        }
    });
}
