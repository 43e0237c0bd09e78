//! `microservice plugin new <kind> <name> --lang rust|python|js`: writes a plugin
//! project that builds and loads as generated, from templates embedded in
//! the binary (`host/templates/`) and the service's own `wit/`.
//!
//! The project holds the source (a working example of the kind), a copy
//! of the WIT package, a one-command build script with the tool versions
//! pinned, a README (calling model, config, files, errors, logs) and the
//! `[plugins.<name>]` table to paste, which is printed too. It writes into
//! a new folder only: an existing non-empty folder is refused.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::cli::{PluginKind, PluginLang};

/// The service's WIT package, which the generated project carries a copy of.
const WIT: &[(&str, &str)] = &[
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("worlds.wit", include_str!("../../../wit/worlds.wit")),
];

/// The Rust template: `(path in the project, text)`; `src/lib.rs` is the
/// kind's own source.
const RUST: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../templates/plugin-rust/Cargo.toml"),
    ),
    (
        "build.sh",
        include_str!("../../templates/plugin-rust/build.sh"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin-rust/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin-rust/gitignore"),
    ),
];

/// The Python template (componentize-py); `app.py` is the kind's own source.
const PYTHON: &[(&str, &str)] = &[
    (
        "build.sh",
        include_str!("../../templates/plugin-python/build.sh"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin-python/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin-python/gitignore"),
    ),
    (
        "add-manifest.py",
        include_str!("../../templates/add-manifest.py"),
    ),
];

fn python_source(kind: PluginKind) -> Option<&'static str> {
    match kind {
        PluginKind::Trigger => Some(include_str!("../../templates/plugin-python/trigger.py")),
        PluginKind::Notification => Some(include_str!(
            "../../templates/plugin-python/notification.py"
        )),
        PluginKind::Logging => Some(include_str!("../../templates/plugin-python/logging.py")),
        PluginKind::Persistence => None,
    }
}

/// The JavaScript template (componentize-js); `app.js` is the kind's own
/// source, `wit/plugin.wit` its world, the service's WIT under `wit/deps/`.
const JS: &[(&str, &str)] = &[
    (
        "package.json",
        include_str!("../../templates/plugin-js/package.json"),
    ),
    (
        "build.sh",
        include_str!("../../templates/plugin-js/build.sh"),
    ),
    (
        "README.md",
        include_str!("../../templates/plugin-js/README.md"),
    ),
    (
        ".gitignore",
        include_str!("../../templates/plugin-js/gitignore"),
    ),
    (
        "wit/plugin.wit",
        include_str!("../../templates/plugin-js/plugin.wit"),
    ),
    (
        "add-manifest.cjs",
        include_str!("../../templates/add-manifest.js"),
    ),
];

fn js_source(kind: PluginKind) -> Option<&'static str> {
    match kind {
        PluginKind::Trigger => Some(include_str!("../../templates/plugin-js/trigger.js")),
        PluginKind::Notification => Some(include_str!("../../templates/plugin-js/notification.js")),
        PluginKind::Logging => Some(include_str!("../../templates/plugin-js/logging.js")),
        PluginKind::Persistence => None,
    }
}

fn rust_source(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Trigger => include_str!("../../templates/plugin-rust/src/trigger.rs"),
        PluginKind::Notification => {
            include_str!("../../templates/plugin-rust/src/notification.rs")
        }
        PluginKind::Logging => include_str!("../../templates/plugin-rust/src/logging.rs"),
        PluginKind::Persistence => include_str!("../../templates/plugin-rust/src/persistence.rs"),
    }
}

/// The section the Rust template's `src/lib.rs` ends with: `manifest.json`
/// as the component's manifest.
const RUST_MANIFEST: &str = include_str!("../../templates/plugin-rust/src/manifest.rs");

/// `manifest.json`: what the kind's example needs, exactly what [`table`]
/// grants (see `plugins::manifest`).
fn manifest(kind: PluginKind) -> String {
    let needs = match folder(kind) {
        Some(folder) => serde_json::json!({
            "manifest": 1,
            "dirs": [{ "guest": format!("/{folder}"), "writable": true }],
            "config": { "dir": { "type": "string", "default": format!("/{folder}") } },
        }),
        None => serde_json::json!({
            "manifest": 1,
            "config": { "message": { "type": "string", "default": "{}" } },
        }),
    };
    let mut text = serde_json::to_string_pretty(&needs).unwrap_or_default();
    text.push('\n');
    text
}

/// The guest folder each kind's example writes to (none for a trigger).
fn folder(kind: PluginKind) -> Option<&'static str> {
    match kind {
        PluginKind::Trigger => None,
        PluginKind::Notification => Some("out"),
        PluginKind::Logging => Some("logs"),
        PluginKind::Persistence => Some("store"),
    }
}

/// The `[plugins.<name>]` table the generated plugin works with.
pub fn table(kind: PluginKind, name: &str) -> String {
    let mut t = format!("[plugins.{name}]\nfile = \"{name}.wasm\"\n");
    if let Some(folder) = folder(kind) {
        t.push_str(&format!(
            "dirs = [{{ data = \"{name}\", guest = \"/{folder}\" }}]\n"
        ));
    }
    match kind {
        PluginKind::Trigger => {
            t.push_str("interval = \"10s\"\nconfig = { message = { hello = \"world\" } }\n")
        }
        PluginKind::Persistence => t.push_str(&format!(
            "# and, to keep the inbox's receipts in it:\n# [inbox]\n# store = \"{name}\"\n"
        )),
        _ => {}
    }
    t.trim_end().to_string()
}

fn calling(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Trigger => {
            "- **Calls**: `poll` on the table's `interval` (or `cron`), each on a\n  fresh instance: nothing survives from one poll to the next (keep state\n  in a granted folder). Each message's body must be JSON; it is matched\n  against the jobs' criteria like an `/inbox` receipt."
        }
        PluginKind::Notification => {
            "- **Calls**: `notify` after every run, on an instance the host keeps\n  between calls and replaces after a failed call, a reload or 1,000 calls:\n  what a call needs must not depend on an earlier call (keep state in a\n  granted folder). `u64` times are Unix milliseconds."
        }
        PluginKind::Logging => {
            "- **Calls**: `write-batch` about once a second with the service's log\n  records, on an instance the host keeps between calls (replaced after a\n  failed call, a reload or 1,000 calls). Never log from it with `host::log`:\n  the line would come back in the next batch."
        }
        PluginKind::Persistence => {
            "- **Calls**: one long-lived instance: `open` once, then every call on\n  it, one at a time, so state may live in memory. `[inbox] store =\n  \"<name>\"` makes it the inbox's message store (see the main README's\n  \"Durable receipts\")."
        }
    }
}

fn world(kind: PluginKind) -> &'static str {
    match kind {
        PluginKind::Trigger => "trigger",
        PluginKind::Notification => "notification",
        PluginKind::Logging => "logging",
        PluginKind::Persistence => "persistence",
    }
}

/// Whether `name` can be a plugin name, a crate name and a file name: a
/// lowercase letter, then lowercase letters, digits and single `-`.
fn valid_name(name: &str) -> bool {
    name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The files of the project, with the placeholders filled in; `None`
/// when there is no template of that kind in that language.
pub fn files(kind: PluginKind, name: &str, lang: PluginLang) -> Option<Vec<(String, String)>> {
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{kind}}", world(kind))
            .replace("{{world}}", world(kind))
            .replace("{{folder}}", folder(kind).unwrap_or("data"))
            .replace("{{table}}", &table(kind, name))
            .replace("{{calling}}", calling(kind))
            // The WASI packages a JavaScript plugin's world imports: the
            // filesystem (and what it uses) for the kinds writing files.
            .replace(
                "{{wasi}}",
                if folder(kind).is_some() {
                    "io clocks filesystem"
                } else {
                    ""
                },
            )
            .replace(
                "{{wasi_imports}}",
                if folder(kind).is_some() {
                    "    import wasi:filesystem/preopens@0.2.12;\n"
                } else {
                    ""
                },
            )
    };
    let (common, source, wit_dir) = match lang {
        PluginLang::Rust => (RUST, ("src/lib.rs", rust_source(kind)), "wit"),
        PluginLang::Python => (PYTHON, ("app.py", python_source(kind)?), "wit"),
        // Its own world in wit/, so the service's package is a dependency.
        PluginLang::Js => (
            JS,
            ("app.js", js_source(kind)?),
            "wit/deps/openfn-microservice",
        ),
    };
    let mut out: Vec<(String, String)> = common
        .iter()
        .map(|(path, text)| (path.to_string(), fill(text)))
        .collect();
    let mut code = fill(source.1);
    if lang == PluginLang::Rust {
        code.push_str(&fill(RUST_MANIFEST));
    }
    out.push((source.0.into(), code));
    out.push(("manifest.json".into(), manifest(kind)));
    out.extend(
        WIT.iter()
            .map(|(file, text)| (format!("{wit_dir}/{file}"), text.to_string())),
    );
    Some(out)
}

fn lang_name(lang: PluginLang) -> &'static str {
    match lang {
        PluginLang::Rust => "Rust",
        PluginLang::Python => "Python",
        PluginLang::Js => "JavaScript",
    }
}

pub fn new(
    kind: PluginKind,
    name: &str,
    lang: PluginLang,
    dir: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    if !valid_name(name) {
        bail!(
            "`{name}` cannot be a plugin name: use a lowercase letter, then lowercase letters, digits and single dashes (at most 64), e.g. `run-alerts`"
        );
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} already exists and is not empty; give another name or --dir",
            dir.display()
        );
    }
    let Some(files) = files(kind, name, lang) else {
        bail!(
            "there is no {} template for a {} plugin yet: a message store keeps its state in one long-lived instance, which the Rust template shows (--lang rust)",
            lang_name(lang),
            world(kind)
        );
    };
    for (path, text) in files {
        write(&dir.join(&path), &text)?;
    }
    make_executable(&dir.join("build.sh"))?;
    println!(
        "wrote a {} plugin in {} to {}/",
        world(kind),
        lang_name(lang),
        dir.display()
    );
    println!("build:   {}/build.sh   (writes {name}.wasm)", dir.display());
    println!("install: copy {name}.wasm into the plugins folder and add to project.toml:\n");
    println!("{}", table(kind, name));
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_placeholders_all_filled() {
        for ok in ["a", "run-alerts", "x2"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a--b", "a_b", "a/b", "2a"] {
            assert!(!valid_name(bad), "{bad}");
        }
        for kind in [
            PluginKind::Trigger,
            PluginKind::Notification,
            PluginKind::Logging,
            PluginKind::Persistence,
        ] {
            for lang in [PluginLang::Rust, PluginLang::Python, PluginLang::Js] {
                let Some(files) = files(kind, "my-plugin", lang) else {
                    assert_eq!(kind, PluginKind::Persistence);
                    assert_ne!(lang, PluginLang::Rust);
                    continue;
                };
                for (path, text) in files {
                    for placeholder in [
                        "{{name}}",
                        "{{crate}}",
                        "{{kind}}",
                        "{{table}}",
                        "{{calling}}",
                        "{{folder}}",
                        "{{world}}",
                        "{{wasi}}",
                        "{{wasi_imports}}",
                    ] {
                        assert!(!text.contains(placeholder), "{path}: {placeholder}");
                    }
                }
            }
        }
    }
}
