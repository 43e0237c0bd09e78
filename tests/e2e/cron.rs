//! Cron triggers: a job on a six-field (seconds) schedule runs repeatedly,
//! each run starting from the previous run's final state, never overlapping,
//! and the state survives a restart of the service.

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
    svc.runs("tick")
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
