//! file-drop: a trigger plugin that turns JSON files dropped into a directory
//! into messages.
//!
//! On each poll it takes the `*.json` files of `dir`, oldest first (by
//! modification time, then name), at most `max_per_poll` of them. A file
//! holding valid JSON becomes a message (`source = "plugin:file-drop"`,
//! metadata `[("file", name)]`) and is moved into `<dir>/processed/` (or
//! deleted); any other file is moved into `<dir>/rejected/` with a warning.
//! Files whose name starts with `.` or ends with `.tmp` / `.part` are being
//! written and are left alone: write `x.json.tmp`, then rename it to `x.json`.
//!
//! Config:
//! - `dir`: default `/inbox` (a guest path the operator grants, writable).
//! - `max_per_poll`: default 100.
//! - `on_done`: `"move"` (default) or `"delete"`.
//! - `max_file_bytes`: larger files are rejected, default 16 MiB.
//!
//! The file is moved when `poll` returns its message, before the host has
//! stored that message: delivery from the folder is at most once.

#[cfg(not(any(target_arch = "wasm32", test)))]
compile_error!(
    "this crate is a WebAssembly component: build it with `--target wasm32-wasip2` \
     (plugins/.cargo/config.toml names that target only when cargo runs inside plugins/)"
);

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use openfn_plugin_sdk::config::{number as config_num, string as config};
use openfn_plugin_sdk::{Level, Message, PluginError, PollResult, Tick, Trigger, host};

struct FileDrop;

const SOURCE: &str = "plugin:file-drop";

#[derive(Clone, Copy, PartialEq)]
enum OnDone {
    Move,
    Delete,
}

struct Settings {
    dir: PathBuf,
    max_per_poll: usize,
    on_done: OnDone,
    max_file_bytes: u64,
}

impl Settings {
    fn load() -> Result<Settings, PluginError> {
        let on_done = match config("on_done").as_deref().map(str::trim) {
            None | Some("move") => OnDone::Move,
            Some("delete") => OnDone::Delete,
            Some(other) => {
                return Err(PluginError::Reject(format!(
                    "config `on_done` must be \"move\" or \"delete\", got `{other}`"
                )));
            }
        };
        Ok(Settings {
            dir: PathBuf::from(config("dir").unwrap_or_else(|| "/inbox".to_string())),
            max_per_poll: config_num("max_per_poll", 100)?
                .try_into()
                .unwrap_or(usize::MAX),
            on_done,
            max_file_bytes: config_num("max_file_bytes", 16 * 1024 * 1024)?,
        })
    }
}

/// Whether a directory entry is a finished drop.
fn wanted(name: &str) -> bool {
    name.ends_with(".json")
        && name.len() > ".json".len()
        && !name.starts_with('.')
        && !name.ends_with(".tmp")
        && !name.ends_with(".part")
}

/// The ready files, oldest first.
fn candidates(dir: &Path) -> io::Result<Vec<(SystemTime, String)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if !wanted(&name) {
            continue;
        }
        // A file that vanished or cannot be stat'ed now is seen next time.
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        found.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), name));
    }
    found.sort();
    Ok(found)
}

/// Moves `dir/name` into `dir/sub/`, under a new name if that one is taken.
fn move_into(dir: &Path, sub: &str, name: &str, now_ms: u64) -> io::Result<()> {
    let target_dir = dir.join(sub);
    fs::create_dir_all(&target_dir)?;
    let mut target = target_dir.join(name);
    if fs::symlink_metadata(&target).is_ok() {
        let stem = name.strip_suffix(".json").unwrap_or(name);
        let mut n = 0u32;
        loop {
            let candidate = if n == 0 {
                format!("{stem}.{now_ms}.json")
            } else {
                format!("{stem}.{now_ms}-{n}.json")
            };
            target = target_dir.join(candidate);
            if fs::symlink_metadata(&target).is_err() {
                break;
            }
            n += 1;
        }
    }
    fs::rename(dir.join(name), target)
}

enum Unread {
    /// Could not be read now (it may have gone, or the disk is unwell): try
    /// again on a later poll.
    Io(io::Error),
    /// Read, and not acceptable: it goes to `rejected/`.
    Invalid(String),
}

fn read_body(path: &Path, max_bytes: u64) -> Result<String, Unread> {
    let meta = fs::metadata(path).map_err(Unread::Io)?;
    if meta.len() > max_bytes {
        return Err(Unread::Invalid(format!(
            "{} bytes is more than max_file_bytes ({max_bytes})",
            meta.len()
        )));
    }
    let bytes = fs::read(path).map_err(Unread::Io)?;
    let text = String::from_utf8(bytes).map_err(|_| Unread::Invalid("not UTF-8".to_string()))?;
    serde_json::from_str::<serde::de::IgnoredAny>(&text)
        .map_err(|e| Unread::Invalid(format!("invalid JSON: {e}")))?;
    Ok(text)
}

impl Trigger for FileDrop {
    fn poll(tick: Tick) -> Result<PollResult, PluginError> {
        let settings = Settings::load()?;
        let dir = &settings.dir;
        let files = candidates(dir)
            .map_err(|e| PluginError::Unavailable(format!("listing {}: {e}", dir.display())))?;

        let mut messages = Vec::new();
        for (_, name) in files.into_iter().take(settings.max_per_poll) {
            let path = dir.join(&name);
            match read_body(&path, settings.max_file_bytes) {
                Ok(body) => {
                    let done = match settings.on_done {
                        OnDone::Move => move_into(dir, "processed", &name, tick.now_ms),
                        OnDone::Delete => fs::remove_file(&path),
                    };
                    // A file that cannot be moved away would come back on
                    // every poll: leave it out and say so.
                    if let Err(e) = done {
                        host::log(
                            Level::Error,
                            &format!("{name}: cannot move it out of the way, skipped: {e}"),
                        );
                        continue;
                    }
                    messages.push(Message {
                        body,
                        source: SOURCE.to_string(),
                        metadata: vec![("file".to_string(), name)],
                    });
                }
                Err(Unread::Io(e)) => {
                    host::log(
                        Level::Warn,
                        &format!("{name}: cannot read it now, left for a later poll: {e}"),
                    );
                }
                Err(Unread::Invalid(why)) => {
                    let moved = move_into(dir, "rejected", &name, tick.now_ms);
                    let outcome = match moved {
                        Ok(()) => "moved to rejected/".to_string(),
                        Err(e) => format!("and it cannot be moved to rejected/: {e}"),
                    };
                    host::log(Level::Warn, &format!("{name}: {why}; {outcome}"));
                }
            }
        }
        Ok(PollResult { messages })
    }
}

openfn_plugin_sdk::export!(FileDrop as trigger);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_finished_json_files_are_taken() {
        assert!(wanted("a.json"));
        assert!(wanted("2024-01-01T00:00:00.json"));
        for name in [
            ".a.json",
            "a.json.tmp",
            "a.json.part",
            "a.tmp",
            "a.txt",
            ".json",
            "a.JSON",
        ] {
            assert!(!wanted(name), "{name}");
        }
    }
}
