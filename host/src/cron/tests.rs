//! Reading cron text, and tick computation at fixed instants: whole
//! seconds from the schedule alone, time zones, and both kinds of
//! daylight-saving change (no test sleeps through a real one).

use chrono::{DateTime, Utc};

use super::*;

fn at(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339}: {e}"))
        .with_timezone(&Utc)
}

fn schedule(expr: &str, zone: &str) -> Schedule {
    let cron = parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    Schedule::new(cron, Zone::named(zone).unwrap())
}

/// The `n` ticks after `from`, as RFC 3339 UTC text.
fn ticks(s: &Schedule, from: &str, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut t = at(from);
    for _ in 0..n {
        t = s.next_after(t).expect("a next tick");
        out.push(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
    }
    out
}

#[test]
fn cron_errors_name_the_field_and_its_range() {
    for (expr, expected) in [
        (
            "61 * * * *",
            "`61 * * * *`: minute field: 61 is out of range 0-59",
        ),
        (
            "* 24 * * *",
            "`* 24 * * *`: hour field: 24 is out of range 0-23",
        ),
        ("0 0 32 * *", "day-of-month field: 32 is out of range 1-31"),
        ("0 0 0 * *", "day-of-month field: 0 is out of range 1-31"),
        ("0 0 * 13 *", "month field: 13 is out of range 1-12"),
        ("0 0 * * 8", "day-of-week field: 8 is out of range 0-7"),
        ("60 * * * * *", "second field: 60 is out of range 0-59"),
        ("0 5-70 * * *", "hour field: 70 is out of range 0-23"),
        (
            "*/0 * * * *",
            "minute field: `*/0`: a step must be at least 1",
        ),
        (
            "*/60 * * * *",
            "minute field: `*/60`: step 60 is out of range 1-59",
        ),
        (
            "*/x * * * *",
            "minute field: `*/x`: the step after / must be a number",
        ),
        (
            "30-10 * * * *",
            "minute field: range `30-10` goes backwards",
        ),
        (
            "1,,2 * * * *",
            "minute field: `1,,2` has an empty item in its list",
        ),
        (
            "0 0 * * tues",
            "day-of-week field: `tues` is not a number or a name (SUN-SAT)",
        ),
        (
            "0 0 * foo *",
            "month field: `foo` is not a number or a name (JAN-DEC)",
        ),
        (
            "0 0 * * 1#6",
            "day-of-week field: `1#6`: the number after # is which week of the month, 1-5",
        ),
        ("? * * * *", "minute field: `?` is not a number"),
        (
            "* * *",
            "`* * *` has 3 fields; expected 5 (minute hour day-of-month month day-of-week), 6 (seconds first) or a nickname such as @hourly",
        ),
        ("every tuesday", "`every tuesday` has 2 fields"),
        ("", "`` has 0 fields"),
        ("* * * * * * *", "has 7 fields"),
        (
            "@fortnightly",
            "`@fortnightly` is not a schedule nickname; use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly",
        ),
        ("@reboot", "`@reboot` is not a schedule nickname"),
    ] {
        let err = parse(expr).expect_err(expr);
        assert!(
            err.contains(expected),
            "{expr}:\n  got      {err}\n  expected {expected}"
        );
    }
}

#[test]
fn the_syntax_people_write_is_accepted() {
    for expr in [
        "* * * * *",
        "*/2 * * * * *",
        "0 9 * * MON-FRI",
        "0 9 * * mon-fri",
        "0 0 1,15 * *",
        "0 0 L * *",
        "0 0 15W * *",
        "0 0 * * 5L",
        "0 0 * * 1#2",
        "0 0 ? * MON",
        "0 0 * JAN,jul *",
        "0 0 * * 7",
        "0 0 * * 0-7",
        "5/15 * * * *",
        "0-30/10 8-18 * * *",
        "59 23 31 12 *",
        "0 0 29 2 *",
        " 0 12 * * * ",
    ] {
        assert!(parse(expr).is_ok(), "{expr}: {:?}", parse(expr).err());
    }
}

#[test]
fn nicknames_mean_what_vixie_cron_means() {
    let from = "2025-06-11T10:20:30Z"; // a Wednesday
    for (nick, next) in [
        ("@hourly", "2025-06-11T11:00:00.000Z"),
        ("@daily", "2025-06-12T00:00:00.000Z"),
        ("@midnight", "2025-06-12T00:00:00.000Z"),
        ("@weekly", "2025-06-15T00:00:00.000Z"),
        ("@monthly", "2025-07-01T00:00:00.000Z"),
        ("@yearly", "2026-01-01T00:00:00.000Z"),
        ("@annually", "2026-01-01T00:00:00.000Z"),
        ("@DAILY", "2025-06-12T00:00:00.000Z"),
    ] {
        assert_eq!(ticks(&schedule(nick, "UTC"), from, 1), [next], "{nick}");
    }
}

#[test]
fn ticks_are_whole_seconds_from_the_schedule_not_from_the_clock() {
    let s = schedule("*/2 * * * * *", "UTC");
    // Wherever in the second the previous run ended, the next tick is the
    // next even second: no sub-second carry-over, no drift.
    for (after, next) in [
        ("2025-06-11T10:00:01.450Z", "2025-06-11T10:00:02.000Z"),
        ("2025-06-11T10:00:01.999Z", "2025-06-11T10:00:02.000Z"),
        ("2025-06-11T10:00:02.000Z", "2025-06-11T10:00:04.000Z"),
        ("2025-06-11T10:00:02.001Z", "2025-06-11T10:00:04.000Z"),
        ("2025-06-11T10:00:03.700Z", "2025-06-11T10:00:04.000Z"),
    ] {
        assert_eq!(ticks(&s, after, 1), [next], "after {after}");
    }
    assert_eq!(
        ticks(&s, "2025-06-11T10:00:00.300Z", 3),
        [
            "2025-06-11T10:00:02.000Z",
            "2025-06-11T10:00:04.000Z",
            "2025-06-11T10:00:06.000Z"
        ]
    );
}

#[test]
fn missed_ticks_are_counted() {
    let s = schedule("* * * * * *", "UTC");
    let (n, last) = s.ticks_between(
        at("2025-06-11T10:00:00Z"),
        at("2025-06-11T10:00:05.500Z"),
        100,
    );
    assert_eq!((n, last), (5, Some(at("2025-06-11T10:00:05Z"))));
    let (n, last) = s.ticks_between(
        at("2025-06-11T10:00:00Z"),
        at("2025-06-11T10:00:00.900Z"),
        100,
    );
    assert_eq!((n, last), (0, None));
    let (n, _) = s.ticks_between(at("2025-06-11T10:00:00Z"), at("2025-06-12T10:00:00Z"), 50);
    assert_eq!(n, 50, "counting stops at the cap");
}

#[test]
fn a_trigger_time_zone_moves_the_wall_clock() {
    // Nairobi is UTC+3 all year.
    assert_eq!(
        ticks(
            &schedule("0 9 * * *", "Africa/Nairobi"),
            "2025-06-11T00:00:00Z",
            2
        ),
        ["2025-06-11T06:00:00.000Z", "2025-06-12T06:00:00.000Z"]
    );
    assert_eq!(
        ticks(
            &schedule("@daily", "America/New_York"),
            "2025-01-15T12:00:00Z",
            1
        ),
        ["2025-01-16T05:00:00.000Z"]
    );
    assert!(
        Zone::named("africa/nairobi")
            .unwrap_err()
            .contains("did you mean `Africa/Nairobi`?")
    );
    assert!(
        Zone::named("Mars/Olympus")
            .unwrap_err()
            .contains("is not an IANA time zone name")
    );
}

// Europe/Berlin, 2025-03-30: at 01:00 UTC the clocks go from 02:00 CET
// (+1) to 03:00 CEST (+2); wall times 02:00-02:59 do not exist.

#[test]
fn a_gap_is_skipped_by_interval_schedules() {
    assert_eq!(
        ticks(
            &schedule("*/30 * * * *", "Europe/Berlin"),
            "2025-03-30T00:00:00Z",
            3
        ),
        [
            "2025-03-30T00:30:00.000Z", // 01:30 CET
            "2025-03-30T01:00:00.000Z", // 03:00 CEST: 02:00 and 02:30 never were
            "2025-03-30T01:30:00.000Z", // 03:30 CEST
        ]
    );
}

#[test]
fn a_fixed_time_in_a_gap_fires_when_the_clocks_change() {
    let s = schedule("30 2 * * *", "Europe/Berlin");
    assert_eq!(
        ticks(&s, "2025-03-29T12:00:00Z", 3),
        [
            "2025-03-30T01:00:00.000Z", // 03:00 CEST, the instant 02:30 was skipped
            "2025-03-31T00:30:00.000Z", // 02:30 CEST
            "2025-04-01T00:30:00.000Z",
        ]
    );
    // Samoa skipped all of 2011-12-30 crossing the date line: the 09:00 of
    // that day fires at the first instant of the 31st.
    assert_eq!(
        ticks(
            &schedule("0 9 * * *", "Pacific/Apia"),
            "2011-12-29T20:00:00Z",
            2
        ),
        [
            "2011-12-30T10:00:00.000Z", // 2011-12-31 00:00 +14
            "2011-12-30T19:00:00.000Z", // 2011-12-31 09:00 +14
        ]
    );
}

// Europe/Berlin, 2025-10-26: at 01:00 UTC the clocks go from 03:00 CEST
// (+2) back to 02:00 CET (+1); wall times 02:00-02:59 happen twice.

#[test]
fn a_fixed_time_in_an_overlap_fires_once() {
    assert_eq!(
        ticks(
            &schedule("30 2 * * *", "Europe/Berlin"),
            "2025-10-25T12:00:00Z",
            2
        ),
        [
            "2025-10-26T00:30:00.000Z", // the first 02:30 (CEST)
            "2025-10-27T01:30:00.000Z", // the next day's, not the second 02:30
        ]
    );
    // Started between the two 02:30s: the first has passed, and the second
    // is not a tick.
    assert_eq!(
        ticks(
            &schedule("30 2 * * *", "Europe/Berlin"),
            "2025-10-26T01:10:00Z",
            1
        ),
        ["2025-10-27T01:30:00.000Z"]
    );
}

#[test]
fn an_overlap_is_run_through_twice_by_interval_schedules() {
    assert_eq!(
        ticks(
            &schedule("*/30 * * * *", "Europe/Berlin"),
            "2025-10-25T23:45:00Z",
            5
        ),
        [
            "2025-10-26T00:00:00.000Z", // 02:00 CEST
            "2025-10-26T00:30:00.000Z", // 02:30 CEST
            "2025-10-26T01:00:00.000Z", // 02:00 CET
            "2025-10-26T01:30:00.000Z", // 02:30 CET
            "2025-10-26T02:00:00.000Z", // 03:00 CET
        ]
    );
    assert_eq!(
        ticks(
            &schedule("@hourly", "Europe/Berlin"),
            "2025-10-25T22:30:00Z",
            4
        ),
        [
            "2025-10-25T23:00:00.000Z", // 01:00 CEST
            "2025-10-26T00:00:00.000Z", // 02:00 CEST
            "2025-10-26T01:00:00.000Z", // 02:00 CET
            "2025-10-26T02:00:00.000Z", // 03:00 CET
        ]
    );
    // Started in the second pass: its next wall time, second instant.
    assert_eq!(
        ticks(
            &schedule("*/30 * * * *", "Europe/Berlin"),
            "2025-10-26T01:10:00Z",
            1
        ),
        ["2025-10-26T01:30:00.000Z"]
    );
    // New York repeats 01:00-01:59 on 2025-11-02 (06:00 UTC).
    assert_eq!(
        ticks(
            &schedule("15 * * * *", "America/New_York"),
            "2025-11-02T05:00:00Z",
            3
        ),
        [
            "2025-11-02T05:15:00.000Z", // 01:15 EDT
            "2025-11-02T06:15:00.000Z", // 01:15 EST
            "2025-11-02T07:15:00.000Z", // 02:15 EST
        ]
    );
}

#[test]
fn a_schedule_that_never_matches_has_no_next_tick() {
    // That the search ends at all is what this proves; how fast belongs in a
    // benchmark, not here (a timed assertion fails on a loaded machine).
    assert_eq!(
        schedule("0 0 30 2 *", "UTC").next_after(at("2025-01-01T00:00:00Z")),
        None
    );
    // February 29th is rare, not impossible.
    assert_eq!(
        ticks(&schedule("0 0 29 2 *", "UTC"), "2025-01-01T00:00:00Z", 1),
        ["2028-02-29T00:00:00.000Z"]
    );
}
