//! When a schedule's ticks fall: a cron pattern read in a time zone.
//!
//! `croner` finds the next matching wall-clock time; this module turns
//! wall-clock times into instants in the trigger's zone, which is where the
//! daylight-saving rules live:
//! - a gap (clocks go forward): wall times inside it do not exist. An
//!   interval schedule skips them; a fixed-time schedule (one second, one
//!   minute and one hour, e.g. `30 2 * * *` or `@daily`) whose time falls in
//!   the gap fires once, at the instant the clocks change.
//! - an overlap (clocks go back): a fixed-time schedule fires once, at the
//!   first of the two instants; an interval schedule fires in both passes,
//!   so `*/15 * * * *` keeps firing every 15 minutes of real time.
//!
//! Ticks are whole seconds computed from the schedule alone: never from a
//! clock reading's sub-second part, never from when a run ended. This
//! module is pure arithmetic on instants; it never reads the clock.

use std::fmt;

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, Offset, TimeZone, Timelike, Utc};
use croner::{Cron, JobType};

/// The time zone a schedule is read in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Zone {
    /// The system's local time (`/etc/localtime`; UTC without it, as in
    /// the container image).
    Local,
    /// An IANA zone named by the trigger's `timezone`.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// The zone of a trigger that names none: `TZ` when it holds an IANA
    /// name (looked up in chrono-tz's own copy of the database, so it works
    /// where the system has no tzdata), else the system's local time.
    pub fn service_default() -> Zone {
        std::env::var("TZ")
            .ok()
            .and_then(|name| name.trim_start_matches(':').parse().ok())
            .map_or(Zone::Local, Zone::Named)
    }

    /// An IANA name such as `Africa/Nairobi` or `UTC`.
    pub fn named(name: &str) -> Result<Zone, String> {
        match name.parse::<chrono_tz::Tz>() {
            Ok(tz) => Ok(Zone::Named(tz)),
            Err(_) => Err(
                match chrono_tz::TZ_VARIANTS
                    .iter()
                    .find(|tz| tz.name().eq_ignore_ascii_case(name))
                {
                    Some(tz) => {
                        format!("`{name}` is not an IANA time zone name; did you mean `{tz}`?")
                    }
                    None => format!(
                        "`{name}` is not an IANA time zone name such as \"Africa/Nairobi\", \"America/New_York\" or \"UTC\""
                    ),
                },
            ),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Local => f.write_str("local"),
            Zone::Named(tz) => write!(f, "{tz}"),
        }
    }
}

/// A cron pattern and the zone its wall-clock times are read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Zone,
}

impl Schedule {
    pub fn new(cron: Cron, zone: Zone) -> Schedule {
        Schedule { cron, zone }
    }

    pub fn zone(&self) -> Zone {
        self.zone
    }

    /// The first tick strictly after `after`, or `None` when the pattern
    /// never matches again (e.g. February 30th).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self.zone {
            Zone::Local => next_in(&self.cron, &chrono::Local, after),
            Zone::Named(tz) => next_in(&self.cron, &tz, after),
        }
    }

    /// How many ticks fall in `(after, until]`, and the last of them;
    /// counting stops at `cap` (a schedule firing every second over a long
    /// stall would otherwise take a while).
    pub fn ticks_between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        cap: u64,
    ) -> (u64, Option<DateTime<Utc>>) {
        let (mut count, mut last, mut at) = (0, None, after);
        while count < cap {
            match self.next_after(at) {
                Some(t) if t <= until => {
                    count += 1;
                    last = Some(t);
                    at = t;
                }
                _ => break,
            }
        }
        (count, last)
    }
}

fn next_in<Z: TimeZone>(cron: &Cron, zone: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let fixed = cron.determine_job_type() == JobType::FixedTime;
    // croner keeps the sub-second part of the time it starts from; ticks
    // are whole seconds, and the second `after` falls in is not after it.
    let start = after.with_timezone(zone).naive_local().with_nanosecond(0)?;
    let first = first_pass(cron, zone, after, start, fixed)?;
    if fixed {
        return Some(first);
    }
    // Between `after` and `first` the clocks may go back; the wall times
    // they repeat come round again, and an interval schedule fires there too.
    let mut best = first;
    for change in falls_back(zone, after, first) {
        if let Some(t) = second_pass(cron, zone, after, change)
            && t < best
        {
            best = t;
        }
    }
    Some(best)
}

/// The first tick after `after`, walking wall-clock time forward from
/// `start` (the wall time of `after`) and taking the first instant of
/// each wall time.
fn first_pass<Z: TimeZone>(
    cron: &Cron,
    zone: &Z,
    after: DateTime<Utc>,
    start: NaiveDateTime,
    fixed: bool,
) -> Option<DateTime<Utc>> {
    let mut wall = start;
    loop {
        wall = next_wall(cron, wall, false)?;
        let instant = match zone.from_local_datetime(&wall) {
            LocalResult::Single(t) => Some(t),
            // The second instant is for interval schedules, when `after`
            // lies between the two (the service started in the repeat).
            LocalResult::Ambiguous(a, b) => {
                if a.with_timezone(&Utc) > after || fixed {
                    Some(a)
                } else {
                    Some(b)
                }
            }
            LocalResult::None if fixed => Some(end_of_gap(zone, wall)?),
            LocalResult::None => None,
        };
        if let Some(t) = instant.map(|t| t.with_timezone(&Utc))
            && t > after
        {
            return Some(t);
        }
    }
}

/// The first tick in the repeated wall times after the clocks went back
/// at `change`, as the later of each wall time's two instants.
fn second_pass<Z: TimeZone>(
    cron: &Cron,
    zone: &Z,
    after: DateTime<Utc>,
    change: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let from = change.with_timezone(zone).naive_local();
    let until = (change - Duration::seconds(1))
        .with_timezone(zone)
        .naive_local();
    let mut wall = next_wall(cron, from, true)?;
    while wall <= until {
        if let LocalResult::Ambiguous(_, b) = zone.from_local_datetime(&wall) {
            let b = b.with_timezone(&Utc);
            if b > after {
                return Some(b);
            }
        }
        wall = next_wall(cron, wall, false)?;
    }
    None
}

/// The next wall-clock time the pattern matches. Wall times are searched
/// as if they were UTC, which has no gaps or repeats.
fn next_wall(cron: &Cron, wall: NaiveDateTime, inclusive: bool) -> Option<NaiveDateTime> {
    cron.find_next_occurrence(&Utc.from_utc_datetime(&wall), inclusive)
        .ok()
        .map(|t| t.naive_utc())
}

/// The instant a gap ends: the first existing wall time after `wall`.
fn end_of_gap<Z: TimeZone>(zone: &Z, wall: NaiveDateTime) -> Option<DateTime<Z>> {
    let exists = |w: &NaiveDateTime| zone.from_local_datetime(w).earliest();
    // Gaps are whole minutes in every zone since the 1970s, an hour or
    // two long (a whole day when Samoa crossed the date line); minutes
    // first, then back to the exact second.
    let mut later = wall;
    for _ in 0..(3 * 24 * 60) {
        later += Duration::minutes(1);
        if exists(&later).is_some() {
            let mut first = later;
            for _ in 0..60 {
                let earlier = first - Duration::seconds(1);
                if exists(&earlier).is_none() {
                    break;
                }
                first = earlier;
            }
            return exists(&first);
        }
    }
    None
}

/// Instants in `(from, to]` at which the zone's offset drops (the clocks
/// go back), found day by day and then to the second.
fn falls_back<Z: TimeZone>(zone: &Z, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| {
        zone.offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    };
    let mut changes = Vec::new();
    let mut lo = from;
    while lo < to {
        let hi = (lo + Duration::days(1)).min(to);
        if offset(hi) < offset(lo) {
            // Invariant: offset(lo) is the old one, offset(hi) the new one.
            let (mut a, mut b, new) = (lo, hi, offset(hi));
            while b - a > Duration::seconds(1) {
                let mid = a + (b - a) / 2;
                if offset(mid) == new {
                    b = mid;
                } else {
                    a = mid;
                }
            }
            changes.push(b.with_nanosecond(0).unwrap_or(b));
        }
        lo = hi;
    }
    changes
}
