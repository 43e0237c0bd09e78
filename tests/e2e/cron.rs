//! Cron triggers: a job on a six-field (seconds) schedule runs repeatedly,
//! each run starting from the previous run's final state, never overlapping,
//! and the state survives a restart of the service; runs start on their
//! scheduled second with no drift, overrun ticks are skipped and counted,
//! and a trigger's time zone decides its instants.

use std::time::Duration;

use serde_json::Value;

use crate::harness::{Launch, RUN_TIMEOUT, Service, temp_dir, wait_for, wait_for_runs};

/// How long to look for a moment in which no tick finished while the state
/// was read: with a run every second and each read a few HTTP round trips,
/// most tries hit one, but on a loaded machine runs back up and reads slow
/// down, so it may take many tries.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(90);

const CRON_PROJECT: &str = include_str!("../projects/cron/project.toml");

fn count(state: &Value) -> u64 {
    state["count"]
        .as_u64()
        .unwrap_or_else(|| panic!("state without a numeric count: {state}"))
}

/// A run's `started_at` as a sortable string (RFC 3339 timestamps of one
/// format, or zero-padded numbers, compare correctly as text).
fn started_at(run: &Value) -> String {
    match &run["started_at"] {
        Value::String(s) => s.clone(),
        Value::Number(n) => format!("{:020}", n.as_u64().unwrap_or_default()),
        other => panic!("run without started_at: {other} in {run}"),
    }
}

fn successes(svc: &Service) -> u64 {
    successes_of(svc, "tick")
}

fn successes_of(svc: &Service, job: &str) -> u64 {
    svc.runs(job)
        .iter()
        .filter(|r| r["status"] == "success")
        .count() as u64
}

#[test]
fn cron_job_runs_every_second_and_chains_its_state() {
    let svc = Service::start(CRON_PROJECT, &[]);

    let runs = wait_for_runs(&svc, "tick", "success", 3);
    assert!(
        runs.iter().all(|r| r["trigger"] == "every-second"),
        "runs: {runs:?}"
    );

    // `limit` caps the list, which is ordered newest first.
    let newest = svc.runs_query("job=tick&status=success&limit=2");
    assert_eq!(newest.len(), 2, "{newest:?}");
    assert!(
        started_at(&newest[0]) > started_at(&newest[1]),
        "runs should be listed newest first: {newest:?}"
    );

    // Take a snapshot in which no run finished while we read the state; the
    // count in the state then equals the number of successful runs, which is
    // only possible when each run starts from the previous run's final state
    // and runs never overlap.
    let mut last = None;
    let consistent = wait_for(SNAPSHOT_TIMEOUT, || {
        let before = successes(&svc);
        let state = svc.job_state("tick")?;
        let after = successes(&svc);
        let observed = (before, count(&state), after);
        last = Some(observed);
        (before == after && count(&state) == before).then_some(state)
    });
    let state = consistent.unwrap_or_else(|| {
        panic!(
            "state.count never matched the number of successful runs within {SNAPSHOT_TIMEOUT:?} \
             (last observation: successes before, count, successes after = {last:?})\n{}",
            svc.log_tail()
        )
    });
    assert!(count(&state) >= 3, "state: {state}");
    // The first run started from `{"data": {}}`.
    assert_eq!(state["data"], serde_json::json!({}), "state: {state}");
    assert!(state.get("configuration").is_none(), "state: {state}");
}

#[test]
fn cron_state_survives_a_restart() {
    let data = temp_dir("e2e-cron-restart-");

    let mut first = Launch::new(CRON_PROJECT).data_dir(data.path()).start();
    first.poll_until("tick state with count >= 1", RUN_TIMEOUT, || {
        match first.job_state("tick") {
            Some(s) if count(&s) >= 1 => Ok(s),
            other => Err(format!("state {other:?}")),
        }
    });
    let status = first.stop();
    assert!(
        status.success(),
        "SIGTERM should give a clean exit, got {status}\n{}",
        first.log_tail()
    );
    drop(first);

    let second = Launch::new(CRON_PROJECT).data_dir(data.path()).start();
    let saved = second
        .job_state("tick")
        .unwrap_or_else(|| panic!("tick state lost across the restart\n{}", second.log_tail()));
    let saved = count(&saved);
    assert!(saved >= 1, "saved count {saved}");

    // A fresh start would count from 1 again; continuing goes past `saved`.
    let state = second.poll_until(
        "a new tick run after the restart",
        RUN_TIMEOUT,
        || match second.job_state("tick") {
            Some(s) if count(&s) > saved => Ok(s),
            other => Err(format!("state {other:?} (saved count {saved})")),
        },
    );
    assert!(count(&state) > saved);
}

/// A run's `started_at` as Unix milliseconds.
fn started_ms(run: &Value) -> i64 {
    let text = run["started_at"]
        .as_str()
        .unwrap_or_else(|| panic!("run without a started_at text: {run}"));
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("started_at {text}: {e}"))
        .timestamp_millis()
}

/// Start times of `runs`, oldest first.
fn starts(runs: &[Value]) -> Vec<i64> {
    let mut starts: Vec<i64> = runs.iter().map(started_ms).collect();
    starts.sort();
    starts
}

/// The service's environment for these tests: the scheduler's debug lines
/// name each tick's scheduled instant, which is what the tests check (a
/// run's `started_at` depends on how busy the machine is; the instant the
/// scheduler chose does not).
const TICK_LOG: &[(&str, &str)] = &[("LOG_LEVEL", "info,microservice::cron=debug")];

/// The instants (Unix ms) the scheduler ran `job` for, oldest first, from its
/// `cron tick job=<job> tick=<RFC 3339>` lines.
fn ticks(svc: &Service, job: &str) -> Vec<i64> {
    let line = format!("cron tick job={job} ");
    svc.logs()
        .lines()
        .filter(|l| l.contains(&line))
        .map(|l| {
            let text = l
                .split_whitespace()
                .find_map(|w| w.strip_prefix("tick="))
                .unwrap_or_else(|| panic!("a cron tick line without tick=: {l}"));
            chrono::DateTime::parse_from_rfc3339(text)
                .unwrap_or_else(|e| panic!("tick {text}: {e}"))
                .timestamp_millis()
        })
        .collect()
}

/// Each run (oldest first) started at or after the tick it ran for: the
/// runs are the ticks' runs, not runs of some other clock.
fn assert_runs_follow_ticks(starts: &[i64], ticks: &[i64], report: &str) {
    assert!(
        ticks.len() >= starts.len(),
        "fewer ticks than runs: {report}"
    );
    for (start, tick) in starts.iter().zip(ticks) {
        assert!(start >= tick, "a run started before its tick: {report}");
    }
}

/// A cron job every two seconds whose runs take 0.7 s.
const EVERY_2S_SLOW: &str = r#"
[jobs.slow-tick]
adaptor = "@openfn/language-common"
trigger = "every-2s"
expression = """
fn(state => new Promise(resolve => setTimeout(() => {
  state.count = (state.count || 0) + 1;
  resolve(state);
}, 700)))
"""

[triggers.every-2s]
cron = "*/2 * * * * *"
"#;

#[test]
fn cron_runs_start_on_their_even_second_and_lateness_does_not_grow() {
    let svc = Service::start(EVERY_2S_SLOW, TICK_LOG);
    let runs = wait_for_runs(&svc, "slow-tick", "success", 6);
    let starts = starts(&runs);
    let ticks = ticks(&svc, "slow-tick");
    let report = format!(
        "ticks: {ticks:?}\nrun starts: {starts:?}\n{}",
        svc.log_tail()
    );
    // Every tick is an even second, exactly: a scheduler that carried the
    // previous run's ending time over (the old fault) drifts off it, 0.7 s
    // more each run.
    assert!(
        ticks.iter().all(|t| t.rem_euclid(2000) == 0),
        "every tick is on an even second: {report}"
    );
    // Ticks come from the schedule: whole multiples of 2 s apart (a run
    // that ends after the next tick, on a starved machine, skips it).
    for pair in ticks.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= 2000 && gap % 2000 == 0, "gap of {gap} ms: {report}");
    }
    assert_runs_follow_ticks(&starts, &ticks, &report);
}

/// A cron job every second whose runs take 2.3 s: the two ticks each run
/// overlaps are skipped, not run late.
const EVERY_SECOND_OVERRUN: &str = r#"
[jobs.overrun]
adaptor = "@openfn/language-common"
trigger = "every-second"
expression = """
fn(state => new Promise(resolve => setTimeout(() => resolve(state), 2300)))
"""

[triggers.every-second]
cron = "* * * * * *"
"#;

/// `microservice_cron_ticks_missed_total{job="<job>"}` from `/metrics`.
fn missed_ticks(svc: &Service, job: &str) -> Option<u64> {
    let body = svc.get("/metrics").body;
    let prefix = format!("microservice_cron_ticks_missed_total{{job=\"{job}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.trim().parse().unwrap_or_else(|e| panic!("{v}: {e}")))
}

#[test]
fn ticks_missed_by_an_overrunning_cron_job_are_skipped_and_counted() {
    let svc = Service::start(EVERY_SECOND_OVERRUN, TICK_LOG);
    // Declared from the start, at zero, so `rate()` works from the first
    // scrape (the scheduler starts just after the port opens).
    let first = svc.wait_until("the missed-ticks series", RUN_TIMEOUT, || {
        missed_ticks(&svc, "overrun")
    });
    assert!(
        first == 0 || successes_of(&svc, "overrun") > 0,
        "{first} missed before any run ended\n{}",
        svc.log_tail()
    );

    let runs = wait_for_runs(&svc, "overrun", "success", 3);
    let missed = svc.wait_until("missed ticks counted for 2 runs", RUN_TIMEOUT, || {
        missed_ticks(&svc, "overrun").filter(|n| *n >= 4)
    });
    let starts = starts(&runs);
    let ticks = ticks(&svc, "overrun");
    let report = format!(
        "missed {missed}, ticks {ticks:?}, starts {starts:?}\n{}",
        svc.log_tail()
    );
    // Skipped, not run late: every tick is a whole second, and the next
    // one at least 3 s after (the 2.3 s run spans the two between).
    assert!(
        ticks.iter().all(|t| t.rem_euclid(1000) == 0),
        "every tick is on a whole second: {report}"
    );
    for pair in ticks.windows(2) {
        assert!(pair[1] - pair[0] >= 3000, "{report}");
    }
    assert_runs_follow_ticks(&starts, &ticks, &report);
    assert!(
        svc.logs()
            .lines()
            .any(|l| l.contains("overrun")
                && l.contains("cron ticks: the previous run was still going")),
        "a warning says which job's ticks were skipped and why: {report}"
    );
}

/// A trigger's `timezone` decides which instant its wall-clock time is;
/// one without it follows the service's `TZ`.
#[test]
fn a_cron_trigger_fires_at_the_wall_clock_time_of_its_time_zone() {
    use chrono::{DurationRound, TimeZone, Timelike};
    let nairobi = chrono_tz::Africa::Nairobi; // UTC+3, no daylight saving
    // Every second of the Nairobi minute holding the instant 40 s from now
    // (time enough for the service to start); read in UTC the same text is
    // three hours away.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(40))
        .with_timezone(&nairobi)
        .duration_trunc(chrono::Duration::minutes(1))
        .unwrap();
    let expr = format!("* {} {} * * *", soon.minute(), soon.hour());
    let toml = format!(
        r#"
[jobs.in-nairobi]
adaptor = "@openfn/language-common"
trigger = "nairobi"
expression = "fn(state => state)"

[jobs.in-utc]
adaptor = "@openfn/language-common"
trigger = "utc"
expression = "fn(state => state)"

[jobs.service-zone]
adaptor = "@openfn/language-common"
trigger = "no-zone"
expression = "fn(state => state)"

[triggers.nairobi]
cron = "{expr}"
timezone = "Africa/Nairobi"

[triggers.utc]
cron = "{expr}"
timezone = "UTC"

[triggers.no-zone]
cron = "{expr}"
"#
    );
    let svc = Service::start(&toml, &[("TZ", "Africa/Nairobi")]);
    let window = soon.timestamp_millis()..soon.timestamp_millis() + 60_000;
    for job in ["in-nairobi", "service-zone"] {
        let runs = svc.wait_until(
            &format!("{job} to run in {expr} Nairobi time"),
            std::time::Duration::from_secs(150),
            || {
                let runs = svc.runs(job);
                (runs.len() >= 2).then_some(runs)
            },
        );
        for start in starts(&runs) {
            let at = nairobi.timestamp_millis_opt(start).unwrap();
            assert!(
                window.contains(&start),
                "{job} ran at {at}, outside {soon}..+1min\n{}",
                svc.log_tail()
            );
        }
    }
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        svc.runs("in-utc"),
        Vec::<Value>::new(),
        "`{expr}` in UTC is three hours from the Nairobi one\n{}",
        svc.log_tail()
    );
}

/// A cron trigger with a `cursor` (Lightning's cursor job): `fetch` ticks
/// every second starting from `advance`'s last successful final state, not
/// its own; `advance`, run after each successful `fetch`, moves the cursor
/// on by one. `fetch` records in its final state the cursor it started
/// from (its own final states never change the cursor, so without the
/// cursor job every tick would start from 0).
const CURSOR_PROJECT: &str = r#"
[jobs.fetch]
adaptor = "@openfn/language-common"
trigger = "every-second"
expression = """
fn(state => ({ ...state, started_from: state.cursor || 0 }))
"""

[jobs.advance]
adaptor = "@openfn/language-common"
trigger = "after-fetch"
expression = """
fn(state => ({ data: {}, cursor: state.started_from + 1 }))
"""

[triggers.every-second]
cron = "* * * * * *"
cursor = "advance"

[triggers.after-fetch]
success = "fetch"
"#;

fn number(state: &Value, key: &str) -> u64 {
    state[key]
        .as_u64()
        .unwrap_or_else(|| panic!("state without a numeric {key}: {state}"))
}

#[test]
fn each_tick_starts_from_the_cursor_jobs_last_successful_state() {
    let svc = Service::start(CURSOR_PROJECT, &[]);
    svc.poll_until(
        "advance to move the cursor to 3",
        SNAPSHOT_TIMEOUT,
        || match svc.job_state("advance") {
            Some(s) if number(&s, "cursor") >= 3 => Ok(()),
            other => Err(format!("advance's state {other:?}")),
        },
    );
    // Advance's runs first: every one's upstream fetch run has ended by then.
    let successful = |job: &str| -> Vec<Value> {
        svc.runs(job)
            .iter()
            .filter(|r| r["status"] == "success")
            .map(|r| svc.run(r))
            .collect()
    };
    let advances = successful("advance");
    let fetches = successful("fetch");
    let started_from = |run: &Value| number(&run["state"], "started_from");

    // Each advance moved the cursor on from where its own fetch started.
    for advance in &advances {
        let upstream = fetches
            .iter()
            .find(|f| f["id"] == advance["upstream"])
            .unwrap_or_else(|| panic!("advance run without its fetch run: {advance}"));
        assert_eq!(
            number(&advance["state"], "cursor"),
            started_from(upstream) + 1,
            "advance {advance}\nafter fetch {upstream}"
        );
    }
    // Oldest first (run ids are time-ordered): the first tick had no cursor
    // yet; each later one started from a cursor an advance run left, never
    // going back. A tick may start before the last advance has ended, so
    // a cursor may be seen twice, but none is skipped.
    let mut seen: Vec<u64> = fetches.iter().rev().map(started_from).collect();
    assert_eq!(seen.first(), Some(&0), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1] && w[1] <= w[0] + 1),
        "{seen:?}"
    );
    seen.dedup();
    let left: Vec<u64> = advances
        .iter()
        .map(|a| number(&a["state"], "cursor"))
        .collect();
    assert!(
        seen.iter().skip(1).all(|k| left.contains(k)),
        "ticks started from {seen:?}; advance runs left {left:?}"
    );
    assert!(seen.len() >= 3, "ticks started from {seen:?}");
}
