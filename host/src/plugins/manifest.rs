//! A plugin's manifest: what the plugin says it needs, so a missing grant
//! is found when the plugin loads instead of on every call.
//!
//! The manifest is JSON in a custom section named [`SECTION`], anywhere in
//! the component (the Rust SDK's `manifest!` puts it in the core module,
//! the Python and JavaScript templates' build scripts append it to the
//! component). It names the folders the plugin opens (by guest path, and
//! whether it writes there), the origins it sends requests to, and its
//! config keys with their types and defaults:
//!
//! ```json
//! {"manifest": 1,
//!  "dirs": [{"guest": "/out", "writable": true}],
//!  "hosts": ["*"],
//!  "config": {"prefix": {"type": "string", "default": "run"},
//!             "max_bytes": {"type": "integer"}}}
//! ```
//!
//! `"*"` in `hosts` asks for at least one origin, whichever the operator
//! grants. A config key without a default is required; a default is handed
//! to the plugin when its table leaves the key out. A manifest only makes a
//! plugin stricter: it grants nothing, and a plugin without one loads as
//! before. It must never widen a grant or be trusted for anything but the
//! message telling the operator what to add.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::project::PluginSpec;
use crate::project::plugins::normalize_origin;

/// The custom section's name.
pub const SECTION: &str = "openfn:microservice/manifest";
/// The manifest format this host reads.
const VERSION: u32 = 1;

/// What a plugin says it needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The format's version: 1.
    pub manifest: u32,
    #[serde(default)]
    pub dirs: Vec<DirNeed>,
    /// Origins (`scheme://host[:port]`) it sends requests to; `"*"` for
    /// any one the operator chooses.
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub config: BTreeMap<String, ConfigNeed>,
}

/// A folder the plugin opens at `guest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirNeed {
    pub guest: String,
    /// It writes there (else reading is enough).
    #[serde(default)]
    pub writable: bool,
}

/// One config key the plugin reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigNeed {
    #[serde(rename = "type")]
    pub ty: ConfigType,
    /// Used when the table leaves the key out; without one the key is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigType {
    String,
    Integer,
    Number,
    Boolean,
}

impl ConfigType {
    /// Whether a config value, as the plugin receives it (text; non-strings
    /// as JSON), is of this type.
    fn admits(self, text: &str) -> bool {
        match self {
            ConfigType::String => true,
            ConfigType::Integer => text.parse::<i64>().is_ok() || text.parse::<u64>().is_ok(),
            ConfigType::Number => text.parse::<f64>().is_ok_and(f64::is_finite),
            ConfigType::Boolean => matches!(text, "true" | "false"),
        }
    }

    /// A value to show in a table snippet.
    fn example(self) -> &'static str {
        match self {
            ConfigType::String => "\"...\"",
            ConfigType::Integer => "0",
            ConfigType::Number => "0.0",
            ConfigType::Boolean => "false",
        }
    }
}

/// The manifest in `wasm` (a component), if it carries one. Errors when the
/// section is there but is not a manifest this host reads.
pub fn read(wasm: &[u8]) -> Result<Option<Manifest>, String> {
    for payload in wasmparser::Parser::new(0).parse_all(wasm) {
        let Ok(payload) = payload else {
            // Not this module's concern: compiling says what is wrong.
            return Ok(None);
        };
        if let wasmparser::Payload::CustomSection(section) = payload
            && section.name() == SECTION
        {
            let manifest: Manifest = serde_json::from_slice(section.data()).map_err(|e| {
                format!("its manifest (custom section {SECTION}) is not valid: {e}")
            })?;
            if manifest.manifest != VERSION {
                return Err(format!(
                    "its manifest (custom section {SECTION}) has version {}, and this service reads version {VERSION}",
                    manifest.manifest
                ));
            }
            return Ok(Some(manifest));
        }
    }
    Ok(None)
}

impl Manifest {
    /// What `spec` (the plugin's table, `None` when it has none) lacks of
    /// what the manifest asks for, each saying what to add; empty when the
    /// table grants it all.
    pub fn missing(&self, spec: Option<&PluginSpec>, name: &str) -> Vec<String> {
        let mut out = Vec::new();
        let dirs = spec.map(|s| s.dirs.as_slice()).unwrap_or_default();
        for need in &self.dirs {
            let guest = need.guest.trim_end_matches('/');
            match dirs.iter().find(|d| d.guest.trim_end_matches('/') == guest) {
                None => out.push(format!(
                    "a folder at guest path {}: add dirs = [{{ data = \"{name}\", guest = \"{}\" }}] (or host = \"<folder in PROJECT_DIR>\")",
                    need.guest, need.guest
                )),
                Some(d) if need.writable && !d.writable => out.push(format!(
                    "a writable folder at guest path {}: its grant says writable = false",
                    need.guest
                )),
                Some(_) => {}
            }
        }
        let hosts = spec.map(|s| s.allowed_hosts.as_slice()).unwrap_or_default();
        for host in &self.hosts {
            if host == "*" {
                if hosts.is_empty() {
                    out.push(
                        "an origin to send requests to: add allowed_hosts = [\"https://host\"]"
                            .to_string(),
                    );
                }
                continue;
            }
            let normal = |h: &str| normalize_origin(h).unwrap_or_else(|| h.to_string());
            if !hosts.iter().any(|h| normal(h) == normal(host)) {
                let shown = host.trim_end_matches('/');
                out.push(format!(
                    "requests to {shown}: add \"{shown}\" to allowed_hosts"
                ));
            }
        }
        let config = spec.map(|s| s.config.as_slice()).unwrap_or_default();
        for (key, need) in &self.config {
            match config.iter().find(|(k, _)| k == key) {
                None if need.default.is_none() => out.push(format!(
                    "config key {key} ({}): add config = {{ {key} = {} }}",
                    type_name(need.ty),
                    need.ty.example()
                )),
                Some((_, value)) if !need.ty.admits(value) => out.push(format!(
                    "config key {key} as {} (it is {value:?})",
                    type_name(need.ty)
                )),
                _ => {}
            }
        }
        out
    }

    /// `config` with the manifest's defaults for the keys it leaves out, as
    /// the plugin receives config values (strings plain, others as JSON).
    pub fn with_defaults(&self, mut config: Vec<(String, String)>) -> Vec<(String, String)> {
        for (key, need) in &self.config {
            if let Some(default) = &need.default
                && !config.iter().any(|(k, _)| k == key)
            {
                let text = match default {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                config.push((key.clone(), text));
            }
        }
        config
    }

    /// Why a plugin with this manifest is refused under `spec`, if it is.
    pub fn refusal(&self, spec: Option<&PluginSpec>, name: &str) -> Option<String> {
        let missing = self.missing(spec, name);
        if missing.is_empty() {
            return None;
        }
        let lacking = if spec.is_some() {
            format!("its [plugins.{name}] table does not grant")
        } else {
            format!(
                "no table grants (there is no [plugins.{name}] table in project.toml: add one with these)"
            )
        };
        Some(format!(
            "its manifest asks for what {lacking}: {}",
            missing.join("; ")
        ))
    }
}

/// `spec` as the plugin in `wasm` runs under it: with its manifest's
/// config defaults added; an error naming what to add to the table when it
/// lacks what the manifest asks for (or the manifest cannot be read).
pub fn applied(
    wasm: &[u8],
    spec: Option<&PluginSpec>,
    name: &str,
) -> Result<Option<PluginSpec>, String> {
    let Some(manifest) = read(wasm)? else {
        return Ok(spec.cloned());
    };
    if let Some(why) = manifest.refusal(spec, name) {
        return Err(why);
    }
    Ok(spec.map(|s| PluginSpec {
        config: manifest.with_defaults(s.config.clone()),
        ..s.clone()
    }))
}

fn type_name(ty: ConfigType) -> &'static str {
    match ty {
        ConfigType::String => "a string",
        ConfigType::Integer => "an integer",
        ConfigType::Number => "a number",
        ConfigType::Boolean => "true or false",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::project::{DirBase, DirGrant};

    fn spec() -> PluginSpec {
        PluginSpec {
            name: "rec".into(),
            file: "rec.wasm".into(),
            config: vec![("max".into(), "10".into())],
            allowed_hosts: vec!["https://api.example.org".into()],
            dirs: vec![DirGrant {
                base: DirBase::Data,
                path: "out".into(),
                guest: "/out".into(),
                writable: false,
            }],
            timeout: std::time::Duration::from_secs(1),
            memory_bytes: 1 << 20,
            schedule: crate::project::PollSchedule::Every(std::time::Duration::from_secs(1)),
            enabled: true,
        }
    }

    fn manifest(json: &str) -> Manifest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_manifest_is_read_from_a_custom_section_of_a_component() {
        let json = r#"{"manifest":1,"dirs":[{"guest":"/out","writable":true}]}"#;
        // The smallest component: its header, then the custom section.
        let mut wasm = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let mut body = vec![SECTION.len() as u8];
        body.extend_from_slice(SECTION.as_bytes());
        body.extend_from_slice(json.as_bytes());
        wasm.push(0);
        wasm.push(body.len() as u8);
        wasm.extend_from_slice(&body);
        assert_eq!(read(&wasm).unwrap(), Some(manifest(json)));
        assert_eq!(read(&wasm[..8]).unwrap(), None);
    }

    #[test]
    fn what_a_table_lacks_is_named_with_what_to_add() {
        let m = manifest(
            r#"{"manifest":1,
                "dirs":[{"guest":"/out","writable":true},{"guest":"/in"}],
                "hosts":["https://api.example.org/","https://other.example.org"],
                "config":{"max":{"type":"integer"},"prefix":{"type":"string"},
                          "on":{"type":"boolean","default":true}}}"#,
        );
        let missing = m.missing(Some(&spec()), "rec");
        assert_eq!(missing.len(), 4, "{missing:#?}");
        assert!(missing[0].contains("writable folder at guest path /out"));
        assert!(missing[1].contains("guest = \"/in\""), "{}", missing[1]);
        assert!(missing[2].contains("\"https://other.example.org\" to allowed_hosts"));
        assert!(
            missing[3].contains("config = { prefix = \"...\" }"),
            "{}",
            missing[3]
        );
        let mut s = spec();
        s.config = vec![("max".into(), "ten".into()), ("prefix".into(), "x".into())];
        assert_eq!(
            m.missing(Some(&s), "rec")[3],
            "config key max as an integer (it is \"ten\")"
        );
        let why = m.refusal(None, "rec").unwrap();
        assert!(why.contains("no [plugins.rec] table"), "{why}");
        assert_eq!(
            m.with_defaults(vec![]),
            vec![("on".to_string(), "true".to_string())]
        );
    }

    #[test]
    fn an_unknown_version_or_shape_is_refused() {
        assert!(serde_json::from_str::<Manifest>(r#"{"manifest":1,"grants":[]}"#).is_err());
        let mut wasm = vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
        let json = br#"{"manifest":2}"#;
        let mut body = vec![SECTION.len() as u8];
        body.extend_from_slice(SECTION.as_bytes());
        body.extend_from_slice(json);
        wasm.extend_from_slice(&[0, body.len() as u8]);
        wasm.extend_from_slice(&body);
        assert!(read(&wasm).unwrap_err().contains("version 2"));
    }
}
