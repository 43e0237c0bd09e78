//! `[credentials.<name>]` tables, with values that may come from the
//! environment: `password = { env = "DHIS2_PASSWORD" }`.
//!
//! A table whose only key is `env` (at any depth of a credential, in arrays
//! too) is replaced by the value of that environment variable when the
//! project loads, so secrets can live in the orchestrator's secret store
//! (a Kubernetes Secret, compose's environment) instead of the project file.
//! A variable that is unset or empty is a configuration error naming the
//! file, the table, the key and the variable. Resolved values end up in the
//! credential like any other value, so the redactor masks them and
//! `configuration` stripping keeps them out of stored states. A credential
//! that is itself only `{ env = "NAME" }` takes its whole body from that
//! variable, which must hold a JSON object (what OpenFn's Lightning keeps
//! for a credential it exports by name only). This module must never put a
//! resolved value into an error message or a log line.

use std::collections::BTreeMap;

use serde_json::Value;
use toml::Table;

use super::ProjectError;
use super::fields::{Ctx, sub_table};

/// How `{ env = "NAME" }` references are treated while loading.
#[derive(Clone, Copy)]
pub enum CredentialEnv<'a> {
    /// Look each name up (normally in the process environment); a missing
    /// one is an error.
    Resolve(&'a dyn Fn(&str) -> Option<String>),
    /// Leave them unresolved (`null`): for `microservice install`, which
    /// needs the adaptors a project names but never its secrets, so an image
    /// can be built without them.
    Skip,
}

/// Every credential, the bad ones too, so that a job naming one is not also
/// told it does not exist; a value that cannot be read is reported (and
/// left `null`).
pub(super) fn parse(cx: &Ctx, t: Option<&Table>, env: CredentialEnv) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (name, value) in t.into_iter().flatten() {
        let table = format!("credentials.{name}");
        let mut json = serde_json::Map::new();
        if let Some(name_value) = value
            .as_table()
            .filter(|t| t.len() == 1)
            .and_then(|t| t.get("env"))
        {
            let walk = Walk {
                cx,
                table: &table,
                env,
            };
            let body = cx.ok(walk.resolve_json(name_value)).unwrap_or(Value::Null);
            out.insert(name.clone(), body);
            continue;
        }
        if let Some(body) = cx.ok(sub_table(cx, &table, value)) {
            for (key, value) in body {
                let walk = Walk {
                    cx,
                    table: &table,
                    env,
                };
                let value = cx.ok(walk.value(key, value)).unwrap_or(Value::Null);
                json.insert(key.clone(), value);
            }
        }
        out.insert(name.clone(), Value::Object(json));
    }
    out
}

/// One `{ env = "NAME" }` value outside `[credentials]` (`[cluster]
/// database_url`), resolved as a credential's would be: `Ok(None)` when
/// `env` skips secrets.
pub(super) fn env_string(
    cx: &Ctx,
    table: &str,
    key: &str,
    value: &toml::Value,
    env: CredentialEnv,
) -> Result<Option<String>, ProjectError> {
    let Some(name) = value
        .as_table()
        .filter(|t| t.len() == 1)
        .and_then(|t| t.get("env"))
    else {
        return Err(cx.err(
            table,
            Some(key),
            "must be { env = \"NAME\" }, naming the environment variable that holds it (it holds a password, which belongs in the orchestrator's secret store, not in this file)",
        ));
    };
    let walk = Walk { cx, table, env };
    Ok(match walk.resolve(key, name)? {
        Value::String(s) => Some(s),
        _ => None,
    })
}

struct Walk<'a> {
    cx: &'a Ctx<'a>,
    table: &'a str,
    env: CredentialEnv<'a>,
}

impl Walk<'_> {
    /// Converts one value to JSON, resolving env references; `path` is the
    /// dotted key (`auth.password`, `hosts[1]`) for error messages. A bad
    /// value inside a table or array is reported and the walk goes on.
    fn value(&self, path: &str, value: &toml::Value) -> Result<Value, ProjectError> {
        let nested = |path: String, v| self.cx.ok(self.value(&path, v)).unwrap_or(Value::Null);
        match value {
            toml::Value::Table(t) => match t.get("env") {
                Some(name) if t.len() == 1 => self.resolve(path, name),
                _ => Ok(Value::Object(
                    t.iter()
                        .map(|(k, v)| (k.clone(), nested(format!("{path}.{k}"), v)))
                        .collect(),
                )),
            },
            toml::Value::Array(items) => Ok(Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| nested(format!("{path}[{i}]"), v))
                    .collect(),
            )),
            other => serde_json::to_value(other)
                .map_err(|e| self.cx.err(self.table, Some(path), e.to_string())),
        }
    }

    /// A whole credential from one variable holding a JSON object; the
    /// error names the variable and what is wrong, never the text.
    fn resolve_json(&self, name: &toml::Value) -> Result<Value, ProjectError> {
        let text = match self.resolve("env", name)? {
            Value::String(text) => text,
            // Skipped: the body is unknown, and nothing reads it.
            _ => return Ok(Value::Object(Default::default())),
        };
        let var = name.as_str().unwrap_or_default();
        match serde_json::from_str::<Value>(&text) {
            Ok(body @ Value::Object(_)) => Ok(body),
            Ok(_) => Err(self.cx.err(
                self.table,
                Some("env"),
                format!("environment variable `{var}` must hold the credential as a JSON object, such as {{\"username\": \"…\", \"password\": \"…\"}}; it holds another JSON value"),
            )),
            Err(e) => Err(self.cx.err(
                self.table,
                Some("env"),
                format!(
                    "environment variable `{var}` must hold the credential as a JSON object; it is not valid JSON (at line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )),
        }
    }

    fn resolve(&self, path: &str, name: &toml::Value) -> Result<Value, ProjectError> {
        let err = |message: String| self.cx.err(self.table, Some(path), message);
        let Some(name) = name.as_str().filter(|n| is_variable_name(n)) else {
            return Err(err(
                "`env` must name an environment variable (letters, digits and _, not starting with a digit), e.g. { env = \"DHIS2_PASSWORD\" }".into(),
            ));
        };
        let CredentialEnv::Resolve(lookup) = self.env else {
            return Ok(Value::Null);
        };
        match lookup(name) {
            None => Err(err(format!(
                "environment variable `{name}` is not set (or is not valid UTF-8); set it, e.g. from the orchestrator's secret store, or write the value in the file"
            ))),
            Some(v) if v.is_empty() => Err(err(format!(
                "environment variable `{name}` is empty; an empty secret is almost certainly a mistake"
            ))),
            Some(v) => Ok(Value::String(v)),
        }
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
