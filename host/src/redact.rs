//! Keeping credentials out of everything the service writes or answers.
//!
//! Two tools: [`strip_configuration`] removes `configuration` from a state
//! before it is stored, returned or logged, and [`Redactor`] replaces every
//! credential value in a line of text with `***`, in every form [`forms`]
//! lists (a job may well `console.log(state)`, or the `Authorization` header
//! it built). Every line of job output goes through one redactor before it
//! reaches the run's log, the service's log or a logging plugin. This
//! module must never log what it redacts.

use std::borrow::Cow;

use aho_corasick::{AhoCorasick, MatchKind};
use serde_json::Value;

mod forms;

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
    /// Builds a redactor for every string (and long number) inside the
    /// credentials, in each of its printed forms.
    pub fn new<'a>(credentials: impl IntoIterator<Item = &'a Value>) -> Self {
        let mut secrets = Vec::new();
        for c in credentials {
            collect(c, &mut secrets);
        }
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
                let mut masked = String::with_capacity(text.len());
                m.replace_all_with(text, &mut masked, |_, _, out| {
                    out.push_str(MASK);
                    true
                });
                Cow::Owned(masked)
            }
            _ => Cow::Borrowed(text),
        }
    }
}

/// The forms of every secret in `value`, and of each two values of one
/// object (a user name and its password).
fn collect(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| collect(v, out)),
        Value::Object(map) => {
            let siblings: Vec<String> = map.values().filter_map(text).collect();
            forms::of_pairs(&siblings, MIN_SECRET_LEN, out);
            map.values().for_each(|v| collect(v, out));
        }
        scalar => {
            if let Some(t) = text(scalar).filter(|t| t.len() >= MIN_SECRET_LEN) {
                forms::of_value(&t, out);
            }
        }
    }
}

/// A scalar as a job would print it.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
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
    fn encoded_forms_are_masked() {
        let r = Redactor::new([&json!({
            "username": "user@example.com",
            "password": "p@ss word/+&=é",
            "auth": {"token": "tok_9f8e7d6c5b4a3210"},
        })]);
        for (printed, masked) in [
            // Buffer.from("user@example.com:p@ss word/+&=é").toString("base64")
            (
                "Authorization: Basic dXNlckBleGFtcGxlLmNvbTpwQHNzIHdvcmQvKyY9w6k=",
                "Authorization: Basic ***",
            ),
            (
                "Authorization: Bearer tok_9f8e7d6c5b4a3210",
                "Authorization: Bearer ***",
            ),
            // base64 of the token alone, and inside `api:<token>`.
            ("dG9rXzlmOGU3ZDZjNWI0YTMyMTA=", "***"),
            ("YXBpOnRva185ZjhlN2Q2YzViNGEzMjEw", "YXBpOn***"),
            ("?p=p%40ss%20word%2F%2B%26%3D%C3%A9&x=1", "?p=***&x=1"),
            ("p=p%40ss+word%2F%2B%26%3D%C3%A9", "p=***"),
            (
                "https://user%40example.com:p%40ss%20word%2F+&%3D%C3%A9@host/",
                "https://***:***@host/",
            ),
        ] {
            assert_eq!(r.redact(printed), masked, "{printed}");
        }
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
