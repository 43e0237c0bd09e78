//! Keeping credentials out of everything the service writes or answers.
//!
//! Two tools: [`strip_configuration`] removes `configuration` from a state
//! before it is stored, returned or logged, and [`Redactor`] replaces every
//! credential value in a line of text with `***` (a job may well
//! `console.log(state)`). This module must never log what it redacts.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

/// Values shorter than this are not redacted: masking every `1` or `yes` in
/// the logs would destroy them, and such values are not secrets anyway.
const MIN_SECRET_LEN: usize = 4;

pub const MASK: &str = "***";

/// Removes the credential from a job state, wherever the state came from.
pub fn strip_configuration(state: &mut Value) {
    if let Value::Object(map) = state {
        map.remove("configuration");
    }
}

/// Replaces known secret values in text.
#[derive(Debug, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
}

impl Redactor {
    /// Builds a redactor for every string (and long number) inside the credentials.
    pub fn new<'a>(credentials: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut secrets = Vec::new();
        for c in credentials {
            collect(c, &mut secrets);
        }
        // The same secret as it looks inside a JSON string, escapes and all.
        let escaped: Vec<String> = secrets
            .iter()
            .filter_map(|s| serde_json::to_string(s).ok())
            .map(|q| q[1..q.len() - 1].to_string())
            .collect();
        secrets.extend(escaped);
        secrets.retain(|s| s.len() >= MIN_SECRET_LEN);
        secrets.sort();
        secrets.dedup();
        let matcher = if secrets.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&secrets)
                .ok()
        };
        Redactor { matcher }
    }

    pub fn redact<'t>(&self, text: &'t str) -> Cow<'t, str> {
        match &self.matcher {
            Some(m) if m.is_match(text) => {
                let masks = vec![MASK; m.patterns_len()];
                Cow::Owned(m.replace_all(text, &masks))
            }
            _ => Cow::Borrowed(text),
        }
    }
}

fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(s) => out.push(s.clone()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect(v, out)),
        Value::Bool(_) | Value::Null => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_are_masked_in_plain_and_json_text() {
        let r = Redactor::new([
            &json!({"username": "user@example.com", "password": "pa\"ss", "pin": 12345, "n": 1}),
        ]);
        assert_eq!(r.redact("login user@example.com ok"), "login *** ok");
        assert_eq!(
            r.redact(r#"{"password":"pa\"ss"}"#),
            r#"{"password":"***"}"#
        );
        assert_eq!(r.redact("pin 12345"), "pin ***");
        assert_eq!(r.redact("count 1"), "count 1");
        assert!(matches!(r.redact("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn configuration_is_stripped() {
        let mut s = json!({"data": {}, "configuration": {"password": "x"}});
        strip_configuration(&mut s);
        assert_eq!(s, json!({"data": {}}));
    }

    #[test]
    fn no_credentials_means_no_change() {
        let r = Redactor::new([]);
        assert_eq!(r.redact("shhh"), "shhh");
    }
}
