//! needs-grant: a notification plugin written with the SDK, whose manifest
//! says it needs a writable folder at `/out`, a string `prefix` and
//! (optionally) a `suffix`, default `.jsonl`. Appends each run's id to
//! `/out/<prefix>-runs<suffix>`.

use std::io::Write;

use openfn_plugin_sdk::{Notifier, PluginError, RunEvent, config};

openfn_plugin_sdk::manifest!(
    r#"{
    "manifest": 1,
    "dirs": [{ "guest": "/out", "writable": true }],
    "config": {
        "prefix": { "type": "string" },
        "suffix": { "type": "string", "default": ".jsonl" }
    }
}"#
);

struct NeedsGrant;

impl Notifier for NeedsGrant {
    fn notify(event: RunEvent) -> Result<(), PluginError> {
        // Both are there: the host refuses the plugin without a prefix and
        // hands it the manifest's default suffix.
        let prefix =
            config::string("prefix").ok_or_else(|| PluginError::Other("no prefix".into()))?;
        let suffix =
            config::string("suffix").ok_or_else(|| PluginError::Other("no suffix".into()))?;
        let path = format!("/out/{prefix}-runs{suffix}");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| PluginError::Unavailable(format!("cannot open {path}: {e}")))?;
        writeln!(file, "{}", event.run_id)
            .map_err(|e| PluginError::Unavailable(format!("cannot write {path}: {e}")))
    }
}

openfn_plugin_sdk::export!(NeedsGrant as notification);
