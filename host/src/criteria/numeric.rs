//! Exact equality of JSON numbers, as Postgres compares `numeric` values:
//! by value, at any size and precision. `2`, `2.0`, `0.2e1` and `20e-1` are
//! one number; `-0` is `0`; `18446744073709551617` is not
//! `18446744073709551616`, nor is `0.1000000000000000000001` `0.1`.
//!
//! It works on a number's text as serde_json keeps it (the crate is built
//! with `arbitrary_precision`): the sign, the significant digits and the
//! power of ten of the first of them decide. Exponents of 19 digits or more
//! (powers past 10^(10^18), where no `numeric`, float or decimal type goes)
//! are compared as written: equal when their digits and the shift the
//! mantissa adds are. It must never go through a binary float, and never
//! allocate: it runs on the `/inbox` path for every number a criterion names.

/// True when the two numbers' texts spell the same value.
pub fn equal(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match (Decimal::parse(a), Decimal::parse(b)) {
        (Some(x), Some(y)) => x == y,
        // serde_json only makes numbers in JSON's grammar; if some other
        // text ever gets here, the two texts differ, and so do the numbers.
        _ => false,
    }
}

/// A number read from its text, not normalised: the digits before the
/// point, those after it, and the written exponent.
struct Decimal<'t> {
    negative: bool,
    int: &'t [u8],
    frac: &'t [u8],
    exponent: Exponent<'t>,
}

/// The written exponent: a number up to 18 digits, else its digits
/// (without leading zeros) and sign.
#[derive(PartialEq, Clone, Copy)]
enum Exponent<'t> {
    Small(i64),
    Huge { negative: bool, digits: &'t [u8] },
}

impl<'t> Decimal<'t> {
    /// `-?digits(.digits)?([eE][+-]?digits)?`, as JSON writes numbers (a
    /// leading zero or a bare `.5` is accepted too: nothing depends on it).
    fn parse(text: &'t str) -> Option<Decimal<'t>> {
        let bytes = text.as_bytes();
        let (negative, rest) = match bytes.split_first() {
            Some((b'-', rest)) => (true, rest),
            _ => (false, bytes),
        };
        let mantissa_end = rest
            .iter()
            .position(|b| matches!(b, b'e' | b'E'))
            .unwrap_or(rest.len());
        let (mantissa, exp_text) = rest.split_at(mantissa_end);
        let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
            Some(dot) => (&mantissa[..dot], &mantissa[dot + 1..]),
            None => (mantissa, &[][..]),
        };
        let all_digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
        if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let exponent = match exp_text.split_first() {
            None => Exponent::Small(0),
            Some((_, e)) => Exponent::parse(e)?,
        };
        Some(Decimal {
            negative,
            int,
            frac,
            exponent,
        })
    }

    fn digit(&self, i: usize) -> u8 {
        match self.int.get(i) {
            Some(&d) => d,
            None => self.frac[i - self.int.len()],
        }
    }

    fn len(&self) -> usize {
        self.int.len() + self.frac.len()
    }

    /// The first and last non-zero digit's index; `None` for zero.
    fn significant(&self) -> Option<(usize, usize)> {
        let first = (0..self.len()).find(|&i| self.digit(i) != b'0')?;
        let last = (0..self.len()).rev().find(|&i| self.digit(i) != b'0')?;
        Some((first, last))
    }
}

impl<'t> Exponent<'t> {
    fn parse(text: &'t [u8]) -> Option<Exponent<'t>> {
        let (negative, digits) = match text.split_first() {
            Some((b'-', d)) => (true, d),
            Some((b'+', d)) => (false, d),
            _ => (false, text),
        };
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let start = digits
            .iter()
            .position(|&d| d != b'0')
            .unwrap_or(digits.len());
        let digits = &digits[start..];
        if digits.len() > 18 {
            return Some(Exponent::Huge { negative, digits });
        }
        let magnitude = digits
            .iter()
            .fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
        Some(Exponent::Small(if negative {
            -magnitude
        } else {
            magnitude
        }))
    }
}

/// Where a number's first significant digit stands: the written exponent
/// plus the digit's place in the mantissa.
#[derive(PartialEq)]
enum Power<'t> {
    Exact(i128),
    AsWritten(Exponent<'t>, i128),
}

impl Power<'_> {
    fn of<'t>(exponent: Exponent<'t>, place: i128) -> Power<'t> {
        match exponent {
            // An i64 plus a usize: no overflow in an i128.
            Exponent::Small(e) => Power::Exact(i128::from(e) + place),
            huge => Power::AsWritten(huge, place),
        }
    }
}

impl PartialEq for Decimal<'_> {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = match (self.significant(), other.significant()) {
            (None, None) => return true, // every zero is zero, `-0` too
            (Some(a), Some(b)) => (a, b),
            _ => return false,
        };
        if self.negative != other.negative || a.1 - a.0 != b.1 - b.0 {
            return false;
        }
        let place = |d: &Decimal, first: usize| d.int.len() as i128 - 1 - first as i128;
        if Power::of(self.exponent, place(self, a.0))
            != Power::of(other.exponent, place(other, b.0))
        {
            return false;
        }
        (0..=a.1 - a.0).all(|i| self.digit(a.0 + i) == other.digit(b.0 + i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_value_in_other_spellings_is_equal() {
        for (a, b) in [
            ("2", "2.0"),
            ("2", "2.000000000000000000000000000000"),
            ("2", "0.2e1"),
            ("2", "20e-1"),
            ("2", "2E0"),
            ("2", "2e+0"),
            ("100", "1e2"),
            ("100", "1E+2"),
            ("100", "0.001e5"),
            ("0", "-0"),
            ("0", "0.0e-999"),
            ("0", "-0.000e+99999999999999999999999999999999999999999999"),
            ("-7", "-7.0"),
            ("-7", "-70e-1"),
            ("0.5", "5e-1"),
            ("0.000034500", "345e-7"),
            ("18446744073709551616", "1.8446744073709551616e19"),
            (
                "123456789012345678901234567890",
                "1234567890123456789012345678.9e2",
            ),
            ("1e400", "10e399"),
            ("1e-400", "0.1e-399"),
            (
                "1e00000000000000000000000000000000000000000000000005",
                "100000",
            ),
            ("1e999999999999999999", "10e999999999999999998"),
        ] {
            assert!(equal(a, b), "{a} = {b}");
            assert!(equal(b, a), "{b} = {a}");
        }
    }

    #[test]
    fn close_values_differ() {
        for (a, b) in [
            ("2", "2.5"),
            ("2", "-2"),
            ("2", "20"),
            ("2", "0.2"),
            ("0", "1e-400"),
            // 2^53 + 1 and 2^53 are one f64.
            ("9007199254740993", "9007199254740992"),
            ("9007199254740993", "9007199254740992.0"),
            // 2^64 and 2^64 + 1.
            ("18446744073709551617", "18446744073709551616"),
            ("-18446744073709551617", "-18446744073709551616"),
            ("0.1", "0.1000000000000000000001"),
            ("0.1", "0.1000000000000000055511151231257827"),
            ("1e400", "1e401"),
            (
                "1e99999999999999999999999999999999999999999",
                "1e99999999999999999999999999999999999999998",
            ),
            (
                "1e99999999999999999999999999999999999999999",
                "1e-99999999999999999999999999999999999999999",
            ),
            ("12", "21"),
            ("101", "11"),
        ] {
            assert!(!equal(a, b), "{a} != {b}");
            assert!(!equal(b, a), "{b} != {a}");
        }
    }

    #[test]
    fn huge_exponents_compare_by_their_text() {
        let e = "9".repeat(60);
        assert!(equal(&format!("1e{e}"), &format!("1.0e+{e}")));
        assert!(equal(&format!("-3.5e-{e}"), &format!("-3.50e-00{e}")));
        assert!(!equal(&format!("1e{e}"), &format!("2e{e}")));
    }

    #[test]
    fn text_outside_the_grammar_is_never_equal_to_a_number() {
        for bad in ["", "-", ".", "1e", "1e+", "abc", "1.2.3", "0x10", "NaN"] {
            assert!(!equal(bad, "1"), "{bad:?}");
        }
        assert!(equal("abc", "abc"), "identical text is equal");
    }

    /// A small xorshift generator: the same cases on every run.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
        fn digits(&mut self, n: u64) -> String {
            (0..n)
                .map(|_| char::from(b"0000123456789"[self.below(13) as usize]))
                .collect()
        }
        /// A number's text in JSON's grammar, often with trailing or
        /// leading zeros and exponents that cancel them.
        fn number(&mut self) -> String {
            let mut s = String::new();
            if self.below(3) == 0 {
                s.push('-');
            }
            let n = 1 + self.below(4);
            let int = self.digits(n).trim_start_matches('0').to_string();
            s.push_str(if int.is_empty() { "0" } else { &int });
            if self.below(2) == 0 {
                s.push('.');
                let n = 1 + self.below(4);
                s.push_str(&self.digits(n));
            }
            if self.below(2) == 0 {
                s.push(['e', 'E'][self.below(2) as usize]);
                s.push_str(["", "+", "-"][self.below(3) as usize]);
                let n = 1 + self.below(2);
                s.push_str(&self.digits(n));
            }
            s
        }
    }

    /// Against bigdecimal's comparison, a well-kept implementation of the
    /// same arithmetic, on many numbers close to one another.
    #[test]
    fn agrees_with_bigdecimal() {
        use bigdecimal::BigDecimal;
        use std::str::FromStr;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let numbers: Vec<String> = (0..600).map(|_| rng.number()).collect();
        let (mut same, mut different) = (0, 0);
        for a in &numbers {
            for b in &numbers {
                let oracle = BigDecimal::from_str(a).unwrap() == BigDecimal::from_str(b).unwrap();
                assert_eq!(equal(a, b), oracle, "{a} vs {b}");
                if oracle {
                    same += 1;
                } else {
                    different += 1;
                }
            }
        }
        // Both answers came up, and equal pairs beyond the identical ones.
        assert!(
            same > 2 * numbers.len() && different > 1000,
            "{same} {different}"
        );
    }
}
