//! Where each key of `project.toml` is written, so an error can give the
//! line of the key it is about (or of its table, for a key that is missing).
//!
//! Built once per load from the TOML parser's spans; knows nothing of what
//! the keys mean.

use std::collections::HashMap;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// Line numbers (from 1) of every key, by path: `["jobs", "a", "trigger"]`,
/// `["credentials", "c", "hosts", "[1]"]` for array elements.
#[derive(Debug, Default)]
pub(super) struct Lines {
    by_path: HashMap<Vec<String>, usize>,
}

impl Lines {
    /// Indexes `source`; a document that does not parse has no lines.
    pub fn new(source: &str) -> Lines {
        let mut lines = Lines::default();
        if let Ok(doc) = DeTable::parse(source) {
            let starts = line_starts(source);
            lines.table(&starts, &mut Vec::new(), doc.get_ref());
        }
        lines
    }

    fn table(&mut self, starts: &[usize], path: &mut Vec<String>, table: &DeTable) {
        for (key, value) in table {
            path.push(key.get_ref().to_string());
            self.value(starts, path, key.span().start, value);
            path.pop();
        }
    }

    fn value(
        &mut self,
        starts: &[usize],
        path: &mut Vec<String>,
        at: usize,
        value: &Spanned<DeValue>,
    ) {
        self.by_path
            .entry(path.clone())
            .or_insert_with(|| line_of(starts, at));
        match value.get_ref() {
            DeValue::Table(t) => self.table(starts, path, t),
            DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    path.push(format!("[{i}]"));
                    self.value(starts, path, item.span().start, item);
                    path.pop();
                }
            }
            _ => {}
        }
    }

    /// The line of `key` in `table` (`jobs.a`, `engine`, or empty for the
    /// top level): the key itself when written, else the nearest enclosing
    /// key or table that is. `key` may be a path such as `auth.token` or
    /// `hosts[1]`.
    pub fn of(&self, table: &str, key: Option<&str>) -> Option<usize> {
        let mut path: Vec<String> = match table.split_once('.') {
            _ if table.is_empty() => Vec::new(),
            Some((section, name)) => vec![section.to_string(), name.to_string()],
            None => vec![table.to_string()],
        };
        for part in key.into_iter().flat_map(|k| k.split('.')) {
            let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
            path.push(name.to_string());
            for index in indexes.split('[').filter(|i| !i.is_empty()) {
                path.push(format!("[{index}"));
            }
        }
        while !path.is_empty() {
            if let Some(line) = self.by_path.get(&path) {
                return Some(*line);
            }
            path.pop();
        }
        None
    }
}

fn line_starts(source: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(source.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

fn line_of(starts: &[usize], at: usize) -> usize {
    starts.partition_point(|&s| s <= at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_tables_and_array_elements_have_lines() {
        let source = "# top\n[jobs.a]\ntrigger = \"t\"\nretry = { max_attempts = 2,\n  backoff = \"1s\" }\n\n[jobs.\"b.c\"]\nexpression = \"x\"\n[credentials.c]\nhosts = [\"a\",\n  { env = \"H\" }]\n[engine]\ntimeout = 5\n";
        let lines = Lines::new(source);
        assert_eq!(lines.of("jobs.a", Some("trigger")), Some(3));
        assert_eq!(lines.of("jobs.a", None), Some(2));
        assert_eq!(lines.of("jobs.a", Some("missing")), Some(2));
        assert_eq!(lines.of("jobs.a", Some("retry.backoff")), Some(5));
        assert_eq!(lines.of("jobs.b.c", Some("expression")), Some(8));
        assert_eq!(lines.of("credentials.c", Some("hosts[1]")), Some(11));
        assert_eq!(lines.of("credentials.c", Some("hosts[1].env")), Some(11));
        assert_eq!(lines.of("engine", Some("timeout")), Some(13));
        assert_eq!(lines.of("", Some("engine")), Some(12));
        assert_eq!(lines.of("nope", None), None);
    }
}
