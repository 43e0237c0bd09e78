//! What a plugin's imports ask for, by capability, beside what its
//! `[plugins.<name>]` table grants: what `microservice plugin inspect`
//! lists, so an author sees at once that, say, the plugin opens files but
//! its table grants no folder.
//!
//! It only describes; what is linked and what is refused is decided in
//! [`super::grants`] (at load) and in the stores it builds (at each call).

use serde::Serialize;

use super::grants::Grants;

/// One capability a plugin imports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Capability {
    /// `folders`, `http`, `sockets`, `environment`, `clocks`, `random`,
    /// `output`, `io` or `host` (this service's own interfaces).
    pub name: &'static str,
    /// The interfaces imported for it, e.g. `wasi:filesystem/types@0.2.6`.
    pub imports: Vec<String>,
    /// Whether calls using it can succeed with this table.
    pub granted: bool,
    /// What the table grants, or what to add to it.
    pub detail: String,
}

/// The capabilities behind `imports` (component import names), in a fixed
/// order, each judged against `grants`.
pub fn of(imports: &[String], grants: &Grants) -> Vec<Capability> {
    let mut found: Vec<Capability> = Vec::new();
    for import in imports {
        let package = import.split('/').next().unwrap_or(import);
        let interface = import
            .split_once('/')
            .map_or("", |(_, rest)| rest.split('@').next().unwrap_or(rest));
        let name = match (package, interface) {
            ("wasi:filesystem", _) => "folders",
            ("wasi:http", _) => "http",
            ("wasi:sockets", _) => "sockets",
            ("wasi:cli", "environment") => "environment",
            ("wasi:cli", _) => "output",
            ("wasi:clocks", _) => "clocks",
            ("wasi:random", _) => "random",
            ("wasi:io", _) => "io",
            ("openfn:microservice", _) => "host",
            _ => continue,
        };
        match found.iter_mut().find(|c| c.name == name) {
            Some(c) => c.imports.push(import.clone()),
            None => {
                let (granted, detail) = judge(name, grants);
                found.push(Capability {
                    name,
                    imports: vec![import.clone()],
                    granted,
                    detail,
                });
            }
        }
    }
    found
}

fn judge(name: &str, grants: &Grants) -> (bool, String) {
    match name {
        "folders" if grants.dirs.is_empty() => (
            false,
            "no folder granted: every open fails; add dirs = [{ data = \"<folder>\", guest = \"/data\" }] to the table".into(),
        ),
        "folders" => (
            true,
            grants
                .dirs
                .iter()
                .map(|d| {
                    format!(
                        "{} ({})",
                        d.guest,
                        if d.writable { "read-write" } else { "read-only" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
        "http" if grants.allowed_hosts.is_empty() => (
            false,
            "no host granted: every request is refused; add allowed_hosts = [\"https://host\"] to the table".into(),
        ),
        "http" => (true, grants.allowed_hosts.join(", ")),
        "sockets" => (
            false,
            "never granted: every socket call is refused (use wasi:http with allowed_hosts)".into(),
        ),
        "environment" => (
            true,
            "an empty environment: configuration comes from the table's config".into(),
        ),
        "output" => (
            true,
            "stdout and stderr go to the service's log (target `plugin`)".into(),
        ),
        "clocks" | "random" | "io" => (true, "always".into()),
        _ => (true, "this service's own interfaces".into()),
    }
}
