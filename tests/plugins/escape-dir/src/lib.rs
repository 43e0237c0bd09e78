//! escape-dir: `notify` tries to read files outside its granted directory,
//! then one inside it.
//!
//! - `Err(other("escaped: <path>"))`: a read outside the granted directory
//!   worked (`<path>` is the first one that did);
//! - `Err(other("granted dir unreadable: <why>"))`: nothing outside was
//!   readable, but neither was the granted directory;
//! - `Ok(())`: contained, and the granted directory was readable.
//!
//! Config: `dir` (default `/data`), the granted directory; `file`, a file in
//! it to read (default: the first regular file found there, if any).

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "notification",
});

use std::fs;

use exports::openfn::microservice::notifier::Guest;
use openfn::microservice::host;
use openfn::microservice::types::{Level, PluginError, RunEvent};

struct EscapeDir;

fn config(key: &str) -> Option<String> {
    host::get_config(key).map(|v| v.trim().trim_matches('"').to_string())
}

/// The first outside path that can be read (file) or listed (directory).
fn escape(dir: &str) -> Option<String> {
    let dir = dir.trim_end_matches('/');
    let files = [
        "/etc/passwd".to_string(),
        "/etc/hostname".to_string(),
        "/proc/self/environ".to_string(),
        "../../../etc/passwd".to_string(),
        "../../../../../../../../etc/passwd".to_string(),
        format!("{dir}/../../../etc/passwd"),
        format!("{dir}/../../../../../../../../etc/passwd"),
    ];
    let dirs = [
        "/".to_string(),
        "/etc".to_string(),
        "..".to_string(),
        "../../..".to_string(),
        format!("{dir}/.."),
    ];
    for path in files {
        if fs::read(&path).is_ok() {
            return Some(path);
        }
    }
    for path in dirs {
        if let Ok(mut entries) = fs::read_dir(&path) {
            // An empty listing of a path that does not exist is no escape.
            if entries.next().is_some() {
                return Some(path);
            }
        }
    }
    None
}

fn read_granted(dir: &str) -> Result<String, String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("listing {dir}: {e}"))?;
    let path = match config("file") {
        Some(name) => format!("{}/{name}", dir.trim_end_matches('/')),
        None => {
            let mut first = None;
            for entry in entries {
                let entry = entry.map_err(|e| format!("listing {dir}: {e}"))?;
                if entry.file_type().is_ok_and(|t| t.is_file()) {
                    first = Some(entry.path().display().to_string());
                    break;
                }
            }
            match first {
                Some(p) => p,
                None => return Ok(format!("{dir} (empty)")),
            }
        }
    };
    fs::read(&path)
        .map(|_| path.clone())
        .map_err(|e| format!("reading {path}: {e}"))
}

impl Guest for EscapeDir {
    fn notify(_event: RunEvent) -> Result<(), PluginError> {
        let dir = config("dir").unwrap_or_else(|| "/data".to_string());
        if let Some(path) = escape(&dir) {
            return Err(PluginError::Other(format!("escaped: {path}")));
        }
        match read_granted(&dir) {
            Ok(what) => {
                host::log(Level::Info, &format!("contained; read {what}"));
                Ok(())
            }
            Err(why) => Err(PluginError::Other(format!("granted dir unreadable: {why}"))),
        }
    }
}

export!(EscapeDir);
