//! Which helpers an adaptor has, read from the installed package itself.
//!
//! OpenFn adaptors ship `ast.json`, the documentation metadata their docs
//! are built from: `operations` (the adaptor's own helpers), `exports` and
//! `common` (helpers re-exported from language-common, such as `each` and
//! `fn`). Their `name`s are the helpers a job can call. A package without
//! it has no known list: its expressions keep every plain call the parser
//! found, and `helper=` is not checked against it. Read once at start-up,
//! never on the request path; nothing here runs the package's code.

use std::collections::BTreeSet;
use std::path::Path;

/// The helpers listed in `package_dir/ast.json`, or `None` when the
/// package has none (or it is not installed).
pub fn helpers(package_dir: &Path) -> Option<BTreeSet<String>> {
    let text = std::fs::read_to_string(package_dir.join("ast.json")).ok()?;
    let ast: serde_json::Value = serde_json::from_str(&text).ok()?;
    let names: BTreeSet<String> = ["operations", "exports", "common"]
        .iter()
        .filter_map(|list| ast.get(list)?.as_array())
        .flatten()
        .filter_map(|item| item.get("name")?.as_str())
        .filter(|name| !name.is_empty())
        .map(str::to_string)
        .collect();
    (!names.is_empty()).then_some(names)
}

/// The `limit` names of `known` closest to `name` (Jaro-Winkler, a
/// case-insensitive prefix counting most), best first.
pub fn nearest<'a>(
    name: &str,
    known: impl IntoIterator<Item = &'a String>,
    limit: usize,
) -> Vec<&'a str> {
    let lower = name.to_lowercase();
    let mut scored: Vec<(f64, &str)> = known
        .into_iter()
        .map(|k| (strsim::jaro_winkler(&lower, &k.to_lowercase()), k.as_str()))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(b.1)));
    scored.into_iter().take(limit).map(|(_, k)| k).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_operations_exports_and_common() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ast.json"),
            r#"{"operations":[{"name":"createTEI"},{"name":"update"}],"exports":[],"common":[{"name":"each"},{"name":"fn"}]}"#,
        )
        .unwrap();
        let names = helpers(dir.path()).unwrap();
        assert_eq!(
            names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["createTEI", "each", "fn", "update"]
        );
        assert!(helpers(&dir.path().join("missing")).is_none());
        assert_eq!(nearest("createTei", &names, 1), ["createTEI"]);
        assert_eq!(nearest("eachh", &names, 1), ["each"]);
    }
}
