//! `[plugins.<name>]` tables: which file, its settings, and its grants.
//!
//! Grants are checked here as far as text allows (origins are well-formed,
//! directory paths are relative and do not climb out); the plugin runtime
//! opens granted directories through `cap-std` handles when it loads the
//! plugin, which is what actually confines them.

use std::collections::BTreeMap;
use std::path::{Component, Path};
use std::time::Duration;

use toml::Table;

use super::ProjectError;
use super::fields::*;
use super::model::{DirBase, DirGrant, PluginSpec, PollSchedule};

const KEYS: &[&str] = &[
    "file",
    "config",
    "allowed_hosts",
    "dirs",
    "timeout",
    "memory",
    "interval",
    "cron",
    "enabled",
];
/// Per-call deadline of a plugin that does not set `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Memory cap of a plugin that does not set `memory`.
pub const DEFAULT_MEMORY: usize = 64 * 1024 * 1024;
/// `[plugins] max_memory` when unset: the memory caps of the trigger,
/// notification and logging instances alive at once add up to at most this
/// (sixteen calls of plugins with the default cap).
pub const DEFAULT_MAX_MEMORY: usize = 1 << 30;
/// Keys of `[plugins]` itself that are settings, not plugin tables.
const SETTINGS: &[&str] = &["max_memory"];
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// The built-in message store's name.
pub const JOURNAL: &str = "journal";

/// The built-in journal's settings: its files in `DATA_DIR/journal`, and
/// more memory and time than a plugin's defaults (it holds the index of
/// every stored receipt, and replays its file when opened). A
/// `[plugins.journal]` table starts from these: what it leaves out keeps
/// its built-in value, so `config = { max_done = 500000 }` alone works.
pub fn builtin_journal() -> PluginSpec {
    PluginSpec {
        name: JOURNAL.into(),
        file: format!("{JOURNAL}.wasm"),
        config: vec![("dir".into(), "/journal".into())],
        allowed_hosts: Vec::new(),
        dirs: vec![DirGrant {
            base: DirBase::Data,
            path: "journal".into(),
            guest: "/journal".into(),
            writable: true,
        }],
        timeout: Duration::from_secs(10),
        memory_bytes: 512 << 20,
        schedule: PollSchedule::Every(DEFAULT_INTERVAL),
        enabled: true,
    }
}

/// `spec`, parsed from `body`, with the keys `body` leaves out taken from
/// the built-in journal.
fn over_builtin_journal(mut spec: PluginSpec, body: &Table) -> PluginSpec {
    let base = builtin_journal();
    if !body.contains_key("dirs") {
        spec.dirs = base.dirs;
    }
    if !body.contains_key("timeout") {
        spec.timeout = base.timeout;
    }
    if !body.contains_key("memory") {
        spec.memory_bytes = base.memory_bytes;
    }
    for (key, value) in base.config.into_iter().rev() {
        if !spec.config.iter().any(|(k, _)| *k == key) {
            spec.config.insert(0, (key, value));
        }
    }
    spec
}

/// Every plugin table; a bad one is reported (the first problem in it)
/// and left out, and the others are still read.
pub(super) fn parse(
    cx: &Ctx,
    t: Option<&Table>,
) -> Result<BTreeMap<String, PluginSpec>, ProjectError> {
    let mut out = BTreeMap::new();
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in t.into_iter().flatten() {
        if !value.is_table() && SETTINGS.contains(&name.as_str()) {
            continue;
        }
        if let Some(spec) = cx.ok(plugin(cx, name, value, &mut files)) {
            out.insert(name.clone(), spec);
        }
    }
    Ok(out)
}

fn plugin(
    cx: &Ctx,
    name: &str,
    value: &toml::Value,
    files: &mut BTreeMap<String, String>,
) -> Result<PluginSpec, ProjectError> {
    let table = format!("plugins.{name}");
    let body = value.as_table().ok_or_else(|| {
        cx.err(
            "plugins",
            Some(name),
            format!(
                "unknown setting; a plugin's settings go in its own table, [plugins.{name}], and [plugins] itself takes only {}",
                SETTINGS.join(", ")
            ),
        )
    })?;
    check_keys(cx, &table, body, KEYS)?;
    let file = string(cx, &table, body, "file")?
        .map(str::to_string)
        .unwrap_or_else(|| format!("{name}.wasm"));
    if file.contains('/') || !file.ends_with(".wasm") {
        return Err(cx.err(
            &table,
            Some("file"),
            format!("`{file}` must be the name of a .wasm file in the plugins folder"),
        ));
    }
    if let Some(other) = files.insert(file.clone(), name.to_string()) {
        return Err(cx.err(
            &table,
            Some("file"),
            format!("`{file}` is already configured by [plugins.{other}]"),
        ));
    }
    let schedule = match (
        duration(cx, &table, body, "interval")?,
        string(cx, &table, body, "cron")?,
    ) {
        (Some(_), Some(_)) => {
            return Err(cx.err(
                &table,
                Some("cron"),
                "give either interval or cron, not both",
            ));
        }
        (Some(every), None) => PollSchedule::Every(every),
        (None, Some(expr)) => PollSchedule::Cron(Box::new(cron(cx, &table, "cron", expr)?)),
        (None, None) => PollSchedule::Every(DEFAULT_INTERVAL),
    };
    let enabled = match body.get("enabled") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err(cx.err(&table, Some("enabled"), "must be true or false")),
    };
    let spec = PluginSpec {
        name: name.to_string(),
        file,
        config: config(cx, &table, body)?,
        allowed_hosts: allowed_hosts(cx, &table, body)?,
        dirs: dirs(cx, &table, body)?,
        timeout: duration(cx, &table, body, "timeout")?.unwrap_or(DEFAULT_TIMEOUT),
        memory_bytes: memory(cx, &table, body)?,
        schedule,
        enabled,
    };
    let spec = if name == JOURNAL {
        over_builtin_journal(spec, body)
    } else {
        spec
    };
    Ok(spec)
}

fn config(cx: &Ctx, table: &str, body: &Table) -> Result<Vec<(String, String)>, ProjectError> {
    let Some(value) = body.get("config") else {
        return Ok(Vec::new());
    };
    let t = value.as_table().ok_or_else(|| {
        cx.err(
            table,
            Some("config"),
            "must be a table, e.g. config = { url = \"http://...\" }",
        )
    })?;
    Ok(t.iter()
        .map(|(k, v)| {
            let text = match v {
                toml::Value::String(s) => s.clone(),
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            (k.clone(), text)
        })
        .collect())
}

fn allowed_hosts(cx: &Ctx, table: &str, body: &Table) -> Result<Vec<String>, ProjectError> {
    let Some(value) = body.get("allowed_hosts") else {
        return Ok(Vec::new());
    };
    let bad = || {
        cx.err(table, Some("allowed_hosts"), "must be a list of origins such as [\"https://api.example.org\", \"http://127.0.0.1:9000\"]")
    };
    let list = value.as_array().ok_or_else(bad)?;
    list.iter()
        .map(|v| {
            let origin = v.as_str().ok_or_else(bad)?;
            normalize_origin(origin).ok_or_else(|| {
                cx.err(table, Some("allowed_hosts"), format!("`{origin}` is not an origin; write scheme://host or scheme://host:port, with no path"))
            })
        })
        .collect()
}

/// `scheme://host[:port]`, lower-cased, with the scheme's default port made explicit.
pub fn normalize_origin(origin: &str) -> Option<String> {
    let (scheme, rest) = origin.trim().trim_end_matches('/').split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    if rest.is_empty() || rest.contains(['/', '?', '#', '@', '*']) {
        return None;
    }
    let rest = rest.to_ascii_lowercase();
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => {
            (h.to_string(), p.parse::<u16>().ok()?)
        }
        _ => (rest.clone(), default_port),
    };
    Some(format!("{scheme}://{host}:{port}"))
}

fn dirs(cx: &Ctx, table: &str, body: &Table) -> Result<Vec<DirGrant>, ProjectError> {
    let Some(value) = body.get("dirs") else {
        return Ok(Vec::new());
    };
    let shape = "must be a list like [{ host = \"inbox\", guest = \"/inbox\" }] or [{ data = \"journal\", guest = \"/journal\" }]";
    let list = value
        .as_array()
        .ok_or_else(|| cx.err(table, Some("dirs"), shape))?;
    let mut out = Vec::new();
    for item in list {
        let t = item
            .as_table()
            .ok_or_else(|| cx.err(table, Some("dirs"), shape))?;
        check_keys(cx, table, t, &["host", "data", "guest", "writable"])?;
        let (base, path) = match (string(cx, table, t, "host")?, string(cx, table, t, "data")?) {
            (Some(p), None) => (DirBase::Project, p),
            (None, Some(p)) => (DirBase::Data, p),
            _ => return Err(cx.err(table, Some("dirs"), format!("each entry needs exactly one of host (inside PROJECT_DIR) or data (inside DATA_DIR); {shape}"))),
        };
        let rel = Path::new(path);
        if rel.is_absolute() || rel.components().any(|c| c == Component::ParentDir) {
            return Err(cx.err(
                table,
                Some("dirs"),
                format!(
                    "`{path}` must be a relative path that stays inside {}",
                    if base == DirBase::Project {
                        "PROJECT_DIR"
                    } else {
                        "DATA_DIR"
                    }
                ),
            ));
        }
        let guest = string(cx, table, t, "guest")?.ok_or_else(|| {
            cx.err(
                table,
                Some("dirs"),
                format!("each entry needs a guest path; {shape}"),
            )
        })?;
        if !guest.starts_with('/') {
            return Err(cx.err(
                table,
                Some("dirs"),
                format!("guest path `{guest}` must start with /"),
            ));
        }
        let writable = match t.get("writable") {
            None => true,
            Some(toml::Value::Boolean(b)) => *b,
            Some(_) => return Err(cx.err(table, Some("dirs"), "writable must be true or false")),
        };
        out.push(DirGrant {
            base,
            path: path.to_string(),
            guest: guest.to_string(),
            writable,
        });
    }
    Ok(out)
}

/// `[plugins] max_memory`: what all plugin calls at once may hold.
pub(super) fn max_memory(cx: &Ctx, t: Option<&Table>) -> Result<usize, ProjectError> {
    let bytes = match t.and_then(|t| t.get("max_memory")) {
        // A table is a plugin of that name (see `parse`).
        None | Some(toml::Value::Table(_)) => return Ok(DEFAULT_MAX_MEMORY),
        Some(toml::Value::Integer(n)) if *n > 0 => Some(*n as usize),
        Some(toml::Value::String(s)) => parse_size(s),
        Some(_) => None,
    };
    match bytes {
        Some(b) if b >= 1 << 20 => Ok(b),
        _ => Err(cx.err(
            "plugins",
            Some("max_memory"),
            "must be a size of at least 1MiB, such as \"1GiB\" or a number of bytes",
        )),
    }
}

fn memory(cx: &Ctx, table: &str, body: &Table) -> Result<usize, ProjectError> {
    let bytes = match body.get("memory") {
        None => return Ok(DEFAULT_MEMORY),
        Some(toml::Value::Integer(n)) if *n > 0 => Some(*n as usize),
        Some(toml::Value::String(s)) => parse_size(s),
        Some(_) => None,
    };
    match bytes {
        Some(b) if b >= 64 * 1024 => Ok(b),
        _ => Err(cx.err(
            table,
            Some("memory"),
            "must be a size of at least 64KiB, such as \"64MiB\" or a number of bytes",
        )),
    }
}

fn parse_size(text: &str) -> Option<usize> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalized() {
        assert_eq!(
            normalize_origin("http://127.0.0.1:9000").as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(
            normalize_origin("HTTPS://Api.Example.org/").as_deref(),
            Some("https://api.example.org:443")
        );
        assert_eq!(
            normalize_origin("http://localhost").as_deref(),
            Some("http://localhost:80")
        );
        for bad in [
            "ftp://x",
            "http://",
            "127.0.0.1:9000",
            "http://x/path",
            "http://*.x",
            "http://u@x",
        ] {
            assert_eq!(normalize_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn max_memory_is_a_setting_of_the_plugins_table() {
        let parse = |text: &str| {
            crate::project::Project::parse(Path::new("."), Path::new("project.toml"), text)
        };
        let p = parse("").unwrap();
        assert_eq!(p.plugin_memory, DEFAULT_MAX_MEMORY);
        let p = parse("[plugins]\nmax_memory = \"256MiB\"\n[plugins.hook]\nmemory = \"32MiB\"\n")
            .unwrap();
        assert_eq!(p.plugin_memory, 256 << 20);
        assert_eq!(p.plugins.keys().collect::<Vec<_>>(), ["hook"]);
        // A plugin may still be named like the setting: a table is a plugin.
        let p = parse("[plugins.max_memory]\nmemory = \"1MiB\"\n").unwrap();
        assert_eq!(p.plugins["max_memory"].memory_bytes, 1 << 20);
        assert_eq!(p.plugin_memory, DEFAULT_MAX_MEMORY);
        for (text, message) in [
            (
                "[plugins]\nmax_memory = \"lots\"\n",
                "project.toml: [plugins] max_memory (line 2): must be a size of at least 1MiB",
            ),
            (
                "[plugins]\nmax_memory = 4096\n",
                "project.toml: [plugins] max_memory (line 2): must be a size of at least 1MiB",
            ),
            (
                "[plugins]\ntimeout = \"2s\"\n",
                "project.toml: [plugins] timeout (line 2): unknown setting; a plugin's settings go in its own table, [plugins.timeout], and [plugins] itself takes only max_memory",
            ),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(message), "{text:?}: {e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64MiB"), Some(64 << 20));
        assert_eq!(parse_size("512 KiB"), Some(512 << 10));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("lots"), None);
    }
}
