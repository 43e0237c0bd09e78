//! Success and failure flows: a job triggered by another job's success gets
//! its final state; a job triggered by a failure gets the failed run's input
//! state plus an `errors` entry describing the failure.

use std::time::Duration;

use crate::INBOX_PROJECT;
use crate::harness::{
    Launch, RECEIPT, RUN_TIMEOUT, Service, json, log_lines, run_id, temp_dir, wait_for_runs,
};

/// The flow's job waits as long as its credential says: a minute on the
/// process that is killed, not at all on the one that takes over.
pub const SLOW_FLOW_PROJECT: &str = r#"
[jobs.upstream]
adaptor = "@openfn/language-common"
trigger = "start"
expression = "fn(state => ({ ...state, upstream: true }))"

[jobs.downstream]
adaptor = "@openfn/language-common"
trigger = "after-upstream"
credential = "pace"
timeout = "120s"
expression = """
fn(state => new Promise(done => setTimeout(
  () => done({ data: state.data, upstream: state.upstream, downstream: true }),
  Number(state.configuration.delay_ms))))
"""

[triggers.start]
criteria = { kind = "flow-kill" }

[triggers.after-upstream]
success = "upstream"

[credentials.pace]
delay_ms = { env = "FLOW_DELAY_MS" }
"#;

#[test]
fn success_flow_receives_upstream_final_state() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    let reply = svc.post_json("/inbox", RECEIPT);
    assert_eq!(reply.status, 202, "{reply:?}");
    // Only the directly matched job is reported, not its flow.
    assert_eq!(
        reply.json["data"],
        json(r#"["job-1"]"#),
        "body: {}",
        reply.body
    );

    let flow_runs = wait_for_runs(&svc, "flow-job", "success", 1);
    assert_eq!(flow_runs.len(), 1, "{flow_runs:?}");
    assert_eq!(flow_runs[0]["trigger"], "after-job-1");

    // The flow's run names the run that started it, which lists it.
    let upstream = &svc.runs("job-1")[0];
    assert!(upstream["upstream"].is_null(), "{upstream}");
    assert_eq!(flow_runs[0]["upstream"], upstream["id"], "{flow_runs:?}");
    let started = svc.runs_query(&format!("upstream={}", run_id(upstream)));
    assert_eq!(started.len(), 1, "{started:?}");
    assert_eq!(started[0]["id"], flow_runs[0]["id"]);

    // job-1 doubled 2 to 4, flow-job tripled that.
    let state = svc
        .job_state("flow-job")
        .expect("flow-job state after a successful run");
    assert_eq!(state["data"]["number"], 12, "state: {state}");
    assert_eq!(state["data"]["string"], "here");
    assert!(state.get("configuration").is_none(), "state: {state}");
    assert_eq!(svc.run(&flow_runs[0])["state"]["data"]["number"], 12);

    // The upstream job is unaffected by its flow.
    assert_eq!(
        svc.job_state("job-1").expect("job-1 state")["data"]["number"],
        4
    );
}

#[test]
fn failure_flow_receives_input_state_and_errors() {
    let svc = Service::start(INBOX_PROJECT, &[]);
    let receipt = r#"{"kind":"bad","number":7,"nested":{"list":[1,2]}}"#;

    let reply = svc.post_json("/inbox", receipt);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(
        reply.json["data"],
        json(r#"["bad-job"]"#),
        "body: {}",
        reply.body
    );

    let catch_runs = wait_for_runs(&svc, "catch-job", "success", 1);
    assert_eq!(catch_runs[0]["trigger"], "bad-job-failed");

    let bad_runs = svc.runs("bad-job");
    assert_eq!(bad_runs.len(), 1, "{bad_runs:?}");
    let bad_run = &bad_runs[0];
    assert_eq!(bad_run["status"], "failure", "{bad_run}");
    assert!(
        bad_run["exit_code"].as_i64().is_some_and(|code| code != 0),
        "a thrown error should give a non-zero exit code: {bad_run}"
    );
    assert!(
        svc.job_state("bad-job").is_none(),
        "a failed run must not save state"
    );

    let state = svc.job_state("catch-job").expect("catch-job state");
    assert_eq!(
        state["data"],
        json(receipt),
        "catch-job gets the failed run's input data: {state}"
    );
    assert_eq!(state["caught"], true);
    assert!(state.get("configuration").is_none(), "state: {state}");

    let errors = state["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors array: {state}"));
    let entry = errors
        .iter()
        .find(|e| e["job"] == "bad-job")
        .unwrap_or_else(|| panic!("no errors entry naming bad-job: {state}"));
    assert_eq!(
        entry["run_id"].to_string().trim_matches('"'),
        run_id(bad_run),
        "{entry}"
    );
    assert_eq!(entry["exit_code"], bad_run["exit_code"], "{entry}");
    assert!(entry["message"].is_string(), "{entry}");

    // The failure is visible in the failed run's log.
    let detail = svc.run(bad_run);
    let log = log_lines(&detail).join("\n");
    assert!(log.contains("boom"), "bad-job log: {log}");
}

/// A flow made due when the service is killed (its run going, or not yet
/// started) runs when the service starts again: it was written with the
/// upstream run's end. On PostgreSQL the restarted process is a new
/// replica, which adopts the flow once the killed one is seen gone.
#[test]
fn a_flow_left_by_a_killed_service_runs_after_a_restart() {
    let data = temp_dir("e2e-flow-restart-");
    let start = |delay: &str| {
        Launch::new(SLOW_FLOW_PROJECT)
            .data_dir(data.path())
            .env("FLOW_DELAY_MS", delay)
            .start()
    };
    let mut first = start("60000");
    let reply = first.post_json("/inbox", r#"{"kind": "flow-kill", "n": 3}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    first.wait_until("the flow's run", RUN_TIMEOUT, || {
        (!first.runs("downstream").is_empty()).then_some(())
    });
    first.kill();

    let second = start("0");
    let done = second.wait_until(
        "the flow to run after the restart",
        Duration::from_secs(90),
        || {
            let runs = second.runs_query("job=downstream&status=success");
            (!runs.is_empty()).then_some(runs)
        },
    );
    let detail = second.run(&done[0]);
    assert_eq!(detail["state"]["data"]["n"], 3, "{detail}");
    assert_eq!(detail["state"]["upstream"], true, "{detail}");
    // The adopted flow still names the run that made it due.
    let upstream = &second.runs("upstream")[0];
    assert_eq!(detail["upstream"], upstream["id"], "{detail}");
    assert!(
        second
            .logs()
            .contains("starting flows a stopped process left"),
        "{}",
        second.log_tail()
    );
}
