//! The service's own output: with `LOG_FORMAT=json` every line is a JSON
//! object, and a job's own log lines are on it by default, tagged with the
//! run id and the job name.

use serde_json::Value;

use crate::harness::{Launch, run_id, wait_for_runs};

const PROJECT: &str = r#"
[jobs.talker]
adaptor = "@openfn/language-common"
trigger = "talk"
expression = """
fn(state => { console.log("hello from the talker job"); return state; })
"""

[triggers.talk]
criteria = { talk = true }
"#;

#[test]
fn json_log_lines_carry_the_run_id_and_job() {
    let svc = Launch::new(PROJECT)
        .env("LOG_FORMAT", "json")
        .env("LOG_LEVEL", "info")
        .start();
    assert_eq!(svc.post_json("/inbox", r#"{"talk": true}"#).status, 202);
    let run = wait_for_runs(&svc, "talker", "success", 1).remove(0);
    let id = run_id(&run);

    // The service printed the line before the run ended, but the test reads
    // its output through reader threads that may not have caught up yet.
    svc.log_lines_with("hello from the talker job");
    let logs = svc.logs();
    let lines: Vec<Value> = logs
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {l}\n{logs}"))
        })
        .collect();
    let said = lines
        .iter()
        .find(|l| {
            l["target"] == "job"
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("hello from the talker job"))
        })
        .unwrap_or_else(|| panic!("the job's console.log is not on the service output:\n{logs}"));
    assert_eq!(said["span"]["run_id"], id.as_str(), "{said}");
    assert_eq!(said["span"]["job"], "talker", "{said}");
    assert_eq!(said["level"], "INFO", "{said}");
}
