//! How the first-party plugins read their `config` values, in one place so
//! they all read them alike.
//!
//! The host hands every value of a plugin's `config` table over as text
//! (`host.get-config`): numbers and booleans as JSON (`5`, `true`), strings
//! as given or JSON-quoted. This crate only interprets that text; it never
//! calls the host, so each plugin keeps its own bindings and this builds and
//! tests natively.

use std::str::FromStr;

/// The value as the operator wrote it: a JSON-quoted string is unquoted,
/// anything else is kept as it came.
pub fn unquote(raw: String) -> String {
    let trimmed = raw.trim();
    if trimmed.starts_with('"')
        && let Ok(s) = serde_json::from_str::<String>(trimmed)
    {
        return s;
    }
    raw
}

/// A whole-number setting: `default` when absent, an error naming `key`
/// when it is not a number of that type.
pub fn number<T: FromStr>(key: &str, value: Option<String>, default: T) -> Result<T, String> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map_err(|_| format!("config `{key}` must be a non-negative integer, got `{v}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_quoted_strings_are_unquoted_and_the_rest_kept() {
        assert_eq!(unquote("\"/logs\"".into()), "/logs");
        assert_eq!(unquote(" \"a \\\"b\\\"\" ".into()), "a \"b\"");
        assert_eq!(unquote("/logs".into()), "/logs");
        assert_eq!(unquote("5".into()), "5");
        // Not valid JSON: kept as given.
        assert_eq!(unquote("\"open".into()), "\"open");
    }

    #[test]
    fn numbers_default_parse_or_name_the_key() {
        assert_eq!(number::<u64>("n", None, 7), Ok(7));
        assert_eq!(number::<u64>("n", Some(" 42 ".into()), 7), Ok(42));
        assert_eq!(
            number::<u32>("max_files", Some("-1".into()), 5),
            Err("config `max_files` must be a non-negative integer, got `-1`".into())
        );
    }
}
