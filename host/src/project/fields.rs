//! Reading typed values out of TOML tables, with errors that name the
//! file, the table, the key and the table's line. Shared by every part of
//! the project file; knows nothing of jobs or plugins.

use std::path::Path;
use std::time::Duration;

use croner::parser::{CronParser, Seconds, Year};
use toml::Table;

use super::ProjectError;

pub(super) struct Ctx<'a> {
    pub file: &'a Path,
    pub source: &'a str,
}

impl Ctx<'_> {
    pub fn err(&self, table: &str, key: Option<&str>, message: impl Into<String>) -> ProjectError {
        ProjectError::Invalid {
            file: self.file.to_path_buf(),
            table: table.to_string(),
            key: key.map(str::to_string),
            line: header_line(self.source, table),
            message: message.into(),
        }
    }
}

/// The line of `[table]` (or `[a."b"]`), for pointing an editor at it.
fn header_line(source: &str, table: &str) -> Option<usize> {
    if table.is_empty() {
        return None;
    }
    let (head, name) = table.split_once('.').unwrap_or((table, ""));
    let wanted = [
        format!("[{table}]"),
        format!("[{head}.\"{name}\"]"),
        format!("[{head}.'{name}']"),
    ];
    source
        .lines()
        .position(|l| {
            let t: String = l
                .split('#')
                .next()
                .unwrap_or("")
                .chars()
                .filter(|c| !c.is_whitespace())
                .collect();
            wanted.contains(&t)
        })
        .map(|i| i + 1)
}

pub(super) fn section<'a>(
    cx: &Ctx,
    doc: &'a Table,
    name: &str,
) -> Result<Option<&'a Table>, ProjectError> {
    match doc.get(name) {
        None => Ok(None),
        Some(toml::Value::Table(t)) => Ok(Some(t)),
        Some(_) => Err(cx.err("", Some(name), "must be a table")),
    }
}

pub(super) fn sub_table<'a>(
    cx: &Ctx,
    table: &str,
    value: &'a toml::Value,
) -> Result<&'a Table, ProjectError> {
    value
        .as_table()
        .ok_or_else(|| cx.err(table, None, "must be a table"))
}

pub(super) fn check_keys(
    cx: &Ctx,
    table: &str,
    t: &Table,
    allowed: &[&str],
) -> Result<(), ProjectError> {
    match t.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(cx.err(
            table,
            Some(k),
            format!("unknown key; expected one of {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

pub(super) fn string<'a>(
    cx: &Ctx,
    table: &str,
    t: &'a Table,
    key: &str,
) -> Result<Option<&'a str>, ProjectError> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(cx.err(table, Some(key), "must be a string")),
    }
}

pub(super) fn duration(
    cx: &Ctx,
    table: &str,
    t: &Table,
    key: &str,
) -> Result<Option<Duration>, ProjectError> {
    let d = match t.get(key) {
        None => return Ok(None),
        Some(toml::Value::Integer(secs)) if *secs > 0 => Duration::from_secs(*secs as u64),
        Some(toml::Value::String(s)) => humantime::parse_duration(s).map_err(|e| {
            cx.err(
                table,
                Some(key),
                format!("`{s}` is not a duration ({e}); write e.g. \"30s\" or \"5m\""),
            )
        })?,
        Some(_) => {
            return Err(cx.err(
                table,
                Some(key),
                "must be a duration such as \"30s\" or \"5m\", or a number of seconds",
            ));
        }
    };
    if d.is_zero() {
        return Err(cx.err(table, Some(key), "must be longer than zero"));
    }
    Ok(Some(d))
}

pub(super) fn positive(
    cx: &Ctx,
    table: &str,
    t: &Table,
    key: &str,
) -> Result<Option<usize>, ProjectError> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as usize)),
        Some(_) => Err(cx.err(table, Some(key), "must be a whole number above zero")),
    }
}

/// A cron expression of 5 fields, or 6 with seconds first.
pub(super) fn cron(
    cx: &Ctx,
    table: &str,
    key: &str,
    expr: &str,
) -> Result<croner::Cron, ProjectError> {
    let fields = expr.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(cx.err(table, Some(key), format!("`{expr}` has {fields} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)")));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| {
            cx.err(
                table,
                Some(key),
                format!("`{expr}` is not a cron expression: {e}"),
            )
        })
}
