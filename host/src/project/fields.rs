//! Reading typed values out of TOML tables, with errors that name the
//! file, the table, the key and the key's line. Shared by every part of
//! the project file; knows nothing of jobs or plugins.

use std::cell::RefCell;
use std::path::Path;
use std::time::Duration;

use toml::Table;

use super::ProjectError;
use super::locate::Lines;

/// The file being read, and the problems found in it so far: readers
/// report a problem and carry on, so one pass finds them all.
pub(super) struct Ctx<'a> {
    pub file: &'a Path,
    lines: Lines,
    problems: RefCell<Vec<ProjectError>>,
}

impl<'a> Ctx<'a> {
    pub fn new(file: &'a Path, source: &str) -> Ctx<'a> {
        Ctx {
            file,
            lines: Lines::new(source),
            problems: RefCell::default(),
        }
    }

    pub fn err(&self, table: &str, key: Option<&str>, message: impl Into<String>) -> ProjectError {
        ProjectError::Invalid {
            file: self.file.to_path_buf(),
            table: table.to_string(),
            key: key.map(str::to_string),
            line: self.lines.of(table, key),
            message: message.into(),
        }
    }

    /// Records a problem; reading goes on.
    pub fn report(&self, problem: ProjectError) {
        self.problems.borrow_mut().push(problem);
    }

    /// The value, or `None` with the problem recorded.
    pub fn ok<T>(&self, result: Result<T, ProjectError>) -> Option<T> {
        result.map_err(|e| self.report(e)).ok()
    }

    /// Everything reported, in file order (problems without a line last),
    /// as one error; `None` when there was nothing.
    pub fn finish(self) -> Option<ProjectError> {
        let mut all = self.problems.into_inner();
        all.sort_by_key(|p| match p {
            ProjectError::Invalid { line, .. } => line.unwrap_or(usize::MAX),
            _ => usize::MAX,
        });
        all.dedup_by(|a, b| a.to_string() == b.to_string());
        match all.len() {
            0 => None,
            1 => all.pop(),
            _ => Some(ProjectError::Many(all)),
        }
    }
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

/// Reports every key of `t` that is not in `allowed`; the rest of the
/// table is still read (the unknown keys are ignored), hence always `Ok`.
pub(super) fn check_keys(
    cx: &Ctx,
    table: &str,
    t: &Table,
    allowed: &[&str],
) -> Result<(), ProjectError> {
    for k in t.keys().filter(|k| !allowed.contains(&k.as_str())) {
        cx.report(cx.err(
            table,
            Some(k),
            format!("unknown key; expected one of {}", allowed.join(", ")),
        ));
    }
    Ok(())
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

/// A cron expression of 5 fields, 6 with seconds first, or a nickname
/// such as `@daily` (see [`crate::cron::parse`]).
pub(super) fn cron(
    cx: &Ctx,
    table: &str,
    key: &str,
    expr: &str,
) -> Result<croner::Cron, ProjectError> {
    crate::cron::parse(expr).map_err(|why| cx.err(table, Some(key), why))
}

pub(super) fn boolean(
    cx: &Ctx,
    table: &str,
    t: &Table,
    key: &str,
) -> Result<Option<bool>, ProjectError> {
    match t.get(key) {
        None => Ok(None),
        Some(toml::Value::Boolean(b)) => Ok(Some(*b)),
        Some(_) => Err(cx.err(table, Some(key), "must be true or false")),
    }
}
