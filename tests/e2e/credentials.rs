//! Credentials: a job's credential reaches the expression as
//! `state.configuration`, is never stored or returned, and its values are
//! redacted from run logs and from the service's own output.

use crate::INBOX_PROJECT;
use crate::harness::{Service, log_lines, wait_for_runs};

const SECRETS: [&str; 2] = ["shhh", "user@example.com"];

#[test]
fn credential_is_given_to_the_job_but_never_stored_or_logged() {
    let svc = Service::start(INBOX_PROJECT, &[]);

    let reply = svc.post_json("/inbox", r#"{"kind":"cred"}"#);
    assert_eq!(reply.status, 202, "{reply:?}");
    assert_eq!(
        reply.json["data"],
        serde_json::json!(["cred-job"]),
        "body: {}",
        reply.body
    );

    let runs = wait_for_runs(&svc, "cred-job", "success", 1);

    let state = svc.job_state("cred-job").expect("cred-job state");
    assert_eq!(
        state["data"]["saw"], true,
        "the expression did not see the password: {state}"
    );
    assert!(
        state.get("configuration").is_none(),
        "configuration was stored: {state}"
    );

    let detail = svc.run(&runs[0]);
    assert!(
        detail["state"].get("configuration").is_none(),
        "configuration returned: {detail}"
    );
    let log = log_lines(&detail);
    let cfg_line = log.iter().find(|l| l.contains("cfg ")).unwrap_or_else(|| {
        panic!("the job's console.log line is missing from the run log: {log:?}")
    });
    assert!(
        cfg_line.contains("***"),
        "credential values should be replaced by ***: {cfg_line}"
    );

    let service_output = svc.logs();
    for secret in SECRETS {
        assert!(
            !detail.to_string().contains(secret),
            "{secret:?} leaked into the run record: {detail}"
        );
        assert!(
            !service_output.contains(secret),
            "{secret:?} leaked into the service output:\n{service_output}"
        );
    }
}
