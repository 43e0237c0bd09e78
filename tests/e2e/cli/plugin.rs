//! `microservice plugin inspect` and `plugin list` on the first-party
//! plugins, and `check` over a plugins folder.

use serde_json::Value;

use super::{Scratch, describe, text};
use crate::harness::wasm_plugins;

/// Kind and world of each first-party plugin.
const FIRST_PARTY: &[(&str, &str, &str, &str)] = &[
    ("file_drop.wasm", "trigger", "trigger", "poll"),
    ("journal.wasm", "persistence", "persistence", "enqueue"),
    ("jsonl_logger.wasm", "logging", "logging", "write-batch"),
    (
        "webhook_notify.wasm",
        "notification",
        "notification",
        "notify",
    ),
];

#[test]
fn plugin_inspect_describes_each_first_party_plugin() {
    let (first_party, test_plugins) = wasm_plugins();
    let bare = Scratch::new(None);
    for (file, kind, world, function) in FIRST_PARTY {
        let path = first_party.join(file);
        let out = bare.run(
            &["plugin", "inspect", "--json", path.to_str().unwrap()],
            None,
        );
        assert!(out.status.success(), "{file}: {}", describe(&out));
        let i: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(i["kind"], *kind, "{file}: {i}");
        assert_eq!(
            i["world"],
            format!("openfn:microservice/{world}@0.1.0"),
            "{file}: {i}"
        );
        assert_eq!(i["size"], std::fs::metadata(&path).unwrap().len(), "{file}");
        let exports = i["exports"].as_array().unwrap();
        assert!(
            exports.iter().any(|e| e["functions"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f == function))),
            "{file} should export {function}: {i}"
        );
        let imports: Vec<&str> = i["imports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert!(
            imports
                .iter()
                .any(|n| n.starts_with("openfn:microservice/host")),
            "{file}: {imports:?}"
        );
        // With no project, no grants: every plugin loads, and the one
        // needing the network is told its requests will be refused.
        assert_eq!(i["would_load"], true, "{file}: {i}");
        let http = i["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "http");
        if *file == "webhook_notify.wasm" {
            let http = http.unwrap_or_else(|| panic!("no http capability: {i}"));
            assert_eq!(http["granted"], false, "{i}");
            assert!(
                http["detail"].as_str().unwrap().contains("allowed_hosts"),
                "{i}"
            );
        }
    }

    // Under a project that grants it network access, the webhook plugin loads;
    // the text form says so.
    let granted = Scratch::new(Some(
        "[plugins.alerts]\nfile = \"webhook_notify.wasm\"\nconfig = { url = \"http://127.0.0.1:9/hook\" }\nallowed_hosts = [\"http://127.0.0.1:9\"]\n",
    ));
    let path = first_party.join("webhook_notify.wasm");
    let out = granted.run(&["plugin", "inspect", path.to_str().unwrap()], None);
    assert!(out.status.success(), "{}", describe(&out));
    let stdout = text(&out.stdout);
    for line in [
        "name:       alerts",
        "kind:       notification",
        "world:      openfn:microservice/notification@0.1.0",
        "grants:     [plugins.alerts]",
        "  yes http         http://127.0.0.1:9",
        "would load: yes",
    ] {
        assert!(
            stdout.contains(line),
            "missing `{line}`: {}",
            describe(&out)
        );
    }

    // `check` over a folder with every first-party plugin passes; add a
    // plugin that imports wasi:http without a grant (it loads, with a
    // warning) and a file that is no component at all (refused), and
    // `plugin list` and `check` both point at them.
    let plugins = granted.project().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    for (file, ..) in FIRST_PARTY {
        std::fs::copy(first_party.join(file), plugins.join(file)).unwrap();
    }
    let out = granted.run(&["check"], None);
    assert!(
        out.status.success(),
        "every first-party plugin loads: {}",
        describe(&out)
    );
    assert!(
        text(&out.stdout).contains("ok: the project and 4 plugins would load"),
        "{}",
        describe(&out)
    );
    std::fs::copy(
        test_plugins.join("sneaky_http.wasm"),
        plugins.join("sneaky_http.wasm"),
    )
    .unwrap();
    std::fs::write(plugins.join("garbage.wasm"), b"not wasm").unwrap();
    let out = granted.run(&["plugin", "list", "--json"], None);
    assert!(out.status.success(), "{}", describe(&out));
    let list: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = list.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "file_drop",
            "garbage",
            "journal",
            "jsonl_logger",
            "sneaky_http",
            "alerts"
        ]
    );
    let loads: Vec<bool> = list
        .iter()
        .map(|p| p["would_load"].as_bool().unwrap())
        .collect();
    assert_eq!(loads, [true, false, true, true, true, true], "{list:?}");
    let out = granted.run(&["plugin", "list"], None);
    assert!(
        text(&out.stdout).contains("sneaky_http          notification"),
        "{}",
        describe(&out)
    );
    let out = granted.run(&["check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("garbage.wasm: plugin `garbage` would not load"),
        "{}",
        describe(&out)
    );
    assert!(
        stderr.contains("warning: ")
            && stderr.contains("sneaky_http.wasm: plugin `sneaky_http` imports wasi:http")
            && stderr.contains("every request is refused"),
        "{}",
        describe(&out)
    );
}

#[test]
fn a_plugin_built_against_another_wit_text_would_not_load() {
    // stale-notify's names match the notification world, its `notify` type
    // does not: linking passes, instantiating fails, and so must the verdict.
    let (_, test_plugins) = wasm_plugins();
    let stale = test_plugins.join("stale_notify.wasm");
    let scratch = Scratch::new(None);
    let out = scratch.run(
        &["plugin", "inspect", "--json", stale.to_str().unwrap()],
        None,
    );
    assert!(out.status.success(), "{}", describe(&out));
    let i: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(i["kind"], "notification", "{i}");
    assert_eq!(i["would_load"], false, "{i}");
    let refusal = i["refusal"].as_str().unwrap();
    assert!(
        refusal.contains("does not match the Notification world")
            && refusal.contains("type mismatch"),
        "{i}"
    );
    let plugins = scratch.project().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(&stale, plugins.join("stale_notify.wasm")).unwrap();
    let out = scratch.run(&["check"], None);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert!(
        text(&out.stderr).contains("plugin `stale_notify` would not load: does not match"),
        "{}",
        describe(&out)
    );
}
