//! A first look at a receipt that builds nothing: is it valid JSON, and which
//! of the top-level keys the criteria name does it have?
//!
//! Every non-empty criteria object needs its keys at the top of the message,
//! so a receipt missing one of each trigger's keys matches no trigger, and a
//! service without a message store has no use for its parsed `Value`. This
//! pass accepts and rejects exactly what parsing into a `Value` does (the
//! same `serde_json` parser decodes every string and number), with the same
//! errors; it must never say "no match" for a receipt some trigger matches.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// Per criteria trigger, the top-level keys it needs.
pub struct Prefilter {
    /// Every top-level key any criteria names (at most 64: one bit each).
    keys: Vec<String>,
    /// Per trigger, the bits of the keys it needs.
    needs: Vec<u64>,
    /// Some trigger may match anything (empty criteria), or the keys are too
    /// many to track: every receipt is parsed in full.
    always: bool,
}

impl Prefilter {
    pub fn new<'a>(criteria: impl IntoIterator<Item = &'a Value>) -> Prefilter {
        let mut p = Prefilter {
            keys: Vec::new(),
            needs: Vec::new(),
            always: false,
        };
        for c in criteria {
            let Value::Object(map) = c else {
                p.always = true;
                continue;
            };
            if map.is_empty() {
                p.always = true;
            }
            let mut need = 0u64;
            for key in map.keys() {
                let bit = match p.keys.iter().position(|k| k == key) {
                    Some(bit) => bit,
                    None => {
                        p.keys.push(key.clone());
                        p.keys.len() - 1
                    }
                };
                if bit >= 64 {
                    p.always = true;
                    break;
                }
                need |= 1 << bit;
            }
            p.needs.push(need);
        }
        p
    }

    /// `Ok(false)`: `json` is valid and no trigger can match it. `Ok(true)`:
    /// some trigger may match, so parse it in full (which also reports any
    /// error, as this does not look when every receipt is parsed anyway).
    /// `Err`: the error parsing it into a `Value` gives.
    pub fn may_match(&self, json: &[u8]) -> serde_json::Result<bool> {
        if self.always {
            return Ok(true);
        }
        let mut de = serde_json::Deserializer::from_slice(json);
        let present = (&mut de).deserialize_any(TopLevel(&self.keys))?;
        de.end()?;
        Ok(self.needs.iter().any(|need| need & !present == 0))
    }
}

/// The receipt's top level: the bits of the wanted keys it has.
struct TopLevel<'k>(&'k [String]);

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<u64, A::Error> {
        let mut present = 0u64;
        while let Some(bit) = map.next_key_seed(Key(self.0))? {
            map.next_value_seed(Checked)?;
            if let Some(bit) = bit {
                present |= 1 << bit;
            }
        }
        Ok(present)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<u64, A::Error> {
        Checked.visit_seq(seq).map(|_| 0)
    }

    // A scalar receipt has no keys; the parser has already checked it.
    fn visit_bool<E>(self, _: bool) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_i64<E>(self, _: i64) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_u64<E>(self, _: u64) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_f64<E>(self, _: f64) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_str<E>(self, _: &str) -> Result<u64, E> {
        Ok(0)
    }
    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(0)
    }
}

/// A top-level key: which wanted key it is, if any.
struct Key<'k>(&'k [String]);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|k| k == key))
    }
}

/// Any value, decoded the way `Value` decodes it and then dropped.
/// (`IgnoredAny` would skip strings without decoding them, and so let
/// through lone surrogates. Numbers are kept as text at any size, so none
/// is out of range.)
#[derive(Clone, Copy)]
struct Checked;

impl<'de> DeserializeSeed<'de> for Checked {
    type Value = IgnoredAny;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<IgnoredAny, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = IgnoredAny;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<IgnoredAny, A::Error> {
        while map.next_key_seed(Checked)?.is_some() {
            map.next_value_seed(Checked)?;
        }
        Ok(IgnoredAny)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IgnoredAny, A::Error> {
        while seq.next_element_seed(Checked)?.is_some() {}
        Ok(IgnoredAny)
    }

    fn visit_bool<E>(self, _: bool) -> Result<IgnoredAny, E> {
        Ok(IgnoredAny)
    }
    fn visit_i64<E>(self, _: i64) -> Result<IgnoredAny, E> {
        Ok(IgnoredAny)
    }
    fn visit_u64<E>(self, _: u64) -> Result<IgnoredAny, E> {
        Ok(IgnoredAny)
    }
    fn visit_f64<E>(self, _: f64) -> Result<IgnoredAny, E> {
        Ok(IgnoredAny)
    }
    fn visit_str<E>(self, _: &str) -> Result<IgnoredAny, E> {
        Ok(IgnoredAny)
    }
    fn visit_unit<E>(self) -> Result<IgnoredAny, E> {
        Ok(IgnoredAny)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::matches;
    use serde_json::json;

    /// A small xorshift generator: the same cases on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[self.below(from.len())]
        }
    }

    const KEYS: &[&str] = &[
        r#""a""#,
        r#""b""#,
        r#""number""#,
        r#""kind""#,
        r#""n""#,
        r#""x\u0041""#,
    ];
    const SCALARS: &[&str] = &[
        "null",
        "true",
        "false",
        "2",
        "2.0",
        "-0",
        "1",
        "-9223372036854775808",
        "18446744073709551615",
        "18446744073709551617",
        "-0.10000000000000000000000001",
        "1e400",
        "2E-7",
        r#""slow""#,
        r#""a""#,
        r#""\u00e9""#,
        "\"é\"",
        r#""\n""#,
    ];
    /// Valid JSON that a full parse still refuses, and plain bad text.
    const BAD: &[&str] = &[
        "1e",
        "1.e3",
        "-",
        r#""\ud800""#,
        "\"\u{1}\"",
        r#""\x""#,
        "01",
        "nul",
        "'a'",
    ];

    const NOISE: &[u8] = b"{}[],:\"\\ 0a\xff";

    fn value(rng: &mut Rng, depth: usize, out: &mut String) {
        match if depth == 0 { 0 } else { rng.below(4) } {
            0 | 1 if rng.below(12) == 0 => out.push_str(rng.pick(BAD)),
            0 | 1 => out.push_str(rng.pick(SCALARS)),
            2 => {
                out.push('[');
                for i in 0..rng.below(4) {
                    out.push_str(if i > 0 { "," } else { "" });
                    value(rng, depth - 1, out);
                }
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.below(5) {
                    out.push_str(if i > 0 { "," } else { "" });
                    out.push_str(rng.pick(KEYS));
                    out.push(':');
                    value(rng, depth - 1, out);
                }
                out.push('}');
            }
        }
    }

    /// Random receipts, a third of them with a byte dropped, added or cut.
    fn receipts(n: usize) -> Vec<Vec<u8>> {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        (0..n)
            .map(|_| {
                let mut text = String::new();
                value(&mut rng, 3, &mut text);
                let mut bytes = text.into_bytes();
                let at = rng.below(bytes.len() + 1);
                match rng.below(9) {
                    0 if at < bytes.len() => drop(bytes.remove(at)),
                    1 => bytes.insert(at, NOISE[rng.below(NOISE.len())]),
                    2 => bytes.truncate(at),
                    _ => {}
                }
                bytes
            })
            .collect()
    }

    #[test]
    fn accepts_rejects_and_reports_exactly_as_a_full_parse() {
        let criteria = [
            json!({"number": 2}),
            json!({"a": {"b": 1}, "kind": "slow"}),
            json!({"xA": true, "n": [1]}),
        ];
        let pre = Prefilter::new(&criteria);
        let (mut skipped, mut kept, mut invalid) = (0, 0, 0);
        for bytes in receipts(20_000) {
            let text = String::from_utf8_lossy(&bytes);
            match (
                serde_json::from_slice::<Value>(&bytes),
                pre.may_match(&bytes),
            ) {
                (Err(full), Err(quick)) => {
                    assert_eq!(full.to_string(), quick.to_string(), "{text}");
                    invalid += 1;
                }
                (Ok(v), Ok(false)) => {
                    assert!(!criteria.iter().any(|c| matches(c, &v)), "{text}");
                    skipped += 1;
                }
                (Ok(_), Ok(true)) => kept += 1,
                (full, quick) => panic!("{text}: full parse {full:?}, prefilter {quick:?}"),
            }
        }
        // Every branch was taken, and often.
        assert!(
            skipped > 1000 && kept > 1000 && invalid > 1000,
            "{skipped} {kept} {invalid}"
        );
    }

    #[test]
    fn an_escaped_key_is_the_key_it_spells() {
        let pre = Prefilter::new([&json!({"xA": 1})]);
        assert!(pre.may_match(br#"{"x\u0041": 1}"#).unwrap());
        assert!(!pre.may_match(br#"{"xB": 1, "nested": {"xA": 1}}"#).unwrap());
    }

    #[test]
    fn empty_criteria_or_too_many_keys_parse_everything() {
        let everything = Prefilter::new([&json!({"a": 1}), &json!({})]);
        assert!(everything.may_match(b"[]").unwrap());
        let many: Vec<Value> = (0..65).map(|i| json!({ format!("k{i}"): i })).collect();
        assert!(Prefilter::new(&many).may_match(b"{}").unwrap());
        let few: Vec<Value> = (0..64).map(|i| json!({ format!("k{i}"): i })).collect();
        assert!(!Prefilter::new(&few).may_match(b"{}").unwrap());
        assert!(Prefilter::new(&few).may_match(br#"{"k63": 0}"#).unwrap());
    }

    #[test]
    fn no_trigger_means_nothing_can_match() {
        let none = Prefilter::new([]);
        assert!(!none.may_match(br#"{"a": 1}"#).unwrap());
        assert!(none.may_match(b"{").is_err());
    }
}
