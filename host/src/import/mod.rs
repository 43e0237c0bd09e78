//! Converting a `project.yaml` into this service's `project.toml` plus one
//! `jobs/<name>.js` per job: the original microservice's format here, OpenFn
//! Lightning's in [`lightning`] (told apart by its `workflows`).
//!
//! This is the conversion only: YAML text in, TOML text, job files and
//! warnings out. It reads nothing but the files a `file://` URI names next
//! to the YAML, and writes nothing: the `import` command writes, after the
//! real project parser has accepted the result. A field it does not know is
//! never dropped silently: it becomes a warning and a comment in the output.
//! Warnings name fields, never a credential's value.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;
use serde_yaml_ng::{Mapping, Value as Yaml};

/// A converted project, ready to be written into a project directory.
#[derive(Debug)]
pub struct Imported {
    /// The text of `project.toml`.
    pub toml: String,
    /// Job files: path relative to the project directory, and contents.
    pub files: Vec<(String, String)>,
    /// Fields not imported, and other things the user should know.
    pub warnings: Vec<String>,
    /// What the user must do or may use next (variables to set, webhook
    /// paths); never a secret.
    pub notes: Vec<String>,
    pub jobs: usize,
    pub triggers: usize,
    pub credentials: usize,
}

/// Converts the text of a `project.yaml`; `base` is the folder holding it,
/// against which `file://` URIs are resolved. Errors name the field.
pub fn convert(yaml: &str, source_name: &str, base: &Path) -> Result<Imported, String> {
    let doc: Yaml = serde_yaml_ng::from_str(yaml).map_err(|e| format!("not valid YAML: {e}"))?;
    let top = match doc {
        Yaml::Mapping(m) => m,
        Yaml::Null => {
            return Err("the file is empty; expected jobs, triggers and credentials".into());
        }
        _ => {
            return Err("the top level must be a mapping of jobs, triggers and credentials".into());
        }
    };
    if lightning::is_lightning(&top) {
        return lightning::convert(&top, source_name, base);
    }
    let mut cx = Converter {
        base,
        warnings: Vec::new(),
    };
    let mut out = format!(
        "# Imported from {source_name} by `microservice import`.\n# Each job's expression is in jobs/<name>.js.\n"
    );
    let mut unknown_top = Vec::new();
    let (mut jobs, mut triggers, mut credentials) = (None, None, None);
    for (key, value) in &top {
        match key_text(key, "top level")?.as_str() {
            "jobs" => jobs = Some(section(value, "jobs")?),
            "triggers" => triggers = Some(section(value, "triggers")?),
            "credentials" => credentials = Some(section(value, "credentials")?),
            other => unknown_top.push((other.to_string(), value.clone())),
        }
    }
    for (key, value) in &unknown_top {
        cx.unknown(&mut out, key, value, "the top level");
    }

    let mut files = Vec::new();
    let mut used_names = HashSet::new();
    let jobs = jobs.unwrap_or_default();
    if jobs.is_empty() {
        cx.warn("there are no jobs".into());
    }
    for (name, body) in &jobs {
        let name = key_text(name, "jobs")?;
        let (table, file) = cx.job(&name, body, &mut used_names)?;
        out.push_str(&table);
        files.push(file);
    }
    let triggers = triggers.unwrap_or_default();
    for (name, body) in &triggers {
        let name = key_text(name, "triggers")?;
        out.push_str(&cx.trigger(&name, body)?);
    }
    let credentials = credentials.unwrap_or_default();
    for (name, body) in &credentials {
        let name = key_text(name, "credentials")?;
        out.push_str(&cx.credential(&name, body)?);
    }
    Ok(Imported {
        toml: out,
        files,
        warnings: cx.warnings,
        notes: Vec::new(),
        jobs: jobs.len(),
        triggers: triggers.len(),
        credentials: credentials.len(),
    })
}

struct Converter<'a> {
    base: &'a Path,
    warnings: Vec<String>,
}

impl Converter<'_> {
    fn warn(&mut self, message: String) {
        self.warnings.push(message);
    }

    /// Reports a field this importer does not know, and keeps it as a
    /// comment so nothing vanishes from the project.
    fn unknown(&mut self, out: &mut String, key: &str, value: &Yaml, place: &str) {
        self.warn(format!(
            "{place}: unknown field `{key}`; not imported (kept as a comment in project.toml)"
        ));
        let text = serde_json::to_string(value).unwrap_or_else(|_| "(not representable)".into());
        let _ = writeln!(out, "# not imported: {key} = {text}");
    }

    fn job(
        &mut self,
        name: &str,
        body: &Yaml,
        used: &mut HashSet<String>,
    ) -> Result<(String, (String, String)), String> {
        let place = format!("jobs.{name}");
        let fields = mapping(body, &place)?;
        let mut out = format!("\n[jobs.{}]\n", toml_key(name));
        let mut unknown = Vec::new();
        let mut expression = None;
        for (key, value) in fields {
            let key = key_text(key, &place)?;
            match key.as_str() {
                "expression" => expression = Some(self.expression(&place, value)?),
                "adaptor" | "trigger" | "credential" => {
                    let text = scalar_text(value, &place, &key)?;
                    let _ = writeln!(out, "{key} = {}", toml_string(&text));
                }
                _ => unknown.push((key, value)),
            }
        }
        if !fields.contains_key("adaptor") {
            self.warn(format!(
                "{place}: no adaptor; the default @openfn/language-common will be used"
            ));
        }
        let expression = expression.ok_or_else(|| format!("{place}: missing `expression`"))?;
        let file = format!("jobs/{}.js", file_stem(name, used));
        if file != format!("jobs/{name}.js") {
            self.warn(format!(
                "{place}: the job's name is not a safe file name; its expression is in {file}"
            ));
        }
        let _ = writeln!(out, "expression_file = {}", toml_string(&file));
        for (key, value) in unknown {
            self.unknown(&mut out, &key, value, &place);
        }
        Ok((out, (file, expression)))
    }

    /// An inline expression, or the file a `file://` URI names.
    fn expression(&mut self, place: &str, value: &Yaml) -> Result<String, String> {
        let text = scalar_text(value, place, "expression")?;
        let trimmed = text.trim();
        let mut expression = match uri(trimmed) {
            Some(("file", path)) => {
                let full = self.base.join(path);
                std::fs::read_to_string(&full).map_err(|e| {
                    format!("{place}: expression: cannot read {} ({e})", full.display())
                })?
            }
            Some((scheme, _)) => {
                return Err(format!(
                    "{place}: expression: `{trimmed}` is a {scheme}:// URI, which is not fetched; download the file next to project.yaml and write `file://<name>.js`"
                ));
            }
            None => text,
        };
        if !expression.ends_with('\n') {
            expression.push('\n');
        }
        Ok(expression)
    }

    fn trigger(&mut self, name: &str, body: &Yaml) -> Result<String, String> {
        let place = format!("triggers.{name}");
        let fields = mapping(body, &place)?;
        let mut out = format!("\n[triggers.{}]\n", toml_key(name));
        let mut unknown = Vec::new();
        for (key, value) in fields {
            let key = key_text(key, &place)?;
            match key.as_str() {
                "criteria" => {
                    let _ = writeln!(out, "criteria = {}", criteria(&place, value)?);
                }
                "cron" | "success" | "failure" => {
                    let text = scalar_text(value, &place, &key)?;
                    let _ = writeln!(out, "{key} = {}", toml_string(&text));
                }
                _ => unknown.push((key, value)),
            }
        }
        for (key, value) in unknown {
            self.unknown(&mut out, &key, value, &place);
        }
        Ok(out)
    }

    /// A credential body: a mapping, or a `file://` URI of a JSON file.
    /// Its keys are free-form, so none is "unknown".
    fn credential(&mut self, name: &str, body: &Yaml) -> Result<String, String> {
        let place = format!("credentials.{name}");
        let json = match body {
            Yaml::String(s) => match uri(s.trim()) {
                Some(("file", path)) => {
                    let full = self.base.join(path);
                    let text = std::fs::read_to_string(&full)
                        .map_err(|e| format!("{place}: cannot read {} ({e})", full.display()))?;
                    serde_json::from_str::<Value>(&text).map_err(|e| {
                        format!("{place}: {} is not valid JSON: {e}", full.display())
                    })?
                }
                _ => {
                    return Err(format!(
                        "{place}: must be a mapping of keys and values, or `file://<name>.json`"
                    ));
                }
            },
            other => to_json(other, &place)?,
        };
        let Value::Object(fields) = json else {
            return Err(format!(
                "{place}: must be a mapping of keys and values, or `file://<name>.json`"
            ));
        };
        let mut out = format!("\n[credentials.{}]\n", toml_key(name));
        for (key, value) in &fields {
            let mut nulls = Vec::new();
            if let Some(v) = to_toml(value, &format!("{place}.{key}"), &mut nulls) {
                let _ = writeln!(out, "{} = {}", toml_key(key), inline(&v));
            }
            for path in nulls {
                self.warn(format!(
                    "{path} is null, which TOML cannot hold; not imported"
                ));
            }
        }
        Ok(out)
    }
}

/// Criteria as a TOML inline table, or as the original's JSON string when
/// the JSON holds a `null` (which TOML cannot) or a number TOML would round
/// (past an i64, or with more digits than a double holds).
fn criteria(place: &str, value: &Yaml) -> Result<String, String> {
    let json: Value = match value {
        Yaml::String(s) => serde_json::from_str(s)
            .map_err(|e| format!("{place}: criteria is not valid JSON: {e}"))?,
        other => to_json(other, place)?,
    };
    if !json.is_object() {
        return Err(format!("{place}: criteria must be a JSON object"));
    }
    let mut nulls = Vec::new();
    match to_toml(&json, place, &mut nulls) {
        Some(table) if nulls.is_empty() && toml_holds_numbers(&json) => Ok(inline(&table)),
        _ => Ok(toml_string(&json.to_string())),
    }
}

/// Every number in `value` is an i64 or a double that is exactly that number.
fn toml_holds_numbers(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.as_i64().is_some()
                || n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .is_some_and(|f| crate::criteria::numbers_equal(&f, n))
        }
        Value::Array(items) => items.iter().all(toml_holds_numbers),
        Value::Object(map) => map.values().all(toml_holds_numbers),
        _ => true,
    }
}

fn section(value: &Yaml, name: &str) -> Result<Mapping, String> {
    match value {
        Yaml::Null => Ok(Mapping::new()),
        Yaml::Mapping(m) => Ok(m.clone()),
        _ => Err(format!("{name}: must be a mapping of names to entries")),
    }
}

fn mapping<'a>(value: &'a Yaml, place: &str) -> Result<&'a Mapping, String> {
    match value {
        Yaml::Mapping(m) => Ok(m),
        _ => Err(format!("{place}: must be a mapping of fields")),
    }
}

fn key_text(key: &Yaml, place: &str) -> Result<String, String> {
    match key {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{place}: a name must be text")),
    }
}

/// A field's value as text; numbers and booleans (`cron: 5`) as written.
fn scalar_text(value: &Yaml, place: &str, key: &str) -> Result<String, String> {
    match value {
        Yaml::String(s) => Ok(s.clone()),
        Yaml::Number(n) => Ok(n.to_string()),
        Yaml::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("{place}: `{key}` must be text")),
    }
}

/// `scheme://rest` when the text is a single URI, as the portability
/// proposal allows for expressions and credentials.
fn uri(text: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = text.split_once("://")?;
    let scheme_ok = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+.-".contains(c));
    (scheme_ok && !rest.is_empty() && !text.contains(char::is_whitespace)).then_some((scheme, rest))
}

fn to_json(value: &Yaml, place: &str) -> Result<Value, String> {
    serde_json::to_value(value).map_err(|e| format!("{place}: cannot be read as JSON: {e}"))
}

/// JSON to TOML; `null`s (which TOML cannot hold) are left out and their
/// paths collected.
fn to_toml(value: &Value, path: &str, nulls: &mut Vec<String>) -> Option<toml::Value> {
    Some(match value {
        Value::Null => {
            nulls.push(path.to_string());
            return None;
        }
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None => toml::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(items) => toml::Value::Array(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| to_toml(v, &format!("{path}[{i}]"), nulls))
                .collect(),
        ),
        Value::Object(map) => toml::Value::Table(
            map.iter()
                .filter_map(|(k, v)| Some((k.clone(), to_toml(v, &format!("{path}.{k}"), nulls)?)))
                .collect(),
        ),
    })
}

/// A value as it is written after `key = `, on one line.
fn inline(value: &toml::Value) -> String {
    match value {
        toml::Value::Table(t) => {
            let fields: Vec<String> = t
                .iter()
                .map(|(k, v)| format!("{} = {}", toml_key(k), inline(v)))
                .collect();
            if fields.is_empty() {
                "{}".into()
            } else {
                format!("{{ {} }}", fields.join(", "))
            }
        }
        toml::Value::Array(items) => {
            let items: Vec<String> = items.iter().map(inline).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// A bare key when TOML allows one, a quoted key otherwise.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        key.to_string()
    } else {
        toml_string(key)
    }
}

/// The job's name as a file name: unchanged when it is safe, otherwise
/// with every other character replaced, and made unique.
fn file_stem(name: &str, used: &mut HashSet<String>) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let safe = match safe.trim_start_matches('.') {
        "" => "job".to_string(),
        s => s.to_string(),
    };
    unique(safe, used)
}

/// `name`, or `name-2`, `name-3`, ... : the first not yet in `used`, added.
fn unique(name: String, used: &mut HashSet<String>) -> String {
    let mut candidate = name.clone();
    let mut n = 2;
    while !used.insert(candidate.clone()) {
        candidate = format!("{name}-{n}");
        n += 1;
    }
    candidate
}

mod lightning;

#[cfg(test)]
mod tests;
