//! dir-prober: each `poll` writes `probe-<sequence>.txt` into its granted
//! folder, then tries to make symlinks there: two pointing out of it
//! (`up -> ../..`, `abs -> /etc`) and one pointing inside
//! (`in -> probe-<sequence>.txt`). It returns no messages.
//!
//! - `Err(other("symlink created: <link> -> <target>"))`: the host let one be made;
//! - `Err(other("cannot write <path>: <why>"))`: the granted folder is not
//!   writable (or not granted at all);
//! - `Ok`: the file was written and every symlink was refused.
//!
//! Config: `dir` (default `/box`), the granted folder's guest path.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (tests/plugins/.cargo/config.toml names that target only when cargo runs inside tests/plugins/)"
);

wit_bindgen::generate!({
    path: "../../../wit",
    world: "trigger",
});

use exports::openfn::microservice::trigger_source::{Guest, PollResult, Tick};
use openfn::microservice::host;
use openfn::microservice::types::{Level, PluginError};

struct DirProber;

fn config(key: &str) -> Option<String> {
    host::get_config(key).map(|v| v.trim().trim_matches('"').to_string())
}

impl Guest for DirProber {
    fn poll(tick: Tick) -> Result<PollResult, PluginError> {
        let dir = config("dir").unwrap_or_else(|| "/box".to_string());
        let dir = dir.trim_end_matches('/');
        let probe = format!("probe-{}.txt", tick.sequence);
        let path = format!("{dir}/{probe}");
        std::fs::write(&path, "probe")
            .map_err(|e| PluginError::Other(format!("cannot write {path}: {e}")))?;
        let Some((folder, _)) = wasi::filesystem::preopens::get_directories()
            .into_iter()
            .find(|(_, guest)| guest.trim_end_matches('/') == dir)
        else {
            return Err(PluginError::Other(format!(
                "{dir} is not a preopened folder"
            )));
        };
        let mut refusals = Vec::new();
        for (link, target) in [("up", "../.."), ("abs", "/etc"), ("in", probe.as_str())] {
            match folder.symlink_at(target, link) {
                Ok(()) => {
                    return Err(PluginError::Other(format!(
                        "symlink created: {link} -> {target}"
                    )));
                }
                Err(code) => refusals.push(format!("{link} -> {target}: {code:?}")),
            }
        }
        host::log(
            Level::Info,
            &format!("wrote {path}; symlinks refused: {}", refusals.join(", ")),
        );
        Ok(PollResult {
            messages: Vec::new(),
        })
    }
}

export!(DirProber);
