//! `POST /inbox` in the default (async) style: matching receipts start runs
//! and are answered with 202 and the matched job names; criteria are deep
//! containment; receipts that match nothing start no run.

use serde_json::Value;

use crate::INBOX_PROJECT;
use crate::harness::{RECEIPT, Service, json, log_lines, wait_for_runs};

/// The exact 202 body for a receipt that matched `jobs`.
fn accepted(jobs: &[&str]) -> Value {
    serde_json::json!({
        "meta": { "message": "Data accepted and processing has begun." },
        "data": jobs,
        "errors": [],
    })
}

#[test]
fn matching_receipt_is_accepted_and_job_state_is_saved() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    let reply = svc.post_json("/inbox", RECEIPT);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.json, accepted(&["job-1"]), "body: {}", reply.body);

    let state = svc.poll_until(
        "job-1 state with data.number == 4",
        crate::harness::RUN_TIMEOUT,
        || match svc.job_state("job-1") {
            Some(s) if s["data"]["number"] == 4 => Ok(s),
            other => Err(format!("state {other:?}; runs {:?}", svc.runs("job-1"))),
        },
    );
    // The rest of the receipt is carried through untouched.
    let mut expected_data = json(RECEIPT);
    expected_data["number"] = 4.into();
    assert_eq!(state["data"], expected_data);
    assert!(state.get("configuration").is_none(), "state: {state}");

    let runs = wait_for_runs(&svc, "job-1", "success", 1);
    assert_eq!(runs.len(), 1, "runs: {runs:?}");
    let run = &runs[0];
    assert_eq!(run["job"], "job-1");
    assert_eq!(run["trigger"], "trigger-1");
    assert_eq!(run["exit_code"], 0);
    assert!(
        !run["started_at"].is_null() && !run["finished_at"].is_null(),
        "run: {run}"
    );
    assert!(run["duration_ms"].is_u64(), "run: {run}");

    let detail = svc.run(run);
    assert_eq!(detail["id"], run["id"]);
    assert_eq!(detail["status"], "success");
    assert_eq!(detail["state"]["data"]["number"], 4);
    log_lines(&detail);

    let jobs = svc.get_json("/api/jobs");
    let job1 = jobs
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["name"] == "job-1"))
        .unwrap_or_else(|| panic!("job-1 missing from /api/jobs: {jobs}"));
    assert_eq!(job1["trigger"], "trigger-1");
    assert!(
        job1["adaptor"]
            .as_str()
            .is_some_and(|a| a.starts_with("@openfn/language-common")),
        "{job1}"
    );
    assert!(job1["trigger_kind"].is_string(), "{job1}");
}

#[test]
fn receipt_matching_nothing_is_accepted_without_runs() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    let reply = svc.post_json("/inbox", r#"{"number": 3, "kind": "nothing"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(reply.json, accepted(&[]), "body: {}", reply.body);

    // A matching receipt sent afterwards acts as a barrier: once its run has
    // finished, any run for the first receipt would have been recorded too.
    let reply = svc.post_json("/inbox", RECEIPT);
    assert_eq!(reply.json, accepted(&["job-1"]), "body: {}", reply.body);
    wait_for_runs(&svc, "job-1", "success", 1);

    let runs = svc.runs_query("limit=1000");
    let unexpected: Vec<&Value> = runs
        .iter()
        .filter(|r| r["job"] != "job-1" && r["job"] != "flow-job")
        .collect();
    assert!(
        unexpected.is_empty(),
        "runs for a non-matching receipt: {unexpected:?}"
    );
    assert_eq!(svc.runs("job-1").len(), 1, "all runs: {runs:?}");
    assert!(svc.job_state("bad-job").is_none());
}

#[test]
fn criteria_match_by_deep_containment() {
    let svc = Service::start(include_str!("../projects/criteria/project.toml"), &[]);

    let matched = |body: &str| -> Vec<String> {
        let reply = svc.post_json("/inbox", body);
        assert_eq!(reply.status, 202, "{body}: {reply:?}");
        let mut names: Vec<String> = reply.json["data"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}: no data array: {}", reply.body))
            .iter()
            .map(|n| n.as_str().expect("job name").to_string())
            .collect();
        names.sort();
        names
    };

    // The fixture has the nested object, the array elements 1 and 3 and the
    // number 2 (== 2.0).
    assert_eq!(
        matched(RECEIPT),
        ["everything", "float", "nested", "subset"]
    );
    // `{}` matches anything; the others fail on one nested detail each.
    assert_eq!(
        matched(r#"{"object":{"a":2},"string":"here","array":[1,4],"number":2.5}"#),
        ["everything"]
    );

    // Every matched job runs.
    for (job, n) in [
        ("everything", 2),
        ("float", 1),
        ("nested", 1),
        ("subset", 1),
    ] {
        wait_for_runs(&svc, job, "success", n);
    }
}
