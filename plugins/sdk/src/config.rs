//! The plugin's settings: the `config` table of its `[plugins.<name>]`
//! entry in `project.toml`.
//!
//! The host hands every value over as text: a string as written (not
//! JSON-quoted: `url = "http://x"` arrives as `http://x`), anything else as
//! its JSON text (`5`, `true`, `["a","b"]`, `{"k":"v"}`). The readers here
//! turn that text into a value, or a [`PluginError::Reject`] naming the key,
//! which `/api/plugins` shows as the plugin's `last_error`.

use std::str::FromStr;

use crate::PluginError;

/// A setting as text, if it is set. A value that reaches the plugin
/// JSON-quoted (an older host did that) is unquoted.
pub fn string(key: &str) -> Option<String> {
    crate::host::get_config(key).map(unquote)
}

/// A number setting, `default` when it is not set.
pub fn number<T: FromStr>(key: &str, default: T) -> Result<T, PluginError> {
    parse_number(key, string(key), default).map_err(PluginError::Reject)
}

/// A `true`/`false` setting, `default` when it is not set.
pub fn boolean(key: &str, default: bool) -> Result<bool, PluginError> {
    parse_bool(key, string(key), default).map_err(PluginError::Reject)
}

/// A setting holding JSON (an array or table in `project.toml`), `None`
/// when it is not set.
pub fn json(key: &str) -> Result<Option<serde_json::Value>, PluginError> {
    match crate::host::get_config(key) {
        None => Ok(None),
        Some(raw) => serde_json::from_str(&raw)
            .map(Some)
            .map_err(|e| PluginError::Reject(format!("config `{key}` is not JSON ({e}): {raw}"))),
    }
}

/// Every setting, as `(key, text)` pairs.
pub fn all() -> Vec<(String, String)> {
    crate::host::get_all_config()
}

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

/// A whole-number setting's text: `default` when absent, an error naming
/// `key` when it is not a number of that type.
pub fn parse_number<T: FromStr>(key: &str, value: Option<String>, default: T) -> Result<T, String> {
    match value {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<T>()
            .map_err(|_| format!("config `{key}` must be a non-negative integer, got `{v}`")),
    }
}

/// A boolean setting's text: `default` when absent.
pub fn parse_bool(key: &str, value: Option<String>, default: bool) -> Result<bool, String> {
    match value.as_deref().map(str::trim) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(format!(
            "config `{key}` must be true or false, got `{other}`"
        )),
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
        assert_eq!(parse_number::<u64>("n", None, 7), Ok(7));
        assert_eq!(parse_number::<u64>("n", Some(" 42 ".into()), 7), Ok(42));
        assert_eq!(
            parse_number::<u32>("max_files", Some("-1".into()), 5),
            Err("config `max_files` must be a non-negative integer, got `-1`".into())
        );
    }

    #[test]
    fn booleans_default_parse_or_name_the_key() {
        assert_eq!(parse_bool("b", None, true), Ok(true));
        assert_eq!(parse_bool("b", Some("false".into()), true), Ok(false));
        assert!(
            parse_bool("b", Some("yes".into()), true)
                .unwrap_err()
                .contains("`b`")
        );
    }
}
