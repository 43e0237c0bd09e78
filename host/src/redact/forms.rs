//! The forms a credential value takes when a job prints it after encoding
//! it, as HTTP clients do when they build an `Authorization` header or a
//! URL: the redactor masks every one of them.
//!
//! - the value itself (a `Bearer` header carries it as it is), and as it
//!   looks inside a JSON string;
//! - base64, standard and URL-safe alphabets, padded or not, and for values
//!   of 7 bytes or more the part of *any* base64 text that encodes them,
//!   wherever they sit in the encoded bytes (`base64("api:" + key)`, a
//!   base64 JSON blob): all but the one or two characters at each edge,
//!   which mix the value with its neighbours;
//! - base64 of `a:b` for every two values of one object of the credential
//!   (HTTP Basic's `user:password`, whatever the keys are called);
//! - percent-encoded: the sets of JavaScript's `encodeURIComponent` and
//!   `encodeURI`, RFC 3986's unreserved characters, the WHATWG form and
//!   userinfo sets, with a space as `%20` and, where `+` is itself escaped,
//!   as `+`; each with upper- and lower-case hex digits.
//!
//! Encodings come from the `base64`, `percent-encoding` and
//! `form_urlencoded` crates. This module only computes text; it must never
//! log what it is given.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};

/// Shorter stretches of base64 could turn up by chance in long encoded
/// data; 8 characters are 48 bits.
const MIN_BASE64_CORE: usize = 8;

/// Values longer than this are not paired for `a:b`: a private key is
/// nobody's user name, and the pairs would grow with its square.
const MAX_PAIRED_LEN: usize = 256;

/// Paired values per object, at most: n × (n - 1) pairs each.
const MAX_PAIRED: usize = 24;

/// JavaScript's `encodeURIComponent`: all but `A-Z a-z 0-9 - _ . ! ~ * ' ( )`.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// JavaScript's `encodeURI`, which also leaves the URL's delimiters.
const URI: &AsciiSet = &COMPONENT
    .remove(b';')
    .remove(b',')
    .remove(b'/')
    .remove(b'?')
    .remove(b':')
    .remove(b'@')
    .remove(b'&')
    .remove(b'=')
    .remove(b'+')
    .remove(b'$')
    .remove(b'#');

/// RFC 3986's unreserved characters only (Python's `quote(s, safe="")`,
/// Go's `QueryEscape` but for its `+`).
const UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The WHATWG URL standard's userinfo set: a password in `https://u:p@host`.
const USERINFO: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'=')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'|');

/// Every form of one value; `out` may get duplicates.
pub fn of_value(value: &str, out: &mut Vec<String>) {
    out.push(value.to_string());
    if let Ok(quoted) = serde_json::to_string(value) {
        out.push(quoted[1..quoted.len() - 1].to_string());
    }
    base64_whole(value.as_bytes(), out);
    base64_cores(value.as_bytes(), out);
    percent_encoded(value, out);
}

/// `a:b` for each two of `values` (one object's) of which one is a secret
/// (`min_len` bytes or more), both ways round, in base64 as an HTTP Basic
/// header carries it.
pub fn of_pairs(values: &[String], min_len: usize, out: &mut Vec<String>) {
    let paired: Vec<&String> = values
        .iter()
        .filter(|v| !v.is_empty() && v.len() <= MAX_PAIRED_LEN)
        .take(MAX_PAIRED)
        .collect();
    for a in &paired {
        for b in &paired {
            if a != b && a.len().max(b.len()) >= min_len {
                base64_whole(format!("{a}:{b}").as_bytes(), out);
            }
        }
    }
}

fn base64_whole(bytes: &[u8], out: &mut Vec<String>) {
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        out.push(engine.encode(bytes));
    }
}

/// The characters of a base64 text that encode `bytes` alone, for each of
/// the three places they can start within a 3-byte group. Character `i`
/// holds bits `6i..6i+6` of the data, so with `offset` bytes before the
/// value it is the value's alone from `ceil(8·offset/6)` to
/// `floor(8·(offset+len)/6)`.
fn base64_cores(bytes: &[u8], out: &mut Vec<String>) {
    for offset in 0..3usize {
        let start = (8 * offset).div_ceil(6);
        let end = 8 * (offset + bytes.len()) / 6;
        if end < start + MIN_BASE64_CORE {
            continue;
        }
        let mut data = vec![0u8; offset];
        data.extend_from_slice(bytes);
        for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
            out.push(engine.encode(&data)[start..end].to_string());
        }
    }
}

fn percent_encoded(value: &str, out: &mut Vec<String>) {
    let mut forms = Vec::new();
    for set in [COMPONENT, UNRESERVED] {
        let encoded = utf8_percent_encode(value, set).to_string();
        forms.push(encoded.replace("%20", "+"));
        forms.push(encoded);
    }
    for set in [URI, USERINFO] {
        forms.push(utf8_percent_encode(value, set).to_string());
    }
    forms.push(form_urlencoded::byte_serialize(value.as_bytes()).collect());
    for form in forms {
        if form.contains('%') {
            out.push(lower_hex(&form));
        }
        out.push(form);
    }
}

/// `%2F` as `%2f`: some encoders write lower-case hex digits.
fn lower_hex(encoded: &str) -> String {
    let mut lower = String::with_capacity(encoded.len());
    let mut rest = encoded;
    while let Some(at) = rest.find('%') {
        let (before, escape) = rest.split_at(at);
        lower.push_str(before);
        let len = escape.len().min(3);
        lower.push_str(&escape[..len].to_ascii_lowercase());
        rest = &escape[len..];
    }
    lower.push_str(rest);
    lower
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(value: &str) -> Vec<String> {
        let mut out = Vec::new();
        of_value(value, &mut out);
        out
    }

    #[test]
    fn base64_of_the_value_in_both_alphabets() {
        // "s>?~s>?~" encodes with `+` and `/`, so the alphabets differ.
        let f = forms("s>?~s>?~");
        for encoded in ["cz4/fnM+P34=", "cz4/fnM+P34", "cz4_fnM-P34=", "cz4_fnM-P34"] {
            assert!(f.contains(&encoded.to_string()), "{encoded}: {f:?}");
        }
    }

    #[test]
    fn base64_cores_are_found_at_every_alignment() {
        let secret = "k3y-AbCdEf0123456789";
        let f = forms(secret);
        for prefix in ["", "a", "ab", "api:", "{\"token\":\""] {
            for engine in [&STANDARD, &URL_SAFE_NO_PAD] {
                let text = engine.encode(format!("{prefix}{secret}\"}}"));
                assert!(
                    f.iter()
                        .any(|form| form.len() >= MIN_BASE64_CORE && text.contains(form.as_str())),
                    "{prefix:?}: nothing of {text} is masked"
                );
            }
        }
        // And what is left unmasked is at most two characters at each edge.
        let text = STANDARD.encode(format!("api:{secret}"));
        let longest = f
            .iter()
            .filter(|form| text.contains(form.as_str()))
            .map(String::len)
            .max()
            .unwrap();
        assert!(
            longest + 4 >= STANDARD.encode(secret).len(),
            "{longest} of {text}"
        );
    }

    #[test]
    fn short_values_have_no_cores() {
        let mut out = Vec::new();
        base64_cores(b"shhh", &mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn percent_encodings_with_both_spaces_and_cases() {
        let f = forms("p@ss word/+&=é");
        for encoded in [
            "p%40ss%20word%2F%2B%26%3D%C3%A9", // encodeURIComponent
            "p%40ss+word%2F%2B%26%3D%C3%A9",   // the same, form style
            "p%40ss+word%2F%2B%26%3D%C3%A9",   // form_urlencoded
            "p@ss%20word/+&=%C3%A9",           // encodeURI
            "p%40ss%20word%2F+&%3D%C3%A9",     // WHATWG userinfo
            "p%40ss%20word%2f%2b%26%3d%c3%a9", // lower-case hex
        ] {
            assert!(f.contains(&encoded.to_string()), "{encoded}: {f:?}");
        }
    }

    #[test]
    fn basic_pairs_both_ways_round() {
        let mut out = Vec::new();
        of_pairs(&["user@example.com".into(), "shhh".into()], 4, &mut out);
        // Buffer.from("user@example.com:shhh").toString("base64")
        assert!(
            out.contains(&"dXNlckBleGFtcGxlLmNvbTpzaGho".to_string()),
            "{out:?}"
        );
        assert!(out.contains(&STANDARD.encode("shhh:user@example.com")));
        let long = "x".repeat(MAX_PAIRED_LEN + 1);
        let mut out = Vec::new();
        of_pairs(&[long, "shhh".into()], 4, &mut out);
        assert!(out.is_empty(), "a long value is not paired");
        of_pairs(&["bob".into(), "123".into()], 4, &mut out);
        assert!(
            out.is_empty(),
            "two values too short to be secrets are not paired"
        );
    }
}
