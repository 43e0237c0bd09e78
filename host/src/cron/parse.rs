//! Cron text as people write it, read into a `croner` pattern.
//!
//! Accepts 5 fields (minute hour day-of-month month day-of-week), 6 with
//! seconds first, and the nicknames `@yearly @annually @monthly @weekly
//! @daily @midnight @hourly`. Every field is checked here first, so an
//! error names the field and what is allowed in it ("minute field: 61 is
//! out of range 0-59") instead of repeating the library's wording; only
//! text that passes these checks reaches `croner`, which does the
//! scheduling arithmetic. This module reads text only: it never looks at a
//! clock.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// Nicknames and the 5-field schedules they stand for (as in Vixie cron).
const NICKNAMES: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const MONTHS: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field of a cron expression: its name in messages, its range, and
/// the names it accepts in place of numbers (the first name is `min`).
struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: MONTHS,
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: DAYS,
};

/// Reads a cron expression or nickname. The error is a sentence that
/// quotes the expression, to be put after the place it was found.
pub fn parse(text: &str) -> Result<Cron, String> {
    let trimmed = text.trim();
    let expanded = if trimmed.starts_with('@') {
        let lower = trimmed.to_ascii_lowercase();
        match NICKNAMES.iter().find(|(name, _)| *name == lower) {
            Some((_, expr)) => *expr,
            None => {
                let names: Vec<&str> = NICKNAMES.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "`{trimmed}` is not a schedule nickname; use one of {}",
                    names.join(", ")
                ));
            }
        }
    } else {
        trimmed
    };
    let parts: Vec<&str> = expanded.split_whitespace().collect();
    let fields: &[Field] = match parts.len() {
        5 => &[MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK],
        6 => &[SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK],
        n => {
            return Err(format!(
                "`{trimmed}` has {n} field{}; expected 5 (minute hour day-of-month month day-of-week), 6 (seconds first) or a nickname such as @hourly",
                if n == 1 { "" } else { "s" }
            ));
        }
    };
    for (field, part) in fields.iter().zip(&parts) {
        check_field(field, part)
            .map_err(|why| format!("`{trimmed}`: {} field: {why}", field.name))?;
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(expanded)
        // The checks above accept only what croner reads; should the two
        // ever disagree, say which text, not croner's internals.
        .map_err(|_| format!("`{trimmed}` is not a schedule this service can run"))
}

/// One field: a comma-separated list of items.
fn check_field(field: &Field, text: &str) -> Result<(), String> {
    for item in text.split(',') {
        if item.is_empty() {
            return Err(format!("`{text}` has an empty item in its list"));
        }
        check_item(field, item)?;
    }
    Ok(())
}

/// `*`, `?`, `v`, `a-b`, each optionally `/step`, plus the day specials
/// (`L`, `15W` for the day of the month; `5L`, `5#2` for the day of the week).
fn check_item(field: &Field, item: &str) -> Result<(), String> {
    let is = |name: &Field| field.name == name.name;
    if is(&DAY_OF_MONTH) {
        if item.eq_ignore_ascii_case("L") {
            return Ok(());
        }
        if let Some(day) = item.strip_suffix(['W', 'w']) {
            return value(field, day, item).map(drop);
        }
    }
    if is(&DAY_OF_WEEK) {
        if let Some(day) = item.strip_suffix(['L', 'l'])
            && !day.is_empty()
        {
            return value(field, day, item).map(drop);
        }
        if let Some((day, nth)) = item.split_once('#') {
            value(field, day, item)?;
            return match nth.parse::<u32>() {
                Ok(1..=5) => Ok(()),
                _ => Err(format!(
                    "`{item}`: the number after # is which week of the month, 1-5"
                )),
            };
        }
    }
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(step)),
        None => (item, None),
    };
    if let Some(step) = step {
        match step.parse::<u32>() {
            Ok(0) => return Err(format!("`{item}`: a step must be at least 1")),
            Ok(s) if s > field.max => {
                return Err(format!(
                    "`{item}`: step {s} is out of range 1-{}",
                    field.max
                ));
            }
            Ok(_) => {}
            Err(_) => return Err(format!("`{item}`: the step after / must be a number")),
        }
    }
    if base == "*" {
        return Ok(());
    }
    if base == "?" && (is(&DAY_OF_MONTH) || is(&DAY_OF_WEEK)) {
        return match step {
            Some(_) => Err(format!("`{item}`: ? takes no step")),
            None => Ok(()),
        };
    }
    match base.split_once('-') {
        Some((from, to)) => {
            if value(field, from, item)? > value(field, to, item)? {
                return Err(format!(
                    "range `{from}-{to}` goes backwards; write the smaller value first"
                ));
            }
            Ok(())
        }
        None => value(field, base, item).map(drop),
    }
}

/// A number or a name, within the field's range.
fn value(field: &Field, text: &str, item: &str) -> Result<u32, String> {
    if let Some(i) = field
        .names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(text))
    {
        return Ok(field.min + i as u32);
    }
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        let names = match field.names {
            [] => String::new(),
            names => format!(" or a name ({}-{})", names[0], names[names.len() - 1]),
        };
        return Err(if text == item {
            format!("`{item}` is not a number{names}")
        } else {
            format!("`{text}` in `{item}` is not a number{names}")
        });
    }
    match text.parse::<u32>() {
        Ok(n) if (field.min..=field.max).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text} is out of range {}-{}",
            field.min, field.max
        )),
    }
}
