//! `ENDPOINT_STYLE=sync`: the inbox waits for the matched runs and answers
//! 201 (all succeeded), 206 (some failed) or 200 (nothing matched) with the
//! runs' exit codes, logs and final states.

use serde_json::Value;

use crate::INBOX_PROJECT;
use crate::harness::{RECEIPT, Service, log_lines};

fn only_job(body: &Value) -> &Value {
    let jobs = body["jobs"]
        .as_array()
        .unwrap_or_else(|| panic!("no jobs array: {body}"));
    assert_eq!(jobs.len(), 1, "jobs: {body}");
    &jobs[0]
}

#[test]
fn sync_inbox_reports_run_results() {
    let svc = Service::start(INBOX_PROJECT, &[("ENDPOINT_STYLE", "sync")]);

    // All matched runs succeed: 201 with the final state.
    let reply = svc.post_json("/inbox", RECEIPT);
    assert_eq!(reply.status, 201, "{reply:?}\n{}", svc.log_tail());
    let body = &reply.json;
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["match_count"], 1, "{body}");
    let job = only_job(body);
    assert_eq!(job["job"], "job-1");
    assert_eq!(job["exit_code"], 0);
    assert_eq!(job["state"]["data"]["number"], 4, "{job}");
    assert!(job["state"].get("configuration").is_none(), "{job}");
    log_lines(job);
    // The run id refers to the recorded run.
    let run_id = match &job["run_id"] {
        Value::String(id) => id.clone(),
        other => other.to_string(),
    };
    let run = svc.get_json(&format!("/api/runs/{run_id}"));
    assert_eq!(run["status"], "success");
    assert_eq!(run["job"], "job-1");

    // A matched run fails: 206.
    let reply = svc.post_json("/inbox", r#"{"kind":"bad"}"#);
    assert_eq!(reply.status, 206, "{reply:?}\n{}", svc.log_tail());
    let body = &reply.json;
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["match_count"], 1, "{body}");
    let job = only_job(body);
    assert_eq!(job["job"], "bad-job");
    assert!(job["exit_code"].as_i64().is_some_and(|c| c != 0), "{job}");
    assert!(log_lines(job).join("\n").contains("boom"), "{job}");

    // Nothing matches: 200.
    let reply = svc.post_json("/inbox", r#"{"kind":"nothing"}"#);
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.json["match_count"], 0, "{}", reply.body);
    assert_eq!(reply.json["jobs"], serde_json::json!([]), "{}", reply.body);
}
