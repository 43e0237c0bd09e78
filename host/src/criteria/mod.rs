//! Trigger criteria: does a receipt match?
//!
//! Matching is deep containment, as the hosted OpenFn platform did it with
//! Postgres `@>`: every key of the criteria must be in the message with a
//! value that contains the criteria's value. Objects recurse; an array
//! criterion matches when each of its elements is contained in some element
//! of the message's array; strings, booleans and `null` compare as they are,
//! and numbers by their exact value, as Postgres compares `numeric`s (`2`
//! equals `2.0` and `1e0`; integers past 2^64 and long decimals keep every
//! digit: see [`numeric`]). An empty criteria object matches every message.
//! This module is pure: no I/O, no allocation on the matching path.

use serde_json::Value;

mod numeric;
mod prefilter;

pub use prefilter::Prefilter;

/// True when `message` contains `criteria`.
pub fn matches(criteria: &Value, message: &Value) -> bool {
    if let Value::Object(c) = criteria
        && c.is_empty()
    {
        return true;
    }
    contains(message, criteria)
}

fn contains(haystack: &Value, needle: &Value) -> bool {
    match (haystack, needle) {
        (Value::Object(h), Value::Object(n)) => n
            .iter()
            .all(|(key, nv)| h.get(key).is_some_and(|hv| contains(hv, nv))),
        (Value::Array(h), Value::Array(n)) => {
            n.iter().all(|nv| h.iter().any(|hv| contains(hv, nv)))
        }
        (Value::Number(h), Value::Number(n)) => numbers_equal(h, n),
        (Value::String(h), Value::String(n)) => h == n,
        (Value::Bool(h), Value::Bool(n)) => h == n,
        (Value::Null, Value::Null) => true,
        _ => false,
    }
}

/// True when the two numbers have the same value, exactly.
pub fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    // With `arbitrary_precision`, a number is the text it was written as
    // (or, made in Rust, its shortest exact spelling).
    numeric::equal(a.as_str(), b.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body() -> Value {
        // The original microservice's valid_post_body.json.
        json!({"string":"here","number":2,"object":{"a":1},"array":[1,2,3],"boolean":true,"null":null})
    }

    #[test]
    fn flat_criteria_match_a_superset() {
        assert!(matches(&json!({"number": 2}), &body()));
        assert!(matches(&json!({"number": 2, "string": "here"}), &body()));
        assert!(!matches(&json!({"number": 5}), &body()));
        assert!(!matches(&json!({"missing": 1}), &body()));
    }

    #[test]
    fn empty_criteria_match_everything() {
        assert!(matches(&json!({}), &body()));
        assert!(matches(&json!({}), &json!([1, 2])));
        assert!(matches(&json!({}), &json!("text")));
    }

    #[test]
    fn objects_recurse() {
        let msg = json!({"form": {"id": "f1", "meta": {"version": 3, "by": "x"}}});
        assert!(matches(&json!({"form": {"meta": {"version": 3}}}), &msg));
        assert!(matches(&json!({"form": {}}), &msg));
        assert!(!matches(&json!({"form": {"meta": {"version": 4}}}), &msg));
        assert!(!matches(&json!({"form": "f1"}), &msg));
    }

    #[test]
    fn arrays_match_by_element_containment() {
        assert!(matches(&json!({"array": [3, 1]}), &body()));
        assert!(matches(&json!({"array": []}), &body()));
        assert!(!matches(&json!({"array": [4]}), &body()));
        let msg = json!({"items": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]});
        assert!(matches(&json!({"items": [{"sku": "b"}]}), &msg));
        assert!(!matches(&json!({"items": [{"sku": "b", "qty": 1}]}), &msg));
        // A scalar criterion does not match an array value, nor the reverse.
        assert!(!matches(&json!({"array": 1}), &body()));
        assert!(!matches(&json!({"number": [2]}), &body()));
    }

    #[test]
    fn numbers_compare_by_value() {
        assert!(matches(&json!({"number": 2.0}), &body()));
        assert!(!matches(&json!({"number": 2.5}), &json!({"number": 2})));
        assert!(matches(&json!({"n": -7}), &json!({"n": -7.0})));
        assert!(matches(&json!({"id": u64::MAX}), &json!({"id": u64::MAX})));
        assert!(!matches(
            &json!({"id": u64::MAX}),
            &json!({"id": u64::MAX - 1})
        ));
    }

    fn parsed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn numbers_compare_exactly_at_any_size() {
        let exact = |c: &str, m: &str| matches(&parsed(c), &parsed(m));
        // Past 2^53, neighbours are one f64; past 2^64, no integer type holds them.
        assert!(!exact(
            r#"{"n": 9007199254740993}"#,
            r#"{"n": 9007199254740992}"#
        ));
        assert!(exact(
            r#"{"n": 9007199254740993}"#,
            r#"{"n": 9007199254740993.0}"#
        ));
        assert!(!exact(
            r#"{"n": 18446744073709551617}"#,
            r#"{"n": 18446744073709551616}"#
        ));
        assert!(exact(
            r#"{"n": 18446744073709551617}"#,
            r#"{"n": 18446744073709551617}"#
        ));
        assert!(exact(
            r#"{"n": 18446744073709551616}"#,
            r#"{"n": 1.8446744073709551616e19}"#
        ));
        assert!(!exact(
            r#"{"n": -18446744073709551617}"#,
            r#"{"n": -18446744073709551616}"#
        ));
        assert!(!exact(
            r#"{"n": 0.1}"#,
            r#"{"n": 0.1000000000000000000001}"#
        ));
        assert!(exact(r#"{"n": 100}"#, r#"{"n": 1e2}"#));
        assert!(exact(r#"{"n": 1E+2}"#, r#"{"n": 100.000}"#));
        assert!(exact(r#"{"n": 0}"#, r#"{"n": -0.0}"#));
        assert!(exact(r#"{"n": 1e400}"#, r#"{"n": 10e399}"#));
        assert!(!exact(r#"{"n": 1e400}"#, r#"{"n": 1e401}"#));
        // Inside arrays and nested objects too.
        assert!(exact(
            r#"{"a": [{"n": 2e0}]}"#,
            r#"{"a": [{"n": 1}, {"n": 2.0}]}"#
        ));
        assert!(!exact(
            r#"{"a": [18446744073709551617]}"#,
            r#"{"a": [18446744073709551616, 18446744073709551618]}"#
        ));
        // A number made in Rust (a TOML criterion) against one parsed.
        assert!(matches(&json!({"n": 2.5}), &parsed(r#"{"n": 25e-1}"#)));
        assert!(matches(
            &json!({"n": i64::MIN}),
            &parsed(r#"{"n": -9223372036854775808.0}"#)
        ));
    }

    #[test]
    fn parsed_numbers_keep_every_digit() {
        for text in [
            r#"{"n":18446744073709551617}"#,
            r#"{"n":-18446744073709551617.000000000000000000001}"#,
            r#"{"n":9007199254740993}"#,
        ] {
            assert_eq!(parsed(text).to_string(), text);
        }
        // The one change: an exponent is written with its sign.
        assert_eq!(parsed(r#"{"n":1E400}"#).to_string(), r#"{"n":1e+400}"#);
    }

    #[test]
    fn types_never_coerce() {
        assert!(!matches(&json!({"number": "2"}), &body()));
        assert!(!matches(&json!({"boolean": 1}), &body()));
        assert!(matches(&json!({"null": null}), &body()));
        assert!(!matches(&json!({"null": false}), &body()));
        assert!(!matches(&json!({"boolean": false}), &body()));
    }

    #[test]
    fn non_object_messages_only_match_empty_criteria() {
        assert!(!matches(&json!({"number": 2}), &json!([{"number": 2}])));
        assert!(!matches(&json!({"number": 2}), &json!(null)));
    }
}
